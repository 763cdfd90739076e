"""The clips finished tasks serve: a real H.264 MP4 of the duration asked, made with PyAV.

Small and quick to make (160x90 unless another size is asked, 8 frames a
second, a keyframe every 2 s, about 1 KB a second, a few milliseconds each), so
that every download in a test is
checked the way a real video is: opened, its first and last frames decoded.
Each clip is made on first use and kept in memory, one per length (in frames)
and size.
The picture is a moving gradient over a bar that fills as the clip plays, so
that frames differ and a poster taken from the first frame is recognisable.
Faststart (the index before the frames), as a CDN serves videos to browsers.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = [
    "CLIP_FPS",
    "CLIP_HEIGHT",
    "CLIP_SIZE",
    "CLIP_WIDTH",
    "MAX_CLIP_SIDE",
    "check_size",
    "clip",
    "clip_frames",
    "parse_size",
]

CLIP_WIDTH, CLIP_HEIGHT, CLIP_FPS = 160, 90, 8
CLIP_SIZE = (CLIP_WIDTH, CLIP_HEIGHT)
MAX_CLIP_SIDE = 4096
_KEYFRAME_EVERY = 2 * CLIP_FPS
_BAR_ROWS = 12


def clip_frames(seconds: float) -> int:
    """How many frames a clip of ``seconds`` has: at least one."""
    return max(1, round(seconds * CLIP_FPS))


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` as a frame size: even sides (4:2:0 needs them) from 2 to ``MAX_CLIP_SIDE``."""
    width, sep, height = text.strip().lower().partition("x")
    try:
        size = (int(width), int(height))
    except ValueError:
        raise ValueError(f"expected a size WxH such as 320x180, got {text!r}") from None
    if not sep:
        raise ValueError(f"expected a size WxH such as 320x180, got {text!r}")
    return check_size(size)


def check_size(size: tuple[int, int]) -> tuple[int, int]:
    """``size`` when both sides are even and from 2 to ``MAX_CLIP_SIDE``; else ValueError."""
    width, height = size
    for side in (width, height):
        if not 2 <= side <= MAX_CLIP_SIDE or side % 2:
            raise ValueError(
                f"a clip size needs even sides from 2 to {MAX_CLIP_SIDE}, got {width}x{height}"
            )
    return (int(width), int(height))


def clip(seconds: float, size: tuple[int, int] = CLIP_SIZE) -> bytes:
    """The bytes of an MP4 of ``size`` lasting ``seconds`` (to the nearest frame)."""
    return _clip(clip_frames(seconds), *size)


@lru_cache(maxsize=64)
def _clip(frames: int, width: int = CLIP_WIDTH, height: int = CLIP_HEIGHT) -> bytes:
    import av  # only a server that serves videos pays for loading FFmpeg

    with tempfile.TemporaryDirectory(prefix="batchkling-clip-") as tmp:
        # FFmpeg moves the index to the front by reading the file back: it needs a path.
        path = Path(tmp) / "clip.mp4"
        with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=CLIP_FPS)
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            stream.codec_context.gop_size = _KEYFRAME_EVERY
            stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
            for i in range(frames):
                frame = _frame(av, i, frames, width, height)
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return path.read_bytes()


def _frame(av: Any, index: int, frames: int, width: int, height: int) -> Any:
    """Frame ``index`` of ``frames``: a gradient moving right, a bar filling left to right."""
    frame = av.VideoFrame(width, height, "yuv420p")
    luma, blue, red = frame.planes
    stride = luma.line_size
    row = bytes((x * 3 + index * 8) % 200 + 28 for x in range(stride))
    filled = width * (index + 1) // frames
    bar_rows = min(_BAR_ROWS * height // CLIP_HEIGHT, height)
    bar = bytes(235 if x < filled else 16 for x in range(stride))
    luma.update(row * (height - bar_rows) + bar * bar_rows)
    blue.update(bytes([96 + index % 64]) * (blue.line_size * blue.height))
    red.update(bytes([160]) * (red.line_size * red.height))
    frame.pts = index
    return frame
