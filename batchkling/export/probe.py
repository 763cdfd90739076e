"""What a take's video is, as an export needs it: size, frame rate, codec parameters, length.

Opened with PyAV and read packet by packet without decoding, for the length
of what is really there (the timeline, a re-encode); a stream copy reads only
the format (``format_of``) of each take as it copies it. Two takes can be
stream-copied one after the other when their ``Format`` is equal: the same
codec, frame size, pixel format, frame rate and codec parameters (the SPS and
PPS of H.264, kept in the stream's extradata).

Blocking (FFmpeg reads the file): call it from a worker thread in async code.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

from batchkling.errors import CorruptTakeError

__all__ = ["FAILURES", "Format", "Probe", "format_of", "probe"]

# FFmpeg's errors, and the OS's when it cannot read the file.
FAILURES = (av.FFmpegError, OSError, ValueError)
_DEFAULT_RATE = Fraction(24)


@dataclass(frozen=True)
class Format:
    """What must agree between takes for their packets to follow one another unchanged."""

    codec: str
    width: int
    height: int
    pix_fmt: str
    rate: Fraction
    extradata: bytes


@dataclass(frozen=True)
class Probe:
    """One take's video: its format, its length in seconds and in frames."""

    path: Path
    format: Format
    length: Fraction  # seconds, exactly: from the first frame's start to the last one's end
    frames: int

    @property
    def duration(self) -> float:
        return float(self.length)

    @property
    def size(self) -> tuple[int, int]:
        return (self.format.width, self.format.height)


def probe(path: Path, job: str) -> Probe:
    """Read ``path``'s video stream; ``CorruptTakeError`` naming ``job`` when it cannot."""
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise CorruptTakeError(job, str(path), "it has no video stream")
            return _probe(container, container.streams.video[0], path)
    except FAILURES as exc:
        raise CorruptTakeError(job, str(path), _why(exc)) from None


def format_of(stream: Any) -> Format:
    """The format of an open PyAV video stream."""
    ctx = stream.codec_context
    return Format(
        codec=str(ctx.name),
        width=int(ctx.width),
        height=int(ctx.height),
        pix_fmt=str(ctx.pix_fmt),
        rate=Fraction(stream.average_rate or stream.guessed_rate or _DEFAULT_RATE),
        extradata=bytes(ctx.extradata or b""),
    )


def _probe(container: Any, stream: Any, path: Path) -> Probe:
    fmt = format_of(stream)
    rate = fmt.rate
    tb = Fraction(stream.time_base)
    first: int | None = None
    end: int | None = None
    frames = 0
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        if packet.is_corrupt:
            raise ValueError(f"packet {frames + 1} is incomplete")
        frames += 1
        step = packet.duration or int(1 / (rate * tb))
        first = packet.pts if first is None else min(first, packet.pts)
        end = packet.pts + step if end is None else max(end, packet.pts + step)
    if first is None or end is None:
        raise ValueError("it has no frames")
    return Probe(path, fmt, (end - first) * tb, frames)


def _why(exc: BaseException) -> str:
    if isinstance(exc, av.FFmpegError):
        return str(exc.strerror or exc).rstrip(".")
    if isinstance(exc, OSError):
        return str(exc.strerror or exc)
    return str(exc).rstrip(".")
