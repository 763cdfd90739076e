"""Small rules every layer shares, each written once: numbers, atomic writes, the collector.

Imports nothing of batchkling, so that any module (the emulator included) may use it.

- ``whole_number``: a number as an ``int`` when it is whole (``5.0`` is sent and
  shown as ``5``), else unchanged.
- ``thousands``: a number grouped by thousands, whole numbers without ``.0``: the
  one way every command, report and the live display write a number of credits.
- ``of_budget``: credits against a budget, ``12,000 / 60,000``.
- ``plural``: a count and its noun, ``1 API call``, ``3 API calls``; never ``job(s)``.
- ``span``: a length of time as a person reads it, ``45 s``, ``4 min 12 s``, ``2 h 5 min``.
- ``write_atomic``: replace a file so that a reader sees the old content or the
  new, never a part of either; ``atomic_file`` does the same for content written
  piece by piece (a report of 100,000 jobs).
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
from typing import BinaryIO

__all__ = [
    "atomic_file",
    "collector_paused",
    "fsync_path",
    "of_budget",
    "plural",
    "span",
    "thousands",
    "whole_number",
    "write_atomic",
]


def whole_number(value: float) -> int | float:
    """``value`` as an ``int`` when it is whole (``5.0`` gives ``5``), else ``value`` itself."""
    if type(value) is int:  # the common case, without a float conversion
        return value
    return int(value) if float(value).is_integer() else value


def thousands(value: float, *, sep: str = ",") -> str:
    """``value`` grouped by thousands with ``sep`` (``1,200``, ``1,200.5``), never ``1,200.0``."""
    text = f"{whole_number(value):,}"
    return text if sep == "," else text.replace(",", sep)


def of_budget(value: float, budget: float | None) -> str:
    """``12,000 / 60,000``; ``12,000`` when there is no budget."""
    return thousands(value) if budget is None else f"{thousands(value)} / {thousands(budget)}"


def plural(count: int, noun: str, nouns: str | None = None) -> str:
    """``1 job``, ``2 jobs``, ``1,200 jobs``; ``nouns`` for a plural not made with ``s``."""
    many = nouns if nouns is not None else noun + "s"
    return f"{thousands(count)} {noun if count == 1 else many}"


def span(seconds: float) -> str:
    """``0.4 s``, ``45 s``, ``4 min 12 s``, ``2 h 5 min``: whole units past a minute."""
    if seconds < 10:
        return f"{max(0.0, seconds):.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def fsync_path(path: Path) -> None:
    """fsync a file or a directory by its path (a directory: the renames inside it)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes | str, *, mode: int | None = None) -> None:
    """Replace ``path`` with ``data`` (text is written as UTF-8, line ends kept as given).

    The data goes to a temporary file beside ``path``, which is then renamed over
    it: a reader (a browser showing a report, the next run reading a cache) sees
    the old file or the new one, and a crash mid-write leaves the old one. The new
    file gets ``mode`` when given, else the permissions any new file gets (the
    umask applied to 0o666). The parent directory must exist.
    """
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_file(path, mode=mode) as fh:
        fh.write(payload)


@contextmanager
def atomic_file(path: Path, *, mode: int | None = None) -> Iterator[BinaryIO]:
    """A binary file to write ``path``'s new content into; it replaces ``path`` when the
    block ends, and is removed, leaving ``path`` as it was, if the block raises.

    The same rule as ``write_atomic``, for content written piece by piece.
    """
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
            yield fh
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
