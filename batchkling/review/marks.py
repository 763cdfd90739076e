"""Picks, rejects and notes on takes: the pure fold of the review events. No I/O.

Three ledger events carry a review (``schemas/ledger.schema.json``):

- ``picked``: ``job`` is the take chosen for its shot (``shot``, which is always
  the shot of ``job``: a shot id holds no ``#``); it replaces any other pick of
  that shot, and un-rejects the take. With ``on: false`` the pick is taken back.
- ``rejected``: ``job`` is rejected (``on: false`` takes it back). A rejected take
  is never chosen, and rejecting the picked take unpicks it.
- ``noted``: ``job`` carries the free text ``note`` ("" clears it).

Each carries ``mark``, an id given when the mark was made: the same mark
applied twice (an inbox file moved into the ledger again after a crash) counts
once. A malformed event (``well_formed``) changes nothing and is not remembered
as seen. A ``moved`` event carries a take's marks to its new key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import Any

__all__ = [
    "MARK_EVENTS",
    "NO_MARKS",
    "Marks",
    "TakesMode",
    "choose",
    "marks_of",
    "shot_of",
    "well_formed",
]

MARK_EVENTS = frozenset({"picked", "rejected", "noted"})
# The marks of a take nobody reviewed (shared: a report of 100,000 takes keeps one).
NO_MARKS: Mapping[str, Any] = MappingProxyType({"picked": False, "rejected": False, "note": None})


def shot_of(job: str) -> str:
    """The shot id of a job key (``s01`` for ``s01`` and ``s01#2``)."""
    return job.split("#", 1)[0]


class TakesMode(str, Enum):
    """Which takes of a shot go into a cut."""

    PICKED = "picked"  # the picked take, else the first usable one
    FIRST = "first"  # the first usable take, picks aside
    ALL = "all"  # every usable take, in order


@dataclass(slots=True)
class Marks:
    """What the review says of the takes of one run directory."""

    picks: dict[str, str] = field(default_factory=dict)  # shot id -> job key
    rejected: set[str] = field(default_factory=set)
    notes: dict[str, str] = field(default_factory=dict)  # job key -> text
    seen: set[str] = field(default_factory=set)  # mark ids applied

    def apply(self, ev: Mapping[str, Any]) -> bool:
        """Apply one review event; False when it is malformed (nothing changes)."""
        if not well_formed(ev):
            return False
        mark = ev.get("mark")
        if isinstance(mark, str):
            if mark in self.seen:
                return True
            self.seen.add(mark)
        kind, job = ev["event"], ev["job"]
        on = ev.get("on", True)
        if kind == "picked":
            self._pick(job, on=on)
        elif kind == "rejected":
            self._reject(job, on=on)
        elif ev["note"]:
            self.notes[job] = ev["note"]
        else:
            self.notes.pop(job, None)
        return True

    def _pick(self, job: str, *, on: bool) -> None:
        shot = shot_of(job)
        if on:
            self.picks[shot] = job
            self.rejected.discard(job)
        elif self.picks.get(shot) == job:
            del self.picks[shot]

    def _reject(self, job: str, *, on: bool) -> None:
        if not on:
            self.rejected.discard(job)
            return
        self.rejected.add(job)
        shot = shot_of(job)
        if self.picks.get(shot) == job:
            del self.picks[shot]

    def move(self, old: str, new: str) -> None:
        """A job's key changed (a ``moved`` event): its marks go with it."""
        for shot, job in list(self.picks.items()):
            if job == old:
                del self.picks[shot]
                # A pick the new key's shot already has (of another take) stays.
                self.picks.setdefault(shot_of(new), new)
        if old in self.rejected:
            self.rejected.discard(old)
            self.rejected.add(new)
        if old in self.notes:
            self.notes[new] = self.notes.pop(old)

    def of(self, job: str) -> Mapping[str, Any]:
        """The marks of one take, as ``status --json`` and the reports show them."""
        picked = self.picks.get(shot_of(job)) == job
        if not picked and job not in self.rejected and job not in self.notes:
            return NO_MARKS
        return {
            "picked": picked,
            "rejected": job in self.rejected,
            "note": self.notes.get(job),
        }

    def copy(self) -> Marks:
        """An independent copy (readers apply the inbox's marks over one)."""
        return Marks(dict(self.picks), set(self.rejected), dict(self.notes), set(self.seen))


def well_formed(ev: Mapping[str, Any]) -> bool:
    """Whether ``ev`` is a review event the fold can apply (as the ledger schema has it).

    ``job`` a non-empty job key; ``on``, when given, a boolean; ``shot``, when
    given, the shot of ``job``; ``noted`` carries ``note``, a string; ``mark``,
    when given, a string.
    """
    kind, job = ev.get("event"), ev.get("job")
    if kind not in MARK_EVENTS or not isinstance(job, str) or not job:
        return False
    if not isinstance(ev.get("on", True), bool) or not isinstance(ev.get("mark", ""), str):
        return False
    if kind == "picked" and ev.get("shot", shot_of(job)) != shot_of(job):
        return False
    return kind != "noted" or isinstance(ev.get("note"), str)


def marks_of(events: Iterable[Mapping[str, Any]]) -> Marks:
    """The marks of these events, in order (others are ignored)."""
    marks = Marks()
    for ev in events:
        marks.apply(ev)
    return marks


def choose(
    marks: Marks,
    shots: Sequence[tuple[str, Sequence[str]]],
    usable: Callable[[str], bool],
    takes: TakesMode = TakesMode.PICKED,
) -> list[tuple[str, list[str]]]:
    """The takes of each shot that go into a cut, shots in the order given.

    ``shots``: each shot id with its job keys in take order; ``usable``: whether a
    take has a verified video. A rejected take is never chosen; a shot with no
    take to choose gets an empty list (a title card in an animatic, a gap in a
    timeline).
    """
    out: list[tuple[str, list[str]]] = []
    for shot, jobs in shots:
        fine = [j for j in jobs if usable(j) and j not in marks.rejected]
        if takes is TakesMode.ALL:
            out.append((shot, fine))
            continue
        pick = marks.picks.get(shot)
        if takes is TakesMode.PICKED and pick in fine:
            out.append((shot, [pick]))
        else:
            out.append((shot, fine[:1]))
    return out
