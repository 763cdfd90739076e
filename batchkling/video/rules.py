"""What a downloaded video is, where it lives, and when its length deserves a word. Pure.

A job's latest video is ``videos/<job>.mp4`` and its poster ``videos/<job>.jpg``
(the video's first frame). A job rendered again keeps every earlier video: the
one it replaces moves to ``videos/<job>.<task>.mp4``, ``<task>`` being the first
characters of the task id that produced it, and its poster goes with it.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from typing import Any

__all__ = [
    "DURATION_TOLERANCE",
    "MAX_VIDEO_BYTES",
    "POSTER_WIDTH",
    "TASK_PREFIX_LENGTH",
    "VIDEOS_DIR",
    "VideoInfo",
    "archive_stem",
    "duration_warning",
    "looks_like_video",
    "poster_name",
    "task_prefix",
    "video_name",
]

VIDEOS_DIR = "videos"
# A video whose length differs from what was asked by more than this is still done
# (it was paid for), with a warning.
DURATION_TOLERANCE = 1.0
# The largest video a download accepts, in bytes as they arrive (decoded).
MAX_VIDEO_BYTES = 2_000_000_000
# Posters are scaled down to this width at most (a 1080p frame is 200 KB as a JPEG).
POSTER_WIDTH = 640
TASK_PREFIX_LENGTH = 8

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


@dataclass(frozen=True)
class VideoInfo:
    """What opening a video found: its length in seconds, its codec and its frame size."""

    duration: float
    codec: str
    width: int
    height: int

    def ledger_fields(self) -> dict[str, Any]:
        """The fields a ``downloaded`` event records about the video itself."""
        return {
            "duration": round(self.duration, 3),
            "codec": self.codec,
            "width": self.width,
            "height": self.height,
        }


def video_name(job: str) -> str:
    """The file name of a job's latest video."""
    return f"{job}.mp4"


def poster_name(job: str) -> str:
    """The file name of a job's poster: the first frame of its latest video."""
    return f"{job}.jpg"


def task_prefix(task_id: str) -> str:
    """The first characters of a task id, kept to letters, digits, ``_`` and ``-``.

    A task id with none of them (the API's ids are UUIDs, but nothing promises
    that) is named by its sha256 instead, so a name is never empty.
    """
    safe = _UNSAFE.sub("", task_id)[:TASK_PREFIX_LENGTH]
    return safe or hashlib.sha256(task_id.encode("utf-8")).hexdigest()[:TASK_PREFIX_LENGTH]


def archive_stem(job: str, task_id: str) -> str:
    """``<job>.<task prefix>``: the name, without suffix, of an earlier video of ``job``."""
    return f"{job}.{task_prefix(task_id)}"


def duration_warning(job: str, actual: float, asked: float | None) -> str | None:
    """A line for the summary when a video's length is more than a second off what was asked."""
    if asked is None or abs(actual - asked) <= DURATION_TOLERANCE:
        return None
    return (
        f"{job}: the video is {actual:.1f} s long where {asked:g} s were asked; "
        "it is kept, as it was paid for."
    )


def looks_like_video(head: bytes) -> bool:
    """Whether the first bytes of a file are those of a video container.

    MP4 and QuickTime (an ``ftyp`` box, or an old file starting with ``moov``,
    ``mdat``, ``free`` or ``wide``), Matroska and WebM, AVI.
    """
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        return True
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return True
    return len(head) >= 12 and head.startswith(b"RIFF") and head[8:12] == b"AVI "
