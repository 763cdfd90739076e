"""`batchkling plan`: what a manifest costs, job by job, against the budget. Spends nothing."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from batchkling._util import whole_number
from batchkling.cli._manifest_args import add_manifest_options, load_manifest_from_args
from batchkling.cost import CostPlan, check_budget, plan, plan_json

if TYPE_CHECKING:
    from batchkling.cli._io import IO

__all__ = ["cmd_plan", "register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `plan`."""
    p = sub.add_parser(
        "plan",
        help="what a manifest costs, job by job, against the budget",
        description="Print the credits of every job, the totals per mode and the budget "
        "headroom. Exit 0 within budget or without one, 3 over budget, 2 when invalid.",
    )
    add_manifest_options(p)
    p.add_argument("--json", action="store_true", help="print the plan as one JSON object")
    p.set_defaults(handler=cmd_plan)


def _table(cost: CostPlan) -> str:
    job_width = max([3, *(len(r.job) for r in cost.rows)])
    lines = [f"{'job':<{job_width}}  {'mode':<8}  {'duration':>8}  {'credits':>9}"]
    # Rows differ mostly by job key: format the rest once per mode and duration.
    rest: dict[tuple[str, float], str] = {}
    for r in cost.rows:
        tail = rest.get((r.mode, r.duration))
        if tail is None:
            tail = f"  {r.mode:<8}  {whole_number(r.duration)!s:>8}  {r.credits:>9,}"
            rest[r.mode, r.duration] = tail
        lines.append(r.job.ljust(job_width) + tail)
    lines.append("")
    lines.append(f"{'mode':<8}  {'jobs':>6}  {'seconds':>8}  {'credits':>10}")
    for t in cost.totals:
        lines.append(f"{t.mode:<8}  {t.jobs:>6,}  {t.seconds:>8,}  {t.credits:>10,}")
    jobs = sum(t.jobs for t in cost.totals)
    seconds = sum(t.seconds for t in cost.totals)
    lines.append(f"{'total':<8}  {jobs:>6,}  {seconds:>8,}  {cost.total:>10,}")
    lines.append("")
    if cost.budget is None:
        lines.append("budget: none set (--budget N or budget: in the manifest)")
    elif cost.within_budget:
        lines.append(f"budget: {cost.budget:,} credits, {cost.headroom:,} to spare")
    else:
        lines.append(f"budget: {cost.budget:,} credits, over by {cost.over_by:,}")
    return "\n".join(lines) + "\n"


def cmd_plan(args: argparse.Namespace, io: IO) -> int:
    """Print the plan of the manifest; exit 3 (``BudgetError``) when it does not fit."""
    manifest = load_manifest_from_args(args, io)
    cost = plan(manifest.jobs, manifest.budget)
    if args.json:
        io.out.write(json.dumps(plan_json(cost), ensure_ascii=False) + "\n")
    else:
        io.out.write(_table(cost))
    check_budget(cost)  # BudgetError: exit 3, the message says by how much and what fits
    return 0
