"""What a plan costs in credits, whether it fits the budget, and what would make it fit.

Pure arithmetic over jobs. A job costs its billed seconds (the clamped duration,
rounded up to a whole second so the estimate is never below a real charge)
times the rate of its mode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from batchkling._util import collector_paused
from batchkling.errors import BudgetError
from batchkling.model import RATES, Job, credits_for

__all__ = [
    "CostPlan",
    "CostRow",
    "Fit",
    "ModeTotal",
    "cheapest_fit",
    "check_budget",
    "fit_hint",
    "plan",
    "plan_json",
    "total_credits",
]


@dataclass(frozen=True, slots=True)  # one per job: slots halve its memory
class CostRow:
    """One job's line of the plan."""

    job: str
    shot: str
    mode: str
    duration: int | float  # what is sent, after clamping
    seconds: int  # what is billed at most
    credits: int


@dataclass(frozen=True)
class ModeTotal:
    """The jobs, billed seconds and credits of one model mode."""

    mode: str
    jobs: int
    seconds: int
    credits: int


@dataclass(frozen=True)
class CostPlan:
    """Every job's cost, totals per mode, and the budget check.

    ``headroom`` is the budget minus the total (negative when over), or None
    when no budget is set.
    """

    rows: tuple[CostRow, ...]
    totals: tuple[ModeTotal, ...]
    total: int
    budget: int | None
    within_budget: bool
    headroom: int | None

    @property
    def over_by(self) -> int:
        """Credits past the budget; 0 when within it."""
        return 0 if self.headroom is None else max(0, -self.headroom)


def total_credits(jobs: Sequence[Job]) -> int:
    """The credits of all ``jobs``: the total of ``plan`` without building its rows."""
    return sum(credits_for(job.shot.duration, job.shot.model_mode) for job in jobs)


def plan(jobs: Sequence[Job], budget: int | None) -> CostPlan:
    """The cost of ``jobs`` against ``budget`` (None: no cap)."""
    rows: list[CostRow] = []
    append, ceil, rates = rows.append, math.ceil, RATES
    jobs_by_mode = dict.fromkeys(RATES, 0)
    seconds_by_mode = dict.fromkeys(RATES, 0)
    with collector_paused():  # one row per job, none cyclic: see batchkling._util
        for job in jobs:
            shot = job.shot
            mode = shot.model_mode
            seconds = ceil(shot.duration)
            append(CostRow(job.key, shot.id, mode, shot.duration, seconds, seconds * rates[mode]))
            jobs_by_mode[mode] += 1
            seconds_by_mode[mode] += seconds
    # Every job of a mode costs its seconds at the mode's rate, so the sums multiply out.
    totals = [
        ModeTotal(mode, n, seconds_by_mode[mode], seconds_by_mode[mode] * RATES[mode])
        for mode, n in jobs_by_mode.items()
        if n
    ]
    total = sum(t.credits for t in totals)
    headroom = None if budget is None else budget - total
    return CostPlan(
        rows=tuple(rows),
        totals=tuple(totals),
        total=total,
        budget=budget,
        within_budget=headroom is None or headroom >= 0,
        headroom=headroom,
    )


@dataclass(frozen=True)
class Fit:
    """A change that brings an over-budget plan within budget.

    Pro jobs are switched to standard first (every shot is still rendered);
    only when that is not enough are the most expensive jobs left out.
    """

    to_standard: tuple[str, ...]
    leave_out: tuple[str, ...]
    total: int  # the plan's total after the change


def cheapest_fit(cost: CostPlan) -> Fit | None:
    """The smallest change that fits the budget, or None when the plan already fits."""
    if cost.within_budget or cost.budget is None:
        return None
    over = cost.total - cost.budget
    saving_per_second = RATES["pro"] - RATES["standard"]
    # Longest pro jobs first: each switch saves the most, so the fewest switches fit.
    pro = sorted((r for r in cost.rows if r.mode == "pro"), key=lambda r: -r.seconds)
    switched: list[str] = []
    for row in pro:
        if over <= 0:
            break
        switched.append(row.job)
        over -= row.seconds * saving_per_second
    if over <= 0:
        return Fit(tuple(switched), (), cost.budget + over)
    # Every job is standard now; leave out the dearest until the rest fits.
    by_price = sorted(cost.rows, key=lambda r: -r.seconds)
    left_out: list[str] = []
    for row in by_price:
        if over <= 0:
            break
        left_out.append(row.job)
        over -= row.seconds * RATES["standard"]
    return Fit(tuple(switched), tuple(left_out), cost.budget + over)


def _keys(keys: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(keys[:limit])
    return shown if len(keys) <= limit else f"{shown} and {len(keys) - limit} more"


def fit_hint(cost: CostPlan) -> str | None:
    """A sentence naming the cheapest change that fits, or None when the plan fits."""
    fit = cheapest_fit(cost)
    if fit is None:
        return None
    raise_budget = f"or raise the budget to {cost.total:,} credits"
    if len(fit.leave_out) == len(cost.rows):
        return (
            f"No job fits a budget of {cost.budget:,} credits; raise it to {cost.total:,} "
            "credits to render every job."
        )
    parts = []
    if fit.to_standard:
        pro_jobs = sum(1 for r in cost.rows if r.mode == "pro")
        k = len(fit.to_standard)
        if k == pro_jobs:
            which = "the only pro job" if k == 1 else f"all {k} pro jobs"
        else:
            which = "the longest pro job" if k == 1 else f"the {k} longest pro jobs"
        parts.append(f"switch {which} to standard ({_keys(fit.to_standard)})")
    if fit.leave_out:
        n = len(fit.leave_out)
        which = "the most expensive job" if n == 1 else f"the {n} most expensive jobs"
        parts.append(f"leave out {which} ({_keys(fit.leave_out)})")
    return f"To fit, {' and '.join(parts)}: {fit.total:,} credits; {raise_budget}."


def check_budget(cost: CostPlan) -> None:
    """Raise ``BudgetError`` (with the fitting change as its hint) when over budget."""
    if cost.within_budget or cost.budget is None:
        return
    raise BudgetError(
        f"The plan needs {cost.total:,} credits but the budget is {cost.budget:,}: "
        f"over by {cost.over_by:,} credits.",
        needed=cost.total,
        budget=cost.budget,
        hint=fit_hint(cost),
    )


def plan_json(cost: CostPlan) -> dict[str, Any]:
    """The plan as the JSON object ``batchkling plan --json`` prints."""
    return {
        "jobs": [
            {
                "job": r.job,
                "shot": r.shot,
                "mode": r.mode,
                "duration": r.duration,
                "credits": r.credits,
            }
            for r in cost.rows
        ],
        "total_credits": cost.total,
        "budget": cost.budget,
        "within_budget": cost.within_budget,
    }
