"""Re-encoding: every piece decoded, fitted to one size and frame rate, and encoded once.

Used when the takes differ (a size, a frame rate, an encoder's parameters), so
that one sample description fits the file. Each take keeps its own length: at
the animatic's frame rate it shows, for each output frame, the latest of its
frames whose time has come (frames are repeated or dropped, never stretched).
A picture of another shape is scaled to fit and centred on black (letterbox or
pillarbox).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av
from PIL import Image

from batchkling.errors import CorruptTakeError
from batchkling.export.cards import frame_of, title_card
from batchkling.export.probe import FAILURES

if TYPE_CHECKING:
    from batchkling.export.animatic import Piece

__all__ = ["ENCODER_OPTIONS", "fit", "write"]

ENCODER_OPTIONS = {"preset": "veryfast", "crf": "20"}


def write(
    path: Path,
    pieces: Sequence[Piece],
    size: tuple[int, int],
    rate: Fraction,
    tick: Callable[[], None] | None,
) -> float:
    """Encode ``pieces`` (each take with its probe) to ``path`` at ``size`` and ``rate``
    (H.264, yuv420p); return its length in seconds."""
    width, height = size
    with av.open(str(path), "w", format="mp4", options={"movflags": "+faststart"}) as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = max(1, round(2 * rate))
        stream.options = dict(ENCODER_OPTIONS)
        index = 0
        tb = Fraction(1) / rate
        for seg in pieces:
            for frame in _frames_of(seg, size, rate):
                # PyAV moves a frame's pts from its time base to the encoder's: say it is
                # already in the encoder's (a frame may be sent more than once).
                frame.time_base = tb
                frame.pts = index
                index += 1
                for packet in stream.encode(frame):
                    out.mux(packet)
            if tick is not None:
                tick()
        for packet in stream.encode(None):
            out.mux(packet)
    return float(index / rate)


def _frames_of(seg: Piece, size: tuple[int, int], rate: Fraction) -> Iterator[Any]:
    """The output frames of one piece: a take resampled and fitted, or a card repeated."""
    count = max(1, round(seg.seconds * rate))
    if seg.probe is None:
        card = title_card(size[0], size[1], seg.shot.shot.id, seg.shot.missing or "")
        frame = frame_of(card, "yuv420p")
        for _ in range(count):
            yield frame
        return
    take = seg.take
    assert take is not None
    try:
        yield from _resampled(seg.probe.path, size, rate, count)
    except FAILURES as exc:
        raise CorruptTakeError(take.key, str(take.path), str(exc)) from None


def _resampled(path: Path, size: tuple[int, int], rate: Fraction, count: int) -> Iterator[Any]:
    """``count`` frames of the video at ``path``, at ``rate``, fitted to ``size``."""
    with av.open(str(path)) as inp:
        stream = inp.streams.video[0]
        decoded = inp.decode(stream)
        current = next(decoded, None)
        if current is None:
            return
        start = _time(current)
        upcoming = next(decoded, None)
        fitted, fitted_of = fit(current, size), current
        for k in range(count):
            due = start + Fraction(k) / rate
            while upcoming is not None and _time(upcoming) <= due:
                current, upcoming = upcoming, next(decoded, None)
            if fitted_of is not current:
                fitted, fitted_of = fit(current, size), current
            yield fitted


def _time(frame: Any) -> Fraction:
    return Fraction(frame.pts or 0) * Fraction(frame.time_base)


def fit(frame: Any, size: tuple[int, int]) -> Any:
    """``frame`` as a yuv420p frame of ``size``: scaled to fit, centred on black."""
    width, height = size
    if (frame.width, frame.height) == size:
        return frame.reformat(format="yuv420p")
    scale = min(width / frame.width, height / frame.height)
    inner = (max(1, round(frame.width * scale)), max(1, round(frame.height * scale)))
    picture = frame.to_image().resize(inner, Image.Resampling.BILINEAR)
    canvas = Image.new("RGB", size, (0, 0, 0))
    canvas.paste(picture, ((width - inner[0]) // 2, (height - inner[1]) // 2))
    return frame_of(canvas, "yuv420p")
