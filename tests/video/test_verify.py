"""A file is a playable MP4 only when FFmpeg opens it and decodes its first and last frames."""

from __future__ import annotations

import gzip
from fractions import Fraction
from pathlib import Path

import av
import pytest

from batchkling.emulator.clips import CLIP_HEIGHT, CLIP_WIDTH, clip
from batchkling.video.verify import UnplayableVideo, box_problem, inspect_video, jpeg_of


def _file(tmp_path: Path, data: bytes, name: str = "v.mp4") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _matroska(path: Path) -> Path:
    """Two seconds of H.264 in a Matroska container: a video, but not an MP4."""
    with av.open(str(path), "w", format="matroska") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
        for i in range(16):
            frame = av.VideoFrame(64, 36, "yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def _audio_only(path: Path) -> Path:
    """An MP4 with one AAC stream and no video."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("aac", rate=8000)
        stream.layout = "mono"
        for i in range(8):
            frame = av.AudioFrame(format="fltp", layout="mono", samples=1024)
            frame.planes[0].update(bytes(4 * 1024))
            frame.sample_rate, frame.pts, frame.time_base = 8000, i * 1024, Fraction(1, 8000)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


@pytest.mark.parametrize("seconds", [3, 5, 7.5])
def test_a_whole_clip_passes_with_its_length_codec_and_size(tmp_path: Path, seconds: float) -> None:
    """The container's length, the stream's codec and its frame size come back."""
    found = inspect_video(_file(tmp_path, clip(seconds)))
    info = found.info
    assert info.duration == pytest.approx(seconds)
    assert (info.codec, info.width, info.height) == ("h264", CLIP_WIDTH, CLIP_HEIGHT)


@pytest.mark.parametrize("keep", [0.5, -5, -1, 48])
def test_a_clip_cut_anywhere_is_not_playable(tmp_path: Path, keep: float) -> None:
    """Half of it, all but 5 bytes or 1, or just its first box: never a playable MP4."""
    data = clip(5)
    cut = data[: int(len(data) * keep)] if isinstance(keep, float) else data[: int(keep)]
    with pytest.raises(UnplayableVideo):
        inspect_video(_file(tmp_path, cut))


@pytest.mark.parametrize(
    "data",
    [gzip.compress(clip(5)), b"<html><body>502 Bad Gateway</body></html>", b""],
    ids=["gzip-body", "html-page", "empty"],
)
def test_what_is_not_a_video_cannot_be_opened(tmp_path: Path, data: bytes) -> None:
    """A compressed body stored as it came, an error page, an empty file."""
    with pytest.raises(UnplayableVideo, match="cannot open"):
        inspect_video(_file(tmp_path, data))


def test_a_video_in_another_container_is_not_an_mp4(tmp_path: Path) -> None:
    """Matroska plays, but the API promises MP4: say which it is."""
    with pytest.raises(UnplayableVideo, match="not MP4"):
        inspect_video(_matroska(tmp_path / "v.mkv"))


def test_an_mp4_without_a_video_stream_is_not_a_video(tmp_path: Path) -> None:
    """Sound alone is not a rendered shot."""
    with pytest.raises(UnplayableVideo, match="no video stream"):
        inspect_video(_audio_only(tmp_path / "a.mp4"))


def test_the_poster_is_the_first_frame_as_a_jpeg(tmp_path: Path) -> None:
    """A JPEG of the clip's own size that FFmpeg decodes back."""
    poster = inspect_video(_file(tmp_path, clip(3))).poster
    assert poster.startswith(b"\xff\xd8")
    with av.open(str(_file(tmp_path, poster, "p.jpg"))) as container:
        frame = next(container.decode(video=0))
    assert (frame.width, frame.height) == (CLIP_WIDTH, CLIP_HEIGHT)


def test_a_large_frame_makes_a_smaller_poster(tmp_path: Path) -> None:
    """Scaled down to the width asked, the height kept in proportion and even."""
    with av.open(str(_file(tmp_path, clip(3)))) as container:
        frame = next(container.decode(video=0))
    small = jpeg_of(frame, max_width=80)
    with av.open(str(_file(tmp_path, small, "s.jpg"))) as container:
        scaled = next(container.decode(video=0))
    assert scaled.width == 80 and scaled.height in (44, 46)


def _index_last(path: Path) -> Path:
    """Three seconds of H.264 as an MP4 whose index (``moov``) comes after the frames."""
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=8)
        stream.width, stream.height, stream.pix_fmt = 64, 36, "yuv420p"
        for i in range(24):
            frame = av.VideoFrame(64, 36, "yuv420p")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


def test_an_mp4_cut_inside_its_index_is_not_playable(tmp_path: Path) -> None:
    """Every frame is there, but the file ends 3 bytes early: its ``moov`` box is short."""
    whole = _index_last(tmp_path / "whole.mp4")
    assert box_problem(whole) is None
    assert inspect_video(whole).info.duration == pytest.approx(3)
    cut = _file(tmp_path, whole.read_bytes()[:-3], "cut.mp4")
    with pytest.raises(UnplayableVideo, match="'moov' box has"):
        inspect_video(cut)
