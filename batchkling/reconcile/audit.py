"""The audit: every charge of the account over a run directory's runs, explained or not. Pure.

For every charge of this tool in the span of the run directory's runs:

- ``settled``: its task is in this ledger;
- ``elsewhere``: the account journal gives its task to another run directory;
- ``unexplained``: neither; money the account paid that no run directory here
  knows of (a double payment, another program, the web app).

For every job of the ledger: how many charges its tasks drew. A job is charged
more than once when one of its tasks drew two charges, or when it drew more
charges than it has tasks (a lost create that was charged and sent again). The
verdict is clean when every charge is explained and no job was charged twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from batchkling.model import USAGE_TASK_TYPE
from batchkling.reconcile.match import LOOKBACK, Charge, Listing, parse_ts
from batchkling.state import RunState

__all__ = ["Audit", "JobCharges", "audit", "audit_json", "audit_span"]


@dataclass(frozen=True)
class JobCharges:
    """What the account charged for one job."""

    job: str
    tasks: int  # tasks this ledger knows for the job
    charges: int  # charge records of those tasks
    credits: float  # net of refunds

    @property
    def verdict(self) -> str:
        """``never charged``, ``charged once``, or ``charged N times``."""
        if self.charges == 0:
            return "never charged"
        return "charged once" if self.charges == 1 else f"charged {self.charges} times"

    @property
    def twice(self) -> bool:
        """More charges than tasks: a request paid for twice."""
        return self.charges > max(1, self.tasks)


@dataclass(frozen=True)
class Audit:
    """The audit of one run directory."""

    settled: tuple[Charge, ...]
    elsewhere: tuple[tuple[Charge, str], ...]  # with the other run directory
    unexplained: tuple[Charge, ...]
    jobs: tuple[JobCharges, ...]
    charged: float  # net credits the usage shows for this run directory's tasks
    committed: int  # credits the ledger committed
    problem: str | None = None  # why the usage read cannot be trusted to be complete

    @property
    def clean(self) -> bool:
        """Every charge explained, no job charged twice, and the read complete."""
        return self.problem is None and not self.unexplained and not any(j.twice for j in self.jobs)


def audit_span(st: RunState, *, settle: float) -> tuple[datetime, datetime] | None:
    """From before the first run began to after the last one ended (and settled)."""
    starts = [parse_ts(r["started"]) for r in st.runs]
    if not starts:
        return None
    ends = [parse_ts(r["ended"]) for r in st.runs if r.get("ended")] or starts
    return min(starts) - LOOKBACK, max(max(ends), max(starts)) + timedelta(seconds=settle)


def audit(
    st: RunState,
    listing: Listing,
    *,
    span: tuple[datetime, datetime],
    elsewhere: Mapping[str, str],
) -> Audit:
    """Classify every charge of this tool in ``span``; count each job's charges."""
    task_job = {a.task_id: key for key, rec in st.jobs.items() for a in rec.attempts if a.task_id}
    ours = [c for c in listing.charges if c.task_type == USAGE_TASK_TYPE]
    settled: list[Charge] = []
    other: list[tuple[Charge, str]] = []
    unexplained: list[Charge] = []
    per_task: Counter[str] = Counter()
    net: dict[str, float] = {}
    for c in ours:
        if c.task_id in task_job:
            net[c.task_id] = net.get(c.task_id, 0.0) + c.credits
            if c.credits > 0:
                per_task[c.task_id] += 1
                settled.append(c)
            continue
        if c.credits <= 0 or not span[0] <= c.at <= span[1]:
            continue
        if c.task_id is not None and c.task_id in elsewhere:
            other.append((c, elsewhere[c.task_id]))
        else:
            unexplained.append(c)
    jobs = []
    for key, rec in st.jobs.items():
        tasks = {a.task_id for a in rec.attempts if a.task_id}
        if not rec.attempts:
            continue
        jobs.append(
            JobCharges(
                job=key,
                tasks=len(tasks),
                charges=sum(per_task[t] for t in tasks),
                credits=sum(net.get(t, 0.0) for t in tasks),
            )
        )
    return Audit(
        settled=tuple(settled),
        elsewhere=tuple(other),
        unexplained=tuple(unexplained),
        jobs=tuple(jobs),
        charged=sum(net.values()),
        committed=st.credits_committed,
        problem=listing.problem
        or (f"{listing.unparsed} records could not be read" if listing.unparsed else None),
    )


def _charge_json(c: Charge) -> dict[str, Any]:
    return {"task_id": c.task_id, "credits": c.credits, "at": c.at.isoformat()}


def audit_json(a: Audit) -> dict[str, Any]:
    """The audit as one JSON object (``status --json``'s ``"audit"``, ``audit --json``)."""
    return {
        "clean": a.clean,
        "problem": a.problem,
        "charged": a.charged,
        "committed": a.committed,
        "settled": len(a.settled),
        "elsewhere": [{**_charge_json(c), "run_dir": d} for c, d in a.elsewhere],
        "unexplained": [_charge_json(c) for c in a.unexplained],
        "jobs": {
            j.job: {"verdict": j.verdict, "tasks": j.tasks, "charges": j.charges} for j in a.jobs
        },
    }
