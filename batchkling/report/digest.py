"""What a report needs from the ledger besides the fold, kept event by event. Pure: no I/O.

The fold (``batchkling.state``) gives each job's state. A report also shows how
long each run lasted (a killed run up to its last event), the budget the latest
run was held to, each downloaded video's length and which tasks failed on the
server (their credits are lost). ``LedgerDigest.see`` takes each event once, in
ledger order, as the ledger is read and folded, and keeps only those: a report of
a 100,000-job run directory never holds the list of its events. A video's length
is kept only when it may be worth a warning: when it is more than the tolerance
off the duration its create asked for, or the create did not record one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from batchkling._time import parse_rfc3339
from batchkling.model import JobState
from batchkling.state import Attempt, JobRecord, Outcome, RunState
from batchkling.video.rules import duration_warning

__all__ = ["LedgerDigest", "credits_lost", "digest_of", "parse_ts"]

# A create whose answer never came may have been charged: its price counts as lost.
_UNANSWERED = frozenset({Outcome.SENDING, Outcome.IN_DOUBT})


def parse_ts(text: Any) -> datetime | None:
    """``text`` as a time, or None: a ledger edited by hand may hold anything there."""
    if not isinstance(text, str):
        return None
    try:
        return parse_rfc3339(text)
    except ValueError:
        return None


def _number_or_none(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None


@dataclass
class LedgerDigest:
    """What ``see`` kept of the events it was given (all of a ledger, in order)."""

    # Per run, in the order of their ``run_started``: the latest time among the
    # events written from its start until the next run started (its own start if
    # none is later). A run the ledger has no ``run_ended`` for is measured to it.
    run_lasts: list[str] = field(default_factory=list)
    # The budget the latest ``run_started`` recorded (None: none, or no run yet).
    budget: int | None = None
    # Task id -> the length of its video, as its ``downloaded`` event recorded it, for
    # the videos that may be off what was asked (every one, when seen without a state).
    lengths: dict[str, float] = field(default_factory=dict)
    # Tasks that failed on the server (a ``failed`` event), current or not.
    failed_tasks: set[str] = field(default_factory=set)
    _start: datetime | None = None
    _latest: tuple[datetime, str] | None = None

    def see(self, ev: Mapping[str, Any], st: RunState | None = None) -> None:
        """Keep what a report needs of one more event; ``st``: the fold up to it, if known."""
        kind = ev.get("event")
        ts = ev.get("ts")
        if kind == "run_started":
            self._run_started(ev)
        elif isinstance(ts, str):
            self._later(ts)
        if kind == "downloaded":
            length = _number_or_none(ev.get("duration"))
            task = ev.get("task_id")
            if isinstance(task, str) and length is not None and _may_warn(ev, st, length):
                self.lengths[task] = length
        elif kind == "failed" and isinstance(ev.get("task_id"), str):
            self.failed_tasks.add(ev["task_id"])

    def _later(self, ts: str) -> None:
        """Keep ``ts`` as the current run's latest time if it is one, at or after its start."""
        t = parse_ts(ts)
        if t is None or self._start is None or t < self._start:
            return
        if self._latest is None or (t, ts) > self._latest:
            self._latest = (t, ts)
            self.run_lasts[-1] = ts

    def _run_started(self, ev: Mapping[str, Any]) -> None:
        started = str(ev.get("ts"))
        self.run_lasts.append(started)
        self._start = parse_ts(started)
        self._latest = None if self._start is None else (self._start, started)
        budget = ev.get("budget")
        self.budget = budget if isinstance(budget, int) and not isinstance(budget, bool) else None


def _may_warn(ev: Mapping[str, Any], st: RunState | None, length: float) -> bool:
    """False only when the create of this video asked for a duration it is close to."""
    rec = st.jobs.get(ev["job"]) if st is not None else None
    if rec is None:
        return True
    asked = next((a.duration for a in rec.attempts if a.task_id == ev["task_id"]), None)
    return asked is None or duration_warning(rec.job, length, asked) is not None


def digest_of(events: Iterable[Mapping[str, Any]]) -> LedgerDigest:
    """The digest of ``events`` (for events already in memory, as tests have them)."""
    digest = LedgerDigest()
    for ev in events:
        digest.see(ev)
    return digest


def _lost(rec: JobRecord, attempt: Attempt, failed_tasks: set[str] | frozenset[str]) -> bool:
    if attempt.outcome in _UNANSWERED:
        return True
    task = attempt.task_id
    if attempt.outcome is not Outcome.CREATED or task is None or task not in failed_tasks:
        return False
    # A task that failed and then finished after all (a later answer) is not lost.
    return not (rec.task_id == task and rec.state in (JobState.COMPLETED, JobState.DONE))


def credits_lost(rec: JobRecord, failed_tasks: set[str] | frozenset[str]) -> int:
    """Credits of ``rec``'s creates with nothing to show: in doubt, or a task that failed.

    An in-doubt create counts at the price it may have been charged; a refused or
    never-created one cost nothing. Earlier failed tasks of a job sent again count too.
    """
    return sum(a.credits for a in rec.attempts if _lost(rec, a, failed_tasks))
