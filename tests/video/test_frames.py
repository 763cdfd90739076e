"""Frames of a real MP4 (the emulator's clips, made with PyAV) extracted as full-size PNG."""

from __future__ import annotations

import io
from pathlib import Path

import av
import pytest
from PIL import Image, ImageChops

from batchkling.emulator.clips import CLIP_HEIGHT, CLIP_WIDTH, clip, clip_frames
from batchkling.video.frames import FrameError, first_frame_png, last_frame_png


def _clip_file(tmp_path: Path, seconds: float) -> Path:
    path = tmp_path / "clip.mp4"
    path.write_bytes(clip(seconds))
    return path


def _decoded(path: Path) -> list[Image.Image]:
    with av.open(str(path)) as container:
        return [f.to_image() for f in container.decode(container.streams.video[0])]


def _png(data: bytes) -> Image.Image:
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(data))
    image.load()
    return image.convert("RGB")


def _max_difference(a: Image.Image, b: Image.Image) -> int:
    extrema = ImageChops.difference(a.convert("RGB"), b.convert("RGB")).getextrema()
    return max(high for _low, high in extrema)  # type: ignore[misc]


@pytest.mark.parametrize("seconds", [1.0, 5.0, 7.5])
def test_last_frame_is_the_last_decoded_frame_at_full_size(tmp_path: Path, seconds: float) -> None:
    """The PNG is the video's own size and equals the frame a full decode ends on."""
    path = _clip_file(tmp_path, seconds)
    frames = _decoded(path)
    assert len(frames) == clip_frames(seconds)
    last = _png(last_frame_png(path))
    assert last.size == (CLIP_WIDTH, CLIP_HEIGHT)
    assert _max_difference(last, frames[-1]) <= 2
    if len(frames) > 2:
        assert _max_difference(last, frames[-2]) > 2  # a neighbour is not good enough


def test_first_frame_is_the_first_decoded_frame(tmp_path: Path) -> None:
    """The first frame is the one a decode starts on, not the last one."""
    path = _clip_file(tmp_path, 3.0)
    frames = _decoded(path)
    first = _png(first_frame_png(path))
    assert _max_difference(first, frames[0]) <= 2
    assert _max_difference(first, frames[-1]) > 2


def test_same_file_gives_the_same_bytes(tmp_path: Path) -> None:
    """Extracting twice gives identical PNG bytes (what keeps a chained request's identity)."""
    path = _clip_file(tmp_path, 5.0)
    assert last_frame_png(path) == last_frame_png(path)


def test_not_a_video_is_a_frame_error(tmp_path: Path) -> None:
    """A file that is no video raises FrameError naming it, not an FFmpeg error."""
    path = tmp_path / "page.mp4"
    path.write_bytes(b"<html>not found</html>")
    with pytest.raises(FrameError, match=r"page\.mp4"):
        last_frame_png(path)
    with pytest.raises(FrameError, match=r"missing\.mp4"):
        first_frame_png(tmp_path / "missing.mp4")
