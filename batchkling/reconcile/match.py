"""Matching in-doubt creates against the account's credits usage. Pure: no I/O.

A create whose answer was lost may or may not have been charged. The credits
usage lists every charge with its task id and time, so:

- a charge whose task id the ledger knows is settled;
- a charge no ledger line claims, of a price the job can cost (from the exact
  duration x rate up to the reserved price), inside the job's window (from its
  intent to the end of its create, mapped onto the provider's clock), is that
  job's task when the match is one-to-one (a charge that fits two jobs, or a job
  that two charges fit, is ambiguous: adopting the wrong task would put one
  shot's video under another);
- a job is declared never created only with proof that the listing is complete
  over its window (``never_created_proof``); a wrong "never created" pays twice,
  so anything that cannot be proved stays in doubt, with the reason why.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from batchkling._time import parse_rfc3339
from batchkling.model import USAGE_TASK_TYPE, JobState, billable_range
from batchkling.state import Outcome, RunState

__all__ = [
    "DEFAULT_SETTLE",
    "LOOKBACK",
    "SPAN",
    "Charge",
    "InDoubt",
    "Listing",
    "Reconciliation",
    "calibrate",
    "in_doubt_windows",
    "match",
    "never_created_proof",
    "observed_lag",
    "parse_ts",
    "usage_since",
]

DEFAULT_SETTLE = 120.0
# How far before the earliest in-doubt intent the usage is read: wide enough for
# a provider clock minutes off ours, so its own start_time filter cannot hide a charge.
LOOKBACK = timedelta(minutes=15)
# Known tasks created this close to a window must all be in the listing before
# the listing is trusted to show that window completely.
SPAN = timedelta(minutes=5)
_RESOLUTION = 0.001  # the provider's timestamps are in milliseconds
_NEAR = timedelta(minutes=1)
_EPOCH_MS = 1e11  # a number above this is epoch milliseconds, below epoch seconds


def parse_ts(text: str | float | int) -> datetime:
    """A timestamp as an aware UTC datetime.

    Accepts RFC 3339 (``Z`` or an offset; a space instead of ``T``), and epoch
    seconds or milliseconds, as strings or numbers. Raises ``ValueError`` for
    anything else, so that an unreadable time is never silently a wrong one.
    """
    if isinstance(text, bool):
        raise ValueError("a boolean is not a time")
    if isinstance(text, (int, float)):
        return _from_epoch(float(text))
    if not isinstance(text, str):
        raise ValueError(f"not a time: {text!r}")
    text = text.strip()
    try:
        return _from_epoch(float(text))
    except ValueError:
        pass
    return parse_rfc3339(text)


def _from_epoch(value: float) -> datetime:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"not a time: {value!r}")
    seconds = value / 1000 if value > _EPOCH_MS else value
    return datetime.fromtimestamp(seconds, tz=timezone.utc)


@dataclass(frozen=True)
class Charge:
    """One record of the credits usage, parsed. A negative ``credits`` is a refund."""

    id: str
    task_id: str | None
    credits: float
    at: datetime
    task_type: str = USAGE_TASK_TYPE


@dataclass(frozen=True)
class Listing:
    """One read of the credits usage, with what is known about its completeness.

    ``reached_back``: the read went back past ``since`` (an older record was seen)
    or ended on the provider's last page. ``unparsed``: records that could not be
    read. ``problem``: why the read as a whole cannot be trusted to be complete
    (no list in the answer, cut short after the page limit, ...).
    """

    charges: tuple[Charge, ...]
    since: datetime
    read_at: datetime
    reached_back: bool = True
    unparsed: int = 0
    problem: str | None = None


@dataclass(frozen=True)
class InDoubt:
    """An in-doubt create: the job, what it can cost and the window its charge must fall in."""

    job: str
    credits: int  # reserved: the most it can cost
    start: datetime
    end: datetime | None  # None: the process died mid-create and no later run started yet
    least: float = 0.0  # the least it can cost (the exact duration x rate)
    proved_before: int = 0  # earlier attempts of this job already proved never created


@dataclass(frozen=True)
class Reconciliation:
    """What matching found."""

    adopted: tuple[tuple[str, Charge], ...]
    not_created: tuple[str, ...]
    ambiguous: tuple[tuple[str, tuple[Charge, ...]], ...]
    waiting: tuple[str, ...]  # no verdict: the listing does not prove the job was never created
    orphans: tuple[Charge, ...]
    settled: int  # charges whose task id the ledger already knows
    reasons: dict[str, str] = field(default_factory=dict)  # why each waiting job waits
    lag: float = 0.0  # the largest lag seen between a create and its usage record, seconds


def _least(mode: object, duration: object, reserved: int) -> float:
    if (
        isinstance(mode, str)
        and isinstance(duration, (int, float))
        and not isinstance(duration, bool)
    ):
        try:
            return min(billable_range(float(duration), mode)[0], float(reserved))
        except KeyError:
            pass
    return float(reserved)


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
        proved = sum(1 for a in rec.attempts if a.outcome is Outcome.NOT_CREATED)
        out.append(
            InDoubt(
                job=key,
                credits=last.credits,
                start=start,
                end=end,
                least=_least(last.mode, last.duration, last.credits),
                proved_before=proved,
            )
        )
    return out


def usage_since(doubts: Sequence[InDoubt]) -> datetime | None:
    """Where to start reading the usage: the earliest intent, minus ``LOOKBACK``."""
    if not doubts:
        return None
    return min(d.start for d in doubts) - LOOKBACK


def _known_attempts(st: RunState) -> Iterable[tuple[str, datetime, datetime | None]]:
    """(task id, intent time, end of create) of every create the ledger knows the task of."""
    for rec in st.jobs.values():
        for a in rec.attempts:
            if a.task_id is not None:
                end = parse_ts(a.ended_ts) if a.ended_ts else None
                yield a.task_id, parse_ts(a.intent_ts), end


def calibrate(
    st: RunState, charges: Sequence[Charge], *, resolution: float = _RESOLUTION
) -> tuple[float, float] | None:
    """Bounds [lo, hi] on (our clock - the provider's clock), in seconds, from known tasks.

    A known task's charge happened between its intent and the end of its create
    on our clock, which bounds the offset between the two clocks; every known
    task narrows the bounds. None when no known task gives consistent bounds.
    """
    at = {c.task_id: c.at for c in charges if c.task_id and c.credits > 0}
    lo, hi = -math.inf, math.inf
    for task_id, start, end in _known_attempts(st):
        if end is None or task_id not in at:
            continue
        charged = at[task_id]
        lo = max(lo, (start - charged).total_seconds() - resolution)
        hi = min(hi, (end - charged).total_seconds() + resolution)
    if lo > hi or math.isinf(lo) or math.isinf(hi):
        return None
    return lo, hi


def observed_lag(st: RunState, listing: Listing) -> float:
    """The largest lag this listing shows between a create and its usage record, seconds.

    A known task whose create ended before the listing was read, inside the range
    the listing covers, but that is absent from it, had not reached the listing
    yet: its record lags by at least the time between the two.
    """
    present = {c.task_id for c in listing.charges if c.task_id}
    lag = 0.0
    for task_id, start, end in _known_attempts(st):
        if task_id in present or end is None or start < listing.since:
            continue
        lag = max(lag, (listing.read_at - end).total_seconds())
    return lag


def never_created_proof(
    d: InDoubt,
    st: RunState,
    listing: Listing,
    bounds: tuple[float, float] | None,
    *,
    now: datetime,
    settle: float,
    lag_seen: float = 0.0,
) -> str | None:
    """None when ``listing`` proves that ``d``'s create never reached the provider; else why not.

    The proof: the listing can be read whole and reaches back past the window;
    the provider's clock offset is measured from known tasks; every known task
    created in the span around the window is in it; a known task created after
    the window is in it (a watermark: the list has caught up past the window);
    and the window is older than the settle delay, itself no shorter than the
    largest lag seen. No unclaimed charge may fit the window (``match`` checks).
    """
    if d.end is None:
        return "the create's end is not known yet (the run that sent it may still be going)"
    if d.proved_before:
        return (
            "it was proved never created once already; a second time needs a person "
            "(`--resubmit-in-doubt` sends it again and may pay twice)"
        )
    if listing.problem is not None:
        return f"the credits usage cannot be trusted to be complete ({listing.problem})"
    if listing.unparsed:
        return f"the credits usage has {listing.unparsed} records that could not be read"
    if not listing.reached_back or listing.since > d.start:
        return "the credits usage read does not reach back past the window"
    if bounds is None:
        return "no task of this ledger is in the credits usage to measure the provider's clock"
    present = {c.task_id for c in listing.charges if c.task_id}
    watermark = False
    for task_id, start, _end in _known_attempts(st):
        if d.start - SPAN <= start <= d.end + SPAN and task_id not in present:
            return f"the known task {task_id} is missing from the credits usage"
        watermark = watermark or (start > d.end and task_id in present)
    if not watermark:
        return "no task created after it is in the credits usage yet, to show the list is current"
    wait = max(settle, lag_seen, observed_lag(st, listing))
    if (now - d.end).total_seconds() <= wait:
        return f"the credits usage is given {wait:.0f} s to settle"
    return None


def _offsets(
    bounds: tuple[float, float] | None, slack: float, resolution: float
) -> tuple[timedelta, timedelta]:
    """How far before a window's start and after its end a charge's time may lie."""
    if bounds is None:
        return timedelta(seconds=slack), timedelta(seconds=slack)
    # Provider time c.at is our time c.at + offset: it can fit [start, end] only if
    # c.at >= start - hi and c.at <= end - lo.
    return timedelta(seconds=bounds[1] + resolution), timedelta(seconds=-bounds[0] + resolution)


def _peel(doubts: Sequence[InDoubt], cands: dict[str, list[Charge]]) -> list[tuple[str, Charge]]:
    """One-to-one pairs, peeled off until none is left: adopting one can make another unique."""
    adopted: dict[str, Charge] = {}
    taken: set[str] = set()
    changed = True
    while changed:
        changed = False
        for d in doubts:
            if d.job in adopted:
                continue
            mine = [c for c in cands[d.job] if c.id not in taken]
            if len(mine) != 1:
                continue
            rivals = [
                o
                for o in doubts
                if o.job != d.job
                and o.job not in adopted
                and any(c.id == mine[0].id for c in cands[o.job])
            ]
            if not rivals:
                adopted[d.job] = mine[0]
                taken.add(mine[0].id)
                changed = True
    return list(adopted.items())


def _unclaimed(st: RunState, charges: Sequence[Charge], foreign: frozenset[str]) -> list[Charge]:
    """Charges no create of this ledger (nor of another run directory) can be the task of."""
    known = {a.task_id for rec in st.jobs.values() for a in rec.attempts if a.task_id}
    return [
        c
        for c in charges
        if c.task_id
        and c.task_id not in known
        and c.task_id not in foreign
        and c.credits > 0
        and c.task_type == USAGE_TASK_TYPE
    ]


@dataclass(frozen=True)
class _Fit:
    """Whether a charge can be a job's create: its price, and its time on our clock."""

    early: timedelta
    late: timedelta
    now: datetime
    resolution: float

    def price(self, d: InDoubt, c: Charge) -> bool:
        return d.least - self.resolution <= c.credits <= d.credits + self.resolution

    def fits(self, d: InDoubt, c: Charge) -> bool:
        hi = d.end if d.end is not None else self.now
        return self.price(d, c) and d.start - self.early <= c.at <= hi + self.late

    def near(self, d: InDoubt, c: Charge) -> bool:
        # Just outside the window, on a clock that may be measured wrong: not proof.
        hi = d.end if d.end is not None else self.now
        lo = d.start - self.early - _NEAR
        return self.price(d, c) and lo <= c.at <= hi + self.late + _NEAR


def match(
    st: RunState,
    listing: Listing,
    *,
    now: datetime,
    settle: float = DEFAULT_SETTLE,
    slack: float = 0.5,
    resolution: float = _RESOLUTION,
    foreign: frozenset[str] = frozenset(),
    lag_seen: float = 0.0,
) -> Reconciliation:
    """Match in-doubt jobs to unclaimed charges; prove the rest never created, or say why not.

    A charge fits a job when its price is one the job can cost and its time, on
    our clock, falls in the job's window. The provider's clock is calibrated
    against ours from the charges of known tasks; without any, each window is
    widened by ``slack`` seconds only. ``foreign``: task ids another run
    directory of this account created, which no job here may adopt.
    ``lag_seen``: the largest usage lag earlier reads showed; the settle delay is
    never shorter.
    """
    known = {a.task_id for rec in st.jobs.values() for a in rec.attempts if a.task_id}
    unclaimed = _unclaimed(st, listing.charges, foreign)
    bounds = calibrate(st, listing.charges, resolution=resolution)
    fit = _Fit(*_offsets(bounds, slack, resolution), now=now, resolution=resolution)
    doubts = in_doubt_windows(st)
    cands = {d.job: [c for c in unclaimed if fit.fits(d, c)] for d in doubts}
    adopted = _peel(doubts, cands)
    taken = {c.id for _, c in adopted}
    ambiguous: list[tuple[str, tuple[Charge, ...]]] = []
    not_created: list[str] = []
    reasons: dict[str, str] = {}
    for d in (d for d in doubts if d.job not in dict(adopted)):
        left = tuple(c for c in cands[d.job] if c.id not in taken)
        if left:
            ambiguous.append((d.job, left))
            continue
        why = never_created_proof(d, st, listing, bounds, now=now, settle=settle, lag_seen=lag_seen)
        if why is None and any(fit.near(d, c) for c in unclaimed if c.id not in taken):
            why = "an unclaimed charge it could cost lies near its window"
        if why is None:
            not_created.append(d.job)
        else:
            reasons[d.job] = why
    claimed = {c.id for _, cs in ambiguous for c in cs} | taken
    return Reconciliation(
        adopted=tuple(adopted),
        not_created=tuple(not_created),
        ambiguous=tuple(ambiguous),
        waiting=tuple(reasons),
        orphans=tuple(c for c in unclaimed if c.id not in claimed),
        settled=sum(1 for c in listing.charges if c.task_id in known),
        reasons=reasons,
        lag=max(lag_seen, observed_lag(st, listing)),
    )
