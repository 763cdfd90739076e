"""Matching in-doubt creates against the account's credits usage. Pure: no I/O.

A create whose answer was lost may or may not have been charged. The credits
usage lists every charge with its task id and time, so:

- a charge whose task id the ledger knows is settled;
- a charge no ledger line claims, of the job's price, inside the job's window
  (from its intent to the end of its create), is that job's task, when the match
  is one-to-one (a charge that fits two jobs, or a job that two charges fit, is
  ambiguous: adopting the wrong task would put one shot's video under another);
- a job no charge can match, once the usage covers its whole window and the
  window has settled for longer than the provider's lag, was never created;
- everything else stays in doubt; unclaimed charges that fit no job are orphans.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from batchkling.model import USAGE_TASK_TYPE, JobState
from batchkling.state import RunState

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_SETTLE",
    "Charge",
    "InDoubt",
    "Reconciliation",
    "calibrate",
    "in_doubt_windows",
    "match",
    "parse_ts",
    "usage_since",
]

DEFAULT_SETTLE = 120.0
CLOCK_SKEW = timedelta(minutes=1)


def parse_ts(text: str) -> datetime:
    """An RFC 3339 timestamp as an aware UTC datetime (3.10's fromisoformat lacks ``Z``)."""
    text = text.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    dt = datetime.fromisoformat(text)
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


@dataclass(frozen=True)
class Charge:
    """One record of the credits usage, parsed."""

    id: str
    task_id: str | None
    credits: float
    at: datetime
    task_type: str = USAGE_TASK_TYPE


@dataclass(frozen=True)
class InDoubt:
    """An in-doubt create: the job, its price and the window its charge must fall in."""

    job: str
    credits: int
    start: datetime
    end: datetime | None  # None: the process died mid-create and no later run started yet


@dataclass(frozen=True)
class Reconciliation:
    """What matching found."""

    adopted: tuple[tuple[str, Charge], ...]
    not_created: tuple[str, ...]
    ambiguous: tuple[tuple[str, tuple[Charge, ...]], ...]
    waiting: tuple[str, ...]  # no match yet, but the window has not settled
    orphans: tuple[Charge, ...]
    settled: int  # charges whose task id the ledger already knows


def in_doubt_windows(st: RunState) -> list[InDoubt]:
    """Every job in doubt with the window its charge must fall in."""
    run_starts = sorted(parse_ts(r["started"]) for r in st.runs)
    out: list[InDoubt] = []
    for key, rec in st.jobs.items():
        last = rec.last_attempt
        if rec.state is not JobState.IN_DOUBT or last is None:
            continue
        start = parse_ts(last.intent_ts)
        end = parse_ts(last.ended_ts) if last.ended_ts else None
        if end is None:
            # Killed mid-create: the create ended before the next run began.
            end = next((t for t in run_starts if t > start), None)
        out.append(InDoubt(job=key, credits=last.credits, start=start, end=end))
    return out


def usage_since(doubts: Sequence[InDoubt]) -> datetime | None:
    """Where to start paging the usage: the earliest intent, minus clock skew."""
    if not doubts:
        return None
    return min(d.start for d in doubts) - CLOCK_SKEW


def calibrate(
    st: RunState, charges: Sequence[Charge], *, resolution: float = 0.001
) -> tuple[float, float] | None:
    """Bounds [lo, hi] on (our clock - the provider's clock), in seconds, from known tasks.

    A known task's charge happened between its intent and the end of its create
    on our clock, which bounds the offset between the two clocks; every known
    task narrows the bounds. None when no known task gives consistent bounds.
    """
    at = {c.task_id: c.at for c in charges if c.task_id}
    lo, hi = -math.inf, math.inf
    for rec in st.jobs.values():
        for a in rec.attempts:
            if a.task_id is None or a.ended_ts is None or a.task_id not in at:
                continue
            charged = at[a.task_id]
            lo = max(lo, (parse_ts(a.intent_ts) - charged).total_seconds() - resolution)
            hi = min(hi, (parse_ts(a.ended_ts) - charged).total_seconds() + resolution)
    if lo > hi or math.isinf(lo) or math.isinf(hi):
        return None
    return lo, hi


def match(
    st: RunState,
    charges: Sequence[Charge],
    *,
    now: datetime,
    covered_from: datetime,
    settle: float = DEFAULT_SETTLE,
    slack: float = 0.5,
    resolution: float = 0.001,
) -> Reconciliation:
    """Match in-doubt jobs to unclaimed charges. ``covered_from``: the usage was read from then.

    A charge fits a job when its time, on our clock, falls in the job's window.
    The provider's clock is calibrated against ours from the charges of known
    tasks; without any, each window is widened by ``slack`` seconds. ``resolution``
    is the precision of the provider's timestamps (milliseconds). A job is
    only declared never created when no unclaimed charge of its price lies
    within a minute of its window: a wrong "never created" would pay twice.
    """
    known = {a.task_id for rec in st.jobs.values() for a in rec.attempts if a.task_id}
    settled = sum(1 for c in charges if c.task_id in known)
    unclaimed = [
        c
        for c in charges
        if c.task_id and c.task_id not in known and c.credits > 0 and c.task_type == USAGE_TASK_TYPE
    ]
    bounds = calibrate(st, charges, resolution=resolution)
    # offset = our clock - the provider's, within [lo, hi]; plus its timestamps' precision.
    if bounds is None:
        early, late = timedelta(seconds=slack), timedelta(seconds=slack)
    else:
        # Provider time c.at is our time c.at + offset: it can fit [start, end] only if
        # c.at >= start - hi and c.at <= end - lo.
        early = timedelta(seconds=bounds[1] + resolution)
        late = timedelta(seconds=-bounds[0] + resolution)
    doubts = in_doubt_windows(st)

    def fits(d: InDoubt, c: Charge) -> bool:
        hi = d.end if d.end is not None else now
        return round(c.credits) == d.credits and d.start - early <= c.at <= hi + late

    def near(d: InDoubt, c: Charge) -> bool:
        hi = d.end if d.end is not None else now
        return round(c.credits) == d.credits and d.start - CLOCK_SKEW <= c.at <= hi + CLOCK_SKEW

    cands = {d.job: [c for c in unclaimed if fits(d, c)] for d in doubts}
    adopted: list[tuple[str, Charge]] = []
    taken: set[str] = set()
    # Peel off one-to-one pairs until none is left: adopting one can make another unique.
    changed = True
    while changed:
        changed = False
        for d in doubts:
            if d.job in dict(adopted):
                continue
            mine = [c for c in cands[d.job] if c.id not in taken]
            if len(mine) != 1:
                continue
            rivals = [
                o
                for o in doubts
                if o.job != d.job
                and o.job not in dict(adopted)
                and any(c.id == mine[0].id for c in cands[o.job])
            ]
            if not rivals:
                adopted.append((d.job, mine[0]))
                taken.add(mine[0].id)
                changed = True
    done = dict(adopted)
    not_created: list[str] = []
    ambiguous: list[tuple[str, tuple[Charge, ...]]] = []
    waiting: list[str] = []
    for d in doubts:
        if d.job in done:
            continue
        left = tuple(c for c in cands[d.job] if c.id not in taken)
        if left:
            ambiguous.append((d.job, left))
        elif (
            d.end is not None
            and covered_from <= d.start - CLOCK_SKEW
            and (now - d.end).total_seconds() > settle
            and not any(near(d, c) for c in unclaimed if c.id not in taken)
        ):
            not_created.append(d.job)
        else:
            waiting.append(d.job)
    claimed = {c.id for _, cs in ambiguous for c in cs} | taken
    orphans = tuple(c for c in unclaimed if c.id not in claimed)
    return Reconciliation(
        adopted=tuple(adopted),
        not_created=tuple(not_created),
        ambiguous=tuple(ambiguous),
        waiting=tuple(waiting),
        orphans=orphans,
        settled=settled,
    )
