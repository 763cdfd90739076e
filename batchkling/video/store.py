"""Putting a verified video in place in ``videos/`` without ever writing over an earlier one.

A job's latest video is ``videos/<job>.mp4``. When a new one arrives and that
name already holds the video of another task, the older file (and its poster)
first moves to ``videos/<job>.<task>.mp4`` (``rules.archive_stem``); only then
does the new file take the name. No step replaces a file that holds anything
but a copy of the new video itself, so paid output is never lost. Renames are
made durable by an fsync of the directory.

Blocking (hashing, renames, fsyncs): call from a worker thread. ``OSError`` is
left to the caller, which knows which run directory to name.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from batchkling._util import fsync_path
from batchkling.video.rules import archive_stem, poster_name, video_name

__all__ = [
    "Placed",
    "TaskOf",
    "file_sha256",
    "fsync_dir",
    "place_video",
    "video_intact",
    "write_poster",
]

_CHUNK = 1 << 20

# The task whose downloaded video had this sha256 at this path, as the ledger says.
TaskOf = Callable[[Path, str], str | None]


@dataclass(frozen=True)
class Placed:
    """Where a video went: its path, its poster, and where the video it replaced was kept."""

    path: Path
    poster: Path | None
    earlier: Path | None


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def video_intact(run_dir: Path, output: str | None, size: int | None) -> bool:
    """Whether a recorded video (``output``, relative to ``run_dir``) is on disk with its size.

    The sha256 was checked when the file was written; a size check is what a
    resume can afford for thousands of files, and it catches a truncated or
    deleted file.
    """
    if output is None:
        return False
    try:
        return (run_dir / output).stat().st_size == size
    except OSError:
        return False


def fsync_dir(path: Path) -> None:
    """Make the renames inside ``path`` durable (its entries are only on disk once it is)."""
    fsync_path(path)


def place_video(
    part: Path,
    *,
    job: str,
    task_id: str,
    sha256: str,
    poster: bytes | None,
    task_of: TaskOf,
) -> Placed:
    """Move the verified ``part`` to ``<its dir>/<job>.mp4``, keeping any earlier video.

    ``task_of(path, sha256)`` names the task that produced the file found at
    ``path``, if the ledger knows; the file is kept under that task's name, or
    under its own sha256 when no task is known.
    """
    videos = part.parent
    dest = videos / video_name(job)
    earlier = None
    if os.path.lexists(dest):
        found = file_sha256(dest)
        owner = task_of(dest, found)
        same = owner == task_id or (owner is None and found == sha256)
        if not same:
            earlier = _keep(dest, job, owner or found)
    os.replace(part, dest)
    fsync_dir(videos)
    poster_path = write_poster(videos / poster_name(job), poster) if poster is not None else None
    return Placed(dest, poster_path, earlier)


def _keep(dest: Path, job: str, owner: str) -> Path:
    """Move ``dest`` and its poster to a name of their own that nothing holds yet."""
    videos = dest.parent
    stem = archive_stem(job, owner)
    kept = _free(videos, stem)
    os.rename(dest, kept)
    poster = videos / poster_name(job)
    if poster.exists():
        os.rename(poster, kept.with_suffix(".jpg"))
    return kept


def _free(videos: Path, stem: str) -> Path:
    """``<stem>.mp4``, else ``<stem>-2.mp4``, ...: the first whose video and poster are free."""
    n = 1
    while True:
        name = stem if n == 1 else f"{stem}-{n}"
        video = videos / f"{name}.mp4"
        if not os.path.lexists(video) and not os.path.lexists(videos / f"{name}.jpg"):
            return video
        n += 1


def write_poster(path: Path, data: bytes) -> Path:
    """Write a poster whole (a temporary file renamed over the old one); return its path."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
