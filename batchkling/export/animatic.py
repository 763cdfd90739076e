"""The animatic: the chosen takes in manifest order as one H.264 MP4, cards for missing shots.

When every take has the same format (codec, size, pixel format, frame rate and
codec parameters) their packets are copied as they are, each take's timestamps
moved to start where the previous one ends: no picture is decoded or encoded,
so the cut costs little more than reading the files, and every frame is the
one that was paid for. A title card is then encoded with settings that give
the takes' very codec parameters, so that it can sit among copied packets;
when no such setting is found, or the takes differ, everything is decoded and
encoded again to one size (the most common, the first among equals) and one
frame rate, letterboxed. Audio streams are left out.

Blocking (FFmpeg): call it from a worker thread in async code.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from pathlib import Path
from typing import TypeVar

from batchkling.export.files import replacing
from batchkling.export.probe import Probe, probe
from batchkling.export.takes import Cut, CutShot, Take

__all__ = [
    "DEFAULT_CARD_RATE",
    "DEFAULT_CARD_SIZE",
    "Animatic",
    "Piece",
    "Progress",
    "pieces_of",
    "write_animatic",
]

# The size and frame rate of an animatic with no take at all (only cards).
DEFAULT_CARD_SIZE = (1280, 720)
DEFAULT_CARD_RATE = Fraction(24)

Progress = Callable[[int, int], None]  # (pieces written, pieces in all)
_T = TypeVar("_T")


@dataclass(frozen=True)
class Piece:
    """One piece of the animatic: a take (its probe when re-encoding), or a card of ``seconds``."""

    shot: CutShot
    take: Take | None
    seconds: float = 0.0
    probe: Probe | None = None


@dataclass(frozen=True)
class Animatic:
    """What was written: where, how many shots, takes and cards, how long, and how."""

    path: Path
    shots: int
    takes: int
    cards: int
    duration: float
    copied: bool  # packets stream-copied (no re-encode)
    size: tuple[int, int]
    rate: Fraction


def pieces_of(cut: Cut, card_seconds: float | None) -> list[Piece]:
    """The pieces of the animatic in order: each chosen take, a card for each missing shot."""
    out: list[Piece] = []
    for shot in cut.shots:
        if not shot.takes:
            seconds = shot.shot.duration if card_seconds is None else card_seconds
            out.append(Piece(shot, None, float(seconds)))
        out.extend(Piece(shot, take) for take in shot.takes)
    return out


def _most_common(values: Sequence[_T]) -> _T:
    """The value seen most often; among equals, the one seen first."""
    counts = Counter(values)
    best = max(counts.values())
    return next(v for v in values if counts[v] == best)


def write_animatic(
    cut: Cut,
    target: Path,
    *,
    card_seconds: float | None = None,
    progress: Progress | None = None,
) -> Animatic:
    """Write the animatic of ``cut`` to ``target`` (atomically), saying ``progress``.

    Raises ``CorruptTakeError`` for a take that does not read, ``ExportWriteError``
    when ``target`` cannot be written.
    """
    from batchkling.export import reencode, streamcopy

    pieces = pieces_of(cut, card_seconds)
    takes = cut.takes
    with replacing(target) as tmp:
        length: float | None = None
        if takes:
            fmt = streamcopy.first_format(takes[0].path, takes[0].key)
            try:
                length = streamcopy.write(
                    tmp, pieces, fmt, takes[0].path, _ticker(progress, pieces)
                )
            except streamcopy.FormatDiffers:
                length = None
        copied = length is not None
        if length is not None:
            size, rate = (fmt.width, fmt.height), fmt.rate
        else:
            probes = {t.key: probe(t.path, t.key) for t in takes}
            probed = [_probed(p, probes) for p in pieces]
            size, rate = _target_of(list(probes.values()))
            length = reencode.write(tmp, probed, size, rate, _ticker(progress, pieces))
    return Animatic(
        path=target,
        shots=len(cut.shots),
        takes=len(takes),
        cards=sum(1 for p in pieces if p.take is None),
        duration=length,
        copied=copied,
        size=size,
        rate=rate,
    )


def _ticker(progress: Progress | None, pieces: Sequence[Piece]) -> Callable[[], None] | None:
    """A callback for each piece written, counting from 0 (a re-encode starts again)."""
    if progress is None:
        return None
    total = len(pieces)
    done = 0
    progress(0, total)

    def tick() -> None:
        nonlocal done
        done += 1
        progress(done, total)

    return tick


def _probed(piece: Piece, probes: dict[str, Probe]) -> Piece:
    """``piece`` with its take's probe, and its length, for a re-encode."""
    if piece.take is None:
        return piece
    found = probes[piece.take.key]
    return replace(piece, probe=found, seconds=found.duration)


def _target_of(probes: Sequence[Probe]) -> tuple[tuple[int, int], Fraction]:
    """The size and frame rate to encode to: the most common among the takes."""
    if not probes:
        return DEFAULT_CARD_SIZE, DEFAULT_CARD_RATE
    width, height = _most_common([p.size for p in probes])
    rate = _most_common([p.format.rate for p in probes])
    # 4:2:0 pictures need even sides.
    return (max(2, width - width % 2), max(2, height - height % 2)), rate
