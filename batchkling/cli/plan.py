"""`batchkling plan`: what a manifest costs, job by job, against the budget. Spends nothing.

Chained jobs cost what any job costs; the plan also says which job waits for which.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from batchkling._util import of_budget, thousands, whole_number
from batchkling.cli._manifest_args import add_manifest_options, load_manifest_from_args

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.cost import CostPlan
    from batchkling.model import Manifest

__all__ = ["cmd_plan", "register"]

# The manifest loader and the price rule are imported by the handler: `plan --help`
# and every other command's parser load neither.


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
            tail = f"  {r.mode:<8}  {whole_number(r.duration)!s:>8}  {thousands(r.credits):>9}"
            rest[r.mode, r.duration] = tail
        lines.append(r.job.ljust(job_width) + tail)
    lines.append("")
    lines.append(f"{'mode':<8}  {'jobs':>6}  {'seconds':>8}  {'credits':>10}")
    for t in cost.totals:
        lines.append(_total_row(t.mode, t.jobs, t.seconds, t.credits))
    jobs = sum(t.jobs for t in cost.totals)
    seconds = sum(t.seconds for t in cost.totals)
    lines.append(_total_row("total", jobs, seconds, cost.total))
    lines.append("")
    if cost.budget is None or cost.headroom is None:
        lines.append("budget: none set (--budget N or budget: in the manifest)")
    else:
        used = of_budget(cost.total, cost.budget)
        left = (
            f"{thousands(cost.headroom)} to spare"
            if cost.within_budget
            else f"over by {thousands(cost.over_by)}"
        )
        lines.append(f"budget: {used} credits, {left}")
    return "\n".join(lines) + "\n"


def _waits(manifest: Manifest) -> list[dict[str, str]]:
    """Each chained job, the shot it waits for and which frame of that shot it takes."""
    out = []
    for job in manifest.jobs:
        for field, source in job.shot.waits_for:
            frame = "last" if field == "image" else "first"
            out.append({"job": job.key, "waits_for": source, "frame": frame, "field": field})
    return out


def _waits_text(waits: list[dict[str, str]]) -> str:
    if not waits:
        return ""
    lines = ["", "chained (each created once the shot it waits for is done):"]
    for w in waits:
        use = "starts on" if w["field"] == "image" else "ends on"
        lines.append(f"  {w['job']} waits for {w['waits_for']} ({use} its {w['frame']} frame)")
    return "\n".join(lines) + "\n"


def _total_row(mode: str, jobs: int, seconds: float, credits: int) -> str:
    return f"{mode:<8}  {thousands(jobs):>6}  {thousands(seconds):>8}  {thousands(credits):>10}"


def cmd_plan(args: argparse.Namespace, io: IO) -> int:
    """Print the plan of the manifest; exit 3 (``BudgetError``) when it does not fit."""
    from batchkling.cost import check_budget, plan, plan_json

    manifest = load_manifest_from_args(args, io)
    cost = plan(manifest.jobs, manifest.budget)
    waits = _waits(manifest)
    if args.json:
        doc = plan_json(cost)
        if waits:
            doc["waits"] = waits
        io.out.write(json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        io.out.write(_table(cost) + _waits_text(waits))
    check_budget(cost)  # BudgetError: exit 3, the message says by how much and what fits
    return 0
