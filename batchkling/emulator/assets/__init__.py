"""The sample clip: what a finished task of the default length (5 s) serves.

Clips are no longer files kept here: ``batchkling.emulator.clips`` makes each
with PyAV on first use, of the length the task asked for.
"""

from __future__ import annotations

from batchkling.emulator.clips import clip
from batchkling.model import DEFAULT_DURATION

__all__ = ["sample_video"]


def sample_video(seconds: float = DEFAULT_DURATION) -> bytes:
    """The bytes of the clip a task of ``seconds`` serves (H.264, yuv420p, 160x90, faststart)."""
    return clip(seconds)
