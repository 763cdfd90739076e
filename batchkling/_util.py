"""Small rules every layer shares, each written once: numbers, atomic writes, the collector.

Imports nothing of batchkling, so that any module (the emulator included) may use it.

- ``whole_number``: a number as an ``int`` when it is whole (``5.0`` is sent and
  shown as ``5``), else unchanged.
- ``thousands``: a number grouped by thousands, whole numbers without ``.0``.
- ``write_atomic``: replace a file so that a reader sees the old content or the
  new, never a part of either.
- ``collector_paused``: the cyclic garbage collector paused while many acyclic
  objects are built at once. A large manifest makes hundreds of thousands of
  long-lived objects (shots, jobs, cost rows); while they are being made, each
  full collection walks every one of them again: for 100,000 shots that is a
  quarter of the time spent outside parsing and schema checks. None of these
  objects forms a reference cycle, so the collector has nothing to find in them;
  it resumes, and collects anything cyclic that others made meanwhile, as soon as
  the block ends.
"""

from __future__ import annotations

import gc
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["collector_paused", "thousands", "whole_number", "write_atomic"]


def whole_number(value: float) -> int | float:
    """``value`` as an ``int`` when it is whole (``5.0`` gives ``5``), else ``value`` itself."""
    if type(value) is int:  # the common case, without a float conversion
        return value
    return int(value) if float(value).is_integer() else value


def thousands(value: float, *, sep: str = ",") -> str:
    """``value`` grouped by thousands with ``sep`` (``1,200``, ``1,200.5``), never ``1,200.0``."""
    text = f"{whole_number(value):,}"
    return text if sep == "," else text.replace(",", sep)


def write_atomic(path: Path, data: bytes | str, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8, line ends kept as given).

    The data goes to a temporary file beside ``path``, which is then renamed over
    it: a reader (a browser showing a report, the next run reading a cache) sees
    the old file or the new one, and a crash mid-write leaves the old one. The new
    file gets ``mode`` when given, else the permissions any new file gets (the
    umask applied to 0o666). The parent directory must exist.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    while True:
        # A random name: two writers of one path never share a temporary file.
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            continue
        break
    try:
        with os.fdopen(fd, "wb") as fh:
            if mode is not None:
                os.fchmod(fh.fileno(), mode)
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; re-enable it only if it was enabled."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
