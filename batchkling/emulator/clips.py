"""The clips finished tasks serve: a real H.264 MP4 of the duration asked, made with PyAV.

Small and quick to make (160x90, 8 frames a second, a keyframe every 2 s, about
1 KB a second, a few milliseconds each), so that every download in a test is
checked the way a real video is: opened, its first and last frames decoded.
Each clip is made on first use and kept in memory, one per length (in frames).
The picture is a moving gradient over a bar that fills as the clip plays, so
that frames differ and a poster taken from the first frame is recognisable.
Faststart (the index before the frames), as a CDN serves videos to browsers.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["CLIP_FPS", "CLIP_HEIGHT", "CLIP_WIDTH", "clip", "clip_frames"]

CLIP_WIDTH, CLIP_HEIGHT, CLIP_FPS = 160, 90, 8
_KEYFRAME_EVERY = 2 * CLIP_FPS
_BAR_ROWS = 12


def clip_frames(seconds: float) -> int:
    """How many frames a clip of ``seconds`` has: at least one."""
    return max(1, round(seconds * CLIP_FPS))


def clip(seconds: float) -> bytes:
    """The bytes of an MP4 lasting ``seconds`` (to the nearest frame)."""
    return _clip(clip_frames(seconds))


@lru_cache(maxsize=64)
def _clip(frames: int) -> bytes:
    import av  # only a server that serves videos pays for loading FFmpeg

    with tempfile.TemporaryDirectory(prefix="batchkling-clip-") as tmp:
        # FFmpeg moves the index to the front by reading the file back: it needs a path.
        path = Path(tmp) / "clip.mp4"
        with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            stream = out.add_stream("libx264", rate=CLIP_FPS)
            stream.width, stream.height, stream.pix_fmt = CLIP_WIDTH, CLIP_HEIGHT, "yuv420p"
            stream.codec_context.gop_size = _KEYFRAME_EVERY
            stream.options = {"preset": "ultrafast", "tune": "zerolatency"}
            for i in range(frames):
                frame = _frame(av, i, frames)
                for packet in stream.encode(frame):
                    out.mux(packet)
            for packet in stream.encode(None):
                out.mux(packet)
        return path.read_bytes()


def _frame(av: Any, index: int, frames: int) -> Any:
    """Frame ``index`` of ``frames``: a gradient moving right, a bar filling left to right."""
    frame = av.VideoFrame(CLIP_WIDTH, CLIP_HEIGHT, "yuv420p")
    luma, blue, red = frame.planes
    stride = luma.line_size
    row = bytes((x * 3 + index * 8) % 200 + 28 for x in range(stride))
    filled = CLIP_WIDTH * (index + 1) // frames
    bar = bytes(235 if x < filled else 16 for x in range(stride))
    luma.update(row * (CLIP_HEIGHT - _BAR_ROWS) + bar * _BAR_ROWS)
    blue.update(bytes([96 + index % 64]) * (blue.line_size * blue.height))
    red.update(bytes([160]) * (red.line_size * red.height))
    frame.pts = index
    return frame
