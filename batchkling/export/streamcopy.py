"""Stream copy: the takes' packets one after the other, with their timestamps moved.

One pass over the files: each take is opened once, its format compared with
the first take's, and its packets muxed, its first frame starting where the
previous piece ends and its decoding order kept (decode times move by the same
amount as presentation times). A take of another format stops the copy
(``FormatDiffers``) and the caller encodes everything again. A title card
among the takes is encoded with libx264 under the first of a few settings
whose codec parameters (SPS and PPS) are the takes' own, byte for byte, so that
one sample description fits the whole file; when none gives them, ``write``
returns None before writing anything.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av

from batchkling.errors import CorruptTakeError
from batchkling.export.cards import frame_of, title_card
from batchkling.export.probe import FAILURES, Format, format_of

if TYPE_CHECKING:
    from batchkling.export.animatic import Piece

__all__ = [
    "CARD_SETTINGS",
    "FormatDiffers",
    "card_settings",
    "encode_card",
    "first_format",
    "write",
]

# x264 settings tried for a title card, in order: the emulator's clips use the
# first; others cover common encoders' defaults.
CARD_SETTINGS: tuple[dict[str, str], ...] = (
    {"preset": "ultrafast", "tune": "zerolatency"},
    {"preset": "ultrafast"},
    {"preset": "veryfast"},
    {"preset": "medium"},
    {"preset": "slow"},
)


class FormatDiffers(Exception):
    """A take's format is not the first take's: the packets cannot follow one another."""


def first_format(path: Path, job: str) -> Format:
    """The format of the take at ``path`` (opened, not read)."""
    try:
        with av.open(str(path)) as inp:
            if not inp.streams.video:
                raise CorruptTakeError(job, str(path), "it has no video stream")
            return format_of(inp.streams.video[0])
    except FAILURES as exc:
        raise CorruptTakeError(job, str(path), str(exc)) from None


class _Muxer:
    """The output file and where the next piece starts in it."""

    def __init__(self, out: Any, stream: Any) -> None:
        self.out = out
        self.stream = stream
        self.base = Fraction(stream.time_base)
        self.at = 0  # where the next piece starts, in ticks of ``base``
        self.last_dts: int | None = None

    def add(self, packets: Sequence[Any], tb: Fraction) -> None:
        """Mux ``packets`` (in time base ``tb``) from ``at``; move ``at`` to their end."""
        start = min(p.pts for p in packets)
        end = max(p.pts + (p.duration or 0) for p in packets)
        # Integer arithmetic: ticks of tb to ticks of base, rounded (exact when equal).
        num, den = (tb / self.base).numerator, (tb / self.base).denominator
        at, last = self.at, self.last_dts
        for p in packets:
            pts = at + ((p.pts - start) * num * 2 + den) // (2 * den)
            raw_dts = p.dts if p.dts is not None else p.pts
            dts = at + ((raw_dts - start) * num * 2 + den) // (2 * den)
            if last is not None and dts <= last:
                dts = last + 1  # a decoding order that always moves forward
            p.pts, p.dts = max(pts, dts), dts
            if num != den:
                p.duration = ((p.duration or 0) * num * 2 + den) // (2 * den)
            p.time_base = self.base
            p.stream = self.stream
            self.out.mux(p)
            last = dts
        self.at = at + ((end - start) * num * 2 + den) // (2 * den)
        self.last_dts = last

    @property
    def seconds(self) -> float:
        return float(self.at * self.base)


def _take_packets(path: Path, job: str, fmt: Format) -> tuple[list[Any], Fraction]:
    """Every video packet of a take (read whole), and their time base; its format checked."""
    try:
        with av.open(str(path)) as inp:
            stream = inp.streams.video[0]
            if format_of(stream) != fmt:
                raise FormatDiffers(job)
            packets = [p for p in inp.demux(stream) if p.pts is not None]
            for n, p in enumerate(packets):
                if p.is_corrupt:
                    raise ValueError(f"packet {n + 1} is incomplete")
            if not packets:
                raise ValueError("it has no frames")
            return packets, Fraction(stream.time_base)
    except FAILURES as exc:
        raise CorruptTakeError(job, str(path), str(exc)) from None
    except IndexError:
        raise CorruptTakeError(job, str(path), "it has no video stream") from None


def _card_packets(path: Path) -> tuple[list[Any], Fraction]:
    with av.open(str(path)) as inp:
        stream = inp.streams.video[0]
        return [p for p in inp.demux(stream) if p.pts is not None], Fraction(stream.time_base)


def write(
    path: Path,
    pieces: Sequence[Piece],
    fmt: Format,
    template: Path,
    tick: Callable[[], None] | None,
) -> float | None:
    """Write ``pieces`` to ``path`` by stream copy; its length in seconds.

    None when a title card cannot be made to fit; ``FormatDiffers`` when a take
    differs from ``fmt``. ``template``: a take of format ``fmt``.
    """
    settings = None
    if any(p.take is None for p in pieces):
        settings = card_settings(fmt)
        if settings is None:
            return None
    with (
        tempfile.TemporaryDirectory(prefix="batchkling-cards-") as cards,
        av.open(str(template)) as first,
        av.open(str(path), "w", format="mp4") as out,
    ):
        muxer = _Muxer(out, out.add_stream_from_template(first.streams.video[0]))
        for n, piece in enumerate(pieces):
            if piece.take is not None:
                muxer.add(*_take_packets(piece.take.path, piece.take.key, fmt))
            else:
                assert settings is not None
                card = Path(cards) / f"card{n}.mp4"
                shot = piece.shot
                encode_card(card, fmt, settings, shot.shot.id, shot.missing or "", piece.seconds)
                muxer.add(*_card_packets(card))
            if tick is not None:
                tick()
    return muxer.seconds


def _encoder(out: Any, fmt: Format, settings: dict[str, str]) -> Any:
    stream = out.add_stream("libx264", rate=fmt.rate)
    stream.width, stream.height, stream.pix_fmt = fmt.width, fmt.height, fmt.pix_fmt
    stream.codec_context.gop_size = max(1, round(2 * fmt.rate))
    stream.options = dict(settings)
    return stream


def encode_card(
    path: Path, fmt: Format, settings: dict[str, str], shot: str, why: str, seconds: float
) -> None:
    """A title card of ``seconds`` (to the nearest frame, at least one) in ``fmt`` at ``path``."""
    image = title_card(fmt.width, fmt.height, shot, why)
    frame = frame_of(image, fmt.pix_fmt)
    with av.open(str(path), "w", format="mp4") as out:
        stream = _encoder(out, fmt, settings)
        tb = Fraction(1) / fmt.rate
        for i in range(max(1, round(seconds * fmt.rate))):
            frame.time_base = tb
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


@lru_cache(maxsize=8)
def card_settings(fmt: Format) -> dict[str, str] | None:
    """The first x264 settings whose codec parameters are ``fmt``'s; None when none are."""
    if fmt.codec != "h264" or fmt.width % 2 or fmt.height % 2:
        return None
    with tempfile.TemporaryDirectory(prefix="batchkling-probe-") as tmp:
        for settings in CARD_SETTINGS:
            path = Path(tmp) / "try.mp4"
            try:
                encode_card(path, fmt, settings, "", "", 0)
                with av.open(str(path)) as inp:
                    got = bytes(inp.streams.video[0].codec_context.extradata or b"")
            except (av.FFmpegError, ValueError):
                continue
            if got == fmt.extradata:
                return settings
    return None
