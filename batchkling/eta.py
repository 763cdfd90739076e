"""Pure: how long a run has left, from the generation times seen in this run alone.

A job's kind is its mode and whole duration (``("pro", 15.0)``): a 15 s pro shot
takes longer than a 3 s standard one. The expected time of a kind is the mean of
this run's finished tasks of that kind; a kind not seen yet takes the times of
its mode (else of any), scaled to its length by seconds of video.
Jobs finished in earlier runs say nothing about the speed now (they were done in
the first second of a resumed run), so they never count: until a task created by
this run has finished there is no basis, and the estimate is ``None``.

The remaining time is a list schedule: each running task frees its slot after
the mean of the times seen longer than its age (at once when it outlived them), and
the jobs not started yet take the earliest free slot, in order. A create takes
the mean time a create of this run took to be answered, and creates of one kind
(one price) go out one at a time, as the submitter sends them: with a slow API,
the creates are what a run waits for.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

__all__ = ["Kind", "Speeds", "estimate", "next_due"]

Kind = tuple[str, float]  # (model mode, whole seconds of video)


@dataclass(frozen=True)
class Speeds:
    """Generation times learnt from ``(kind, seconds)`` of this run's finished tasks."""

    times: dict[Kind, tuple[float, ...]]
    create: float = 0.0  # mean seconds from a create's intent to its answer

    @classmethod
    def of(cls, samples: Iterable[tuple[Kind, float]], creates: Sequence[float] = ()) -> Speeds:
        """The speeds of ``samples`` and of ``creates`` (seconds each create took)."""
        times: dict[Kind, list[float]] = {}
        for kind, took in samples:
            times.setdefault(kind, []).append(max(0.0, took))
        create = sum(creates) / len(creates) if creates else 0.0
        return cls({k: tuple(v) for k, v in times.items()}, max(0.0, create))

    @property
    def known(self) -> bool:
        """True once a task of this run has finished: there is a basis for an estimate."""
        return bool(self.times)

    def seen(self, kind: Kind) -> tuple[float, ...]:
        """The times of ``kind``: its own, else its mode's (else any) scaled to its length."""
        own = self.times.get(kind)
        if own is not None:
            return own
        mode, seconds = kind
        same = [k for k in self.times if k[0] == mode] or list(self.times)
        return tuple(t * seconds / k[1] if k[1] > 0 else t for k in same for t in self.times[k])

    def expect(self, kind: Kind) -> float:
        """Expected seconds from create to finish for a task of ``kind`` (0 with no basis)."""
        seen = self.seen(kind)
        return sum(seen) / len(seen) if seen else 0.0

    def left(self, kind: Kind, age: float) -> float:
        """Expected seconds still needed by a task of ``kind`` created ``age`` seconds ago.

        The mean over the times seen that are longer than ``age``: a task that has run
        past the quick ones is expected to be one of the slow ones. 0 when it has
        outlived them all (it is due).
        """
        longer = [t - age for t in self.seen(kind) if t > age]
        return sum(longer) / len(longer) if longer else 0.0


def _left(speeds: Speeds, running: Sequence[tuple[Kind, float]]) -> list[float]:
    """Seconds each running task still needs (0 when overdue), soonest first."""
    return sorted(speeds.left(kind, age) for kind, age in running)


class _Creates:
    """When the next create of each kind can be answered: they go out one at a time."""

    def __init__(self, speeds: Speeds) -> None:
        self._speeds = speeds
        self._free: dict[Kind, float] = {}

    def sent(self, kind: Kind, age: float) -> float:
        """A create of ``kind`` sent ``age`` seconds ago: when it is answered."""
        answered = max(0.0, self._speeds.create - age)
        self._free[kind] = max(self._free.get(kind, 0.0), answered)
        return answered

    def send(self, kind: Kind, ready: float) -> float:
        """A create of ``kind`` that may go at ``ready``: when it is answered."""
        answered = max(ready, self._free.get(kind, 0.0)) + self._speeds.create
        self._free[kind] = answered
        return answered


def estimate(
    speeds: Speeds,
    *,
    running: Sequence[tuple[Kind, float]],
    queued: Sequence[Kind],
    slots: int,
    creating: Sequence[tuple[Kind, float | None]] = (),
    held: Sequence[tuple[Kind, float]] = (),
) -> float | None:
    """Seconds until the last job has finished generating; None without a basis.

    ``running``: ``(kind, age in seconds)`` of each task generating now;
    ``creating``: ``(kind, seconds since it was sent)`` of each job in a slot
    whose create is unanswered (None: not sent yet, it waits its turn);
    ``held``: ``(kind, seconds until it is settled)`` of each in-doubt create
    keeping its slot (counted as sent again then, the longer outcome);
    ``queued``: the kind of each job not started yet, in the order they start;
    ``slots``: how many may generate at once.
    """
    if not speeds.known:
        return None
    creates = _Creates(speeds)
    left = _left(speeds, running)
    # Creates already sent are answered first, then those waiting their turn.
    ordered = sorted(creating, key=lambda c: c[1] is None)
    for kind, age in ordered:
        answered = creates.send(kind, 0.0) if age is None else creates.sent(kind, age)
        left.append(answered + speeds.expect(kind))
    for kind, wait in sorted(held, key=lambda h: h[1]):
        left.append(creates.send(kind, max(0.0, wait)) + speeds.expect(kind))
    left.sort()
    end = left[-1] if left else 0.0
    slots = max(1, slots)
    # With more tasks running than slots (the limit was lowered), the first to finish
    # free no slot: a queued job starts when the count falls below the limit.
    free = left[max(0, len(left) - slots) :]
    free += [0.0] * (slots - len(free))
    heapq.heapify(free)
    for kind in queued:
        start = creates.send(kind, heapq.heappop(free))
        finish = start + speeds.expect(kind)
        end = max(end, finish)
        heapq.heappush(free, finish)
    return end


def next_due(speeds: Speeds, running: Sequence[tuple[Kind, float]]) -> float | None:
    """Seconds until the first running task is expected to finish; None without a basis."""
    if not speeds.known or not running:
        return None
    return _left(speeds, running)[0]
