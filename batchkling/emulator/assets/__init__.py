"""Files the emulator serves: ``sample.mp4``, the clip every completed task produces.

The clip was made once with ffmpeg from its built-in test pattern (the command
is in the README) and is committed, so the emulator needs no ffmpeg to run.
"""

from __future__ import annotations

from importlib.resources import files

__all__ = ["sample_video"]


def sample_video() -> bytes:
    """The bytes of the sample clip (H.264 baseline, yuv420p, 320x180, 2 s, faststart)."""
    return files(__name__).joinpath("sample.mp4").read_bytes()
