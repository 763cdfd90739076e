"""Writing an export's files: whole or not at all, and never into a run's ``videos/``.

Each output is made in a temporary file beside its target, fsynced, then
renamed over it, and the directory fsynced: a reader (an editor that has the
timeline open, a browser showing the contact sheet) sees the old file or the
new one, never half of one, and a crash leaves the old one.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

from batchkling._util import fsync_path
from batchkling.errors import ExportWriteError, UsageError
from batchkling.video.rules import VIDEOS_DIR

__all__ = ["check_target", "replacing", "write_whole"]


def check_target(target: Path, run_dir: Path, option: str) -> Path:
    """``target`` made absolute; a ``UsageError`` when it is inside the run's ``videos/``."""
    target = target.absolute()
    videos = (run_dir / VIDEOS_DIR).resolve()
    resolved = target.resolve()
    if resolved == videos or videos in resolved.parents:
        raise UsageError(
            f"{option} {target}: that is in the run directory's videos/, which an export "
            "never writes into.",
            hint="Choose a path outside videos/.",
        )
    if target.is_dir():
        raise UsageError(f"{option} {target}: that is a directory; name a file.")
    return target


@contextlib.contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """A temporary path beside ``target`` to write; it replaces ``target`` when the block ends.

    The temporary file is removed if the block raises. ``ExportWriteError`` when
    the directory cannot be written.
    """
    tmp = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp{target.suffix}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        fsync_path(tmp)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except OSError as exc:
        raise ExportWriteError(str(target), exc.strerror or str(exc)) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def write_whole(target: Path, data: bytes) -> None:
    """Replace ``target`` with ``data``, durably."""
    with replacing(target) as tmp:
        tmp.write_bytes(data)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a directory be fsynced
        fsync_path(path)
