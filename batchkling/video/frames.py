"""One frame of a downloaded video, at full resolution, as PNG: what a chained shot starts on.

A chained shot starts on the last frame of another shot's take (or ends on the
first frame of one). The frame is decoded with PyAV and written losslessly, at
the video's own size, so the next render starts exactly where the last one
stopped. The same file gives the same bytes every time it is read (the decoder
and the PNG encoder are deterministic), which is what lets a resumed run
recognise a request it sent already by the frame's sha256.

Blocking (FFmpeg reads the file and decodes): call it from a worker thread.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import av

__all__ = ["FrameError", "first_frame_png", "frame_png", "last_frame_png"]

_FAILURES = (av.FFmpegError, OSError, ValueError, StopIteration)


class FrameError(Exception):
    """The video could not be opened, or the frame asked for did not decode."""


def first_frame_png(path: Path) -> bytes:
    """The first frame of the video at ``path``, as PNG at full resolution."""
    return frame_png(path, last=False)


def last_frame_png(path: Path) -> bytes:
    """The last frame of the video at ``path``, as PNG at full resolution."""
    return frame_png(path, last=True)


def frame_png(path: Path, *, last: bool) -> bytes:
    """The first (or the last) frame of a video as PNG; raises ``FrameError``."""
    try:
        with av.open(str(path), mode="r") as container:
            if not container.streams.video:
                raise FrameError(f"{path} has no video stream")
            stream = container.streams.video[0]
            frame = _last(container, stream) if last else _first(container, stream)
            return png_of(frame)
    except _FAILURES as exc:
        which = "last" if last else "first"
        raise FrameError(f"the {which} frame of {path} could not be decoded ({exc})") from None


def _first(container: Any, stream: Any) -> Any:
    return next(container.decode(stream))


def _last(container: Any, stream: Any) -> Any:
    """The frame shown last: the greatest presentation time, decoding from the last keyframe."""
    end = stream.duration if stream.duration else None
    if end is not None:
        container.seek(end, stream=stream, backward=True, any_frame=False)
        found = _latest(container, stream)
        if found is not None:
            return found
        container.seek(0, stream=stream, backward=True, any_frame=False)
    found = _latest(container, stream)
    if found is None:
        raise FrameError("no frame decodes")
    return found


def _latest(container: Any, stream: Any) -> Any:
    latest: Any = None
    for frame in container.decode(stream):
        if latest is None or (frame.pts or 0) >= (latest.pts or 0):
            latest = frame
    return latest


def png_of(frame: Any) -> bytes:
    """A decoded video frame as an RGB PNG of its own size."""
    encoder = av.CodecContext.create("png", "w")
    encoder.width, encoder.height = int(frame.width), int(frame.height)
    encoder.pix_fmt = "rgb24"
    encoder.time_base = Fraction(1, 25)
    image = frame.reformat(format="rgb24")
    image.pts = None
    packets = list(encoder.encode(image)) + list(encoder.encode(None))
    return b"".join(bytes(p) for p in packets)
