"""Whether a file is a playable MP4, opened with PyAV (FFmpeg), and its first frame as a JPEG.

A file passes when its top-level boxes fill it exactly (an MP4 cut short ends
inside its last box, be that the frames or the index), FFmpeg opens it as MP4
(or QuickTime), it has a video stream, every packet of that stream is in the
file whole (none cut short, as many as the index announces), its first frame
decodes, and so does its last: decoding from the last keyframe reaches the
last packet's time. A body cut short by a single byte fails here, whatever the
HTTP framing said; so do a compressed body stored as it came, an HTML error
page and an empty file.

Blocking (FFmpeg reads the file and decodes): call it from a worker thread.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from batchkling.video.rules import POSTER_WIDTH, VideoInfo

__all__ = ["Inspection", "UnplayableVideo", "box_problem", "inspect_video", "jpeg_of"]

# Any name FFmpeg's MP4/QuickTime demuxer goes by ("mov,mp4,m4a,3gp,3g2,mj2").
_MP4_NAMES = frozenset({"mov", "mp4", "m4a", "3gp", "3g2", "mj2"})
# FFmpeg's errors, and the OS's when it cannot read the file.
_FAILURES = (av.FFmpegError, OSError, ValueError)


class UnplayableVideo(Exception):
    """The file is not a playable MP4; the message says why, in a few words."""


@dataclass(frozen=True)
class Inspection:
    """A file that passed: what it is, and its first frame as a JPEG (the poster)."""

    info: VideoInfo
    poster: bytes


@dataclass
class _Scan:
    """What reading every packet of the video stream found."""

    packets: int = 0
    last_pts: int | None = None
    last_keyframe: int | None = None
    first: Any = None  # the first decoded frame (av.VideoFrame)


def inspect_video(path: Path, *, poster_width: int = POSTER_WIDTH) -> Inspection:
    """Check ``path`` as a playable MP4; raises ``UnplayableVideo`` saying what is wrong."""
    try:
        container = av.open(str(path), mode="r")
    except _FAILURES as exc:
        raise UnplayableVideo(f"FFmpeg cannot open it as a video ({_why(exc)})") from None
    try:
        with container:
            found = _inspect(container, poster_width)
    except _FAILURES as exc:
        raise UnplayableVideo(f"it does not decode ({_why(exc)})") from None
    problem = box_problem(path)
    if problem is not None:
        raise UnplayableVideo(problem)
    return found


def box_problem(path: Path) -> str | None:
    """Why the top-level boxes of an MP4 do not fill ``path`` exactly; None when they do.

    Each box starts with its size (32 bits, or 1 and then 64 bits, or 0: up to the
    end of the file) and its type; the next box starts where it ends.
    """
    with open(path, "rb") as fh:
        end = fh.seek(0, 2)
        offset = 0
        while offset < end:
            fh.seek(offset)
            header = fh.read(16)
            if len(header) < 8:
                return f"it ends inside a box header ({end - offset} bytes at {offset})"
            size, kind = struct.unpack(">I4s", header[:8])
            if size == 1 and len(header) == 16:
                size = struct.unpack(">Q", header[8:])[0]
            elif size == 0:
                return None  # the last box runs to the end of the file
            if size < 8:
                return f"a box at byte {offset} has an impossible size ({size})"
            if offset + size > end:
                name, have = kind.decode("latin-1"), end - offset
                return f"it is cut short: its {name!r} box has {have} of {size} bytes"
            offset += size
    return None


def _inspect(container: Any, poster_width: int) -> Inspection:
    names = set(str(container.format.name).split(","))
    if not names & _MP4_NAMES:
        raise UnplayableVideo(f"it is {container.format.name}, not MP4")
    if not container.streams.video:
        raise UnplayableVideo("it has no video stream")
    stream = container.streams.video[0]
    scan = _scan(container, stream)
    if scan.first is None or scan.last_pts is None or scan.last_keyframe is None:
        raise UnplayableVideo("its first frame does not decode")
    announced = int(stream.frames or 0)
    if announced and scan.packets < announced:
        raise UnplayableVideo(f"it ends after {scan.packets} of its {announced} frames")
    _check_last_frame(container, stream, scan)
    info = VideoInfo(
        duration=_duration(container, stream),
        codec=str(stream.codec_context.name),
        width=int(stream.codec_context.width),
        height=int(stream.codec_context.height),
    )
    return Inspection(info, jpeg_of(scan.first, max_width=poster_width))


def _scan(container: Any, stream: Any) -> _Scan:
    """Read every packet (without decoding, but for the first frame); stop at a torn one."""
    scan = _Scan()
    for packet in container.demux(stream):
        if packet.size == 0 and packet.pts is None:
            continue  # the demuxer's end-of-stream marker
        if packet.is_corrupt:
            raise UnplayableVideo(f"it is cut short: packet {scan.packets + 1} is incomplete")
        scan.packets += 1
        if packet.pts is not None:
            scan.last_pts = packet.pts if scan.last_pts is None else max(scan.last_pts, packet.pts)
            if packet.is_keyframe:
                scan.last_keyframe = packet.pts
        if scan.first is None:
            scan.first = next(iter(packet.decode()), None)
    if scan.first is None and scan.packets:
        scan.first = next(iter(stream.codec_context.decode(None)), None)
    return scan


def _check_last_frame(container: Any, stream: Any, scan: _Scan) -> None:
    """Decode from the last keyframe to the end: the last frame must come out."""
    container.seek(scan.last_keyframe, stream=stream, backward=True, any_frame=False)
    decoder = stream.codec_context
    decoder.flush_buffers()
    latest: int | None = None
    for packet in container.demux(stream):
        for frame in packet.decode():
            if frame.pts is not None:
                latest = frame.pts if latest is None else max(latest, frame.pts)
    if latest is None or scan.last_pts is None or latest < scan.last_pts:
        raise UnplayableVideo("its last frame does not decode")


def _duration(container: Any, stream: Any) -> float:
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    if container.duration:
        return float(container.duration) / av.time_base
    return 0.0


def jpeg_of(frame: Any, *, max_width: int = POSTER_WIDTH) -> bytes:
    """A decoded video frame as a baseline JPEG, scaled down to ``max_width`` at most."""
    width, height = int(frame.width), int(frame.height)
    if width > max_width:
        height = max(2, round(height * max_width / width / 2) * 2)
        width = max_width
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuvj420p"
    encoder.time_base = Fraction(1, 25)
    image = frame.reformat(width=width, height=height, format="yuvj420p")
    packets = list(encoder.encode(image)) + list(encoder.encode(None))
    return b"".join(bytes(p) for p in packets)


def _why(exc: BaseException) -> str:
    text = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return str(text).split(": '", 1)[0][:200]
