"""What `batchkling run` prints on stdout once the run is over: the summary.

Every line says something a person can act on: the counts, what pushed back,
each failed job with its reason (this run's, or the one an earlier run recorded
in the ledger), each job in doubt with why, the audit's verdict, why nothing
could be done when the API was never reached, and where the report is.
Numbers are written one way (``thousands``, ``plural``, ``span``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from batchkling._util import plural, span, thousands
from batchkling.model import JobState

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.model import Manifest
    from batchkling.reconcile.audit import Audit
    from batchkling.run.options import RunResult
    from batchkling.state import RunState

__all__ = ["REASON_CHARS", "Ending", "failure_reasons", "print_summary"]

# How much of a failed job's reason the summary shows; the ledger keeps it whole.
REASON_CHARS = 100


@dataclass(frozen=True)
class Ending:
    """What the command adds to a run's result: the report, and whether the API was reached."""

    report: Path | None = None  # written, at this path
    unreachable: str | None = None  # the line saying the API was never reached


def failure_reasons(
    result: RunResult, state: RunState | None, limit: int = REASON_CHARS
) -> dict[str, str]:
    """Why each job that ended the run failed, cut to ``limit`` characters.

    The run's own reason first (it decided the failure); else what the ledger
    recorded, this run's or an earlier one's.
    """
    from batchkling.api.answers import clip

    reasons: dict[str, str] = {}
    for key in result.jobs_in(JobState.FAILED):
        why = result.fail_reasons.get(key)
        if why is None and state is not None:
            why = state.record(key).error
        reasons[key] = clip((why or "no reason was given").rstrip("."), limit)
    return reasons


def print_summary(
    result: RunResult,
    manifest: Manifest,
    run_dir: Path,
    io: IO,
    *,
    state: RunState | None,
    ending: Ending,
) -> None:
    """The summary of a finished run, on ``io.out``."""
    out = io.out
    counts = ", ".join(f"{k} {v}" for k, v in sorted(result.counts.items()))
    print(
        f"{plural(len(manifest.jobs), 'job')}: {counts}; "
        f"{thousands(result.credits_committed)} credits committed; "
        f"{plural(result.api_calls, 'API call')} in {span(result.elapsed)}",
        file=out,
    )
    if result.polls:
        mean = sum(result.polls.values()) / len(result.polls)
        delay = result.median_detection_delay
        extra = f", median detection delay <= {span(delay)}" if delay is not None else ""
        print(f"polls per job {mean:.1f}{extra}", file=out)
    _print_pushback(result, io)
    for old, new in result.moves:
        print(
            f"moved: {old} -> {new} (the same request under a new key; nothing is rendered again)",
            file=out,
        )
    _print_in_doubt(result, io)
    _print_failed(result, state, io)
    _print_findings(result, io)
    _print_audit(result, io)
    if ending.unreachable is not None:
        print(ending.unreachable, file=out)
    if ending.report is not None:
        print(f"report: {ending.report}", file=out)
    if result.interrupted:
        print(
            f"interrupted. To resume, run the same command again (run directory {run_dir}).",
            file=out,
        )


def _print_pushback(result: RunResult, io: IO) -> None:
    """How often the API pushed back, and how long every request waited for it."""
    answers = [
        f"{plural(n, 'answer')} {kind}"
        for n, kind in (
            (result.answers_429, "429 (too many requests)"),
            (result.answers_5xx, "5xx"),
        )
        if n
    ]
    if not answers and not result.paused_seconds:
        return
    said = ", ".join(answers) if answers else "no answer 429 or 5xx"
    print(f"pushed back: {said}; requests paused {span(result.paused_seconds)} in all", file=io.out)


def _print_failed(result: RunResult, state: RunState | None, io: IO) -> None:
    reasons = failure_reasons(result, state)
    if not reasons:
        return
    print(f"failed: {', '.join(reasons)} (--retry-failed resubmits them)", file=io.out)
    for key, why in reasons.items():
        print(f"{key}: failed: {why}.", file=io.out)


def _print_in_doubt(result: RunResult, io: IO) -> None:
    in_doubt = result.jobs_in(JobState.IN_DOUBT)
    if in_doubt:
        print(
            f"in doubt (the create's answer was lost; it may have been charged): "
            f"{', '.join(in_doubt)}. `batchkling reconcile` checks the account's credits "
            f"usage; --resubmit-in-doubt sends them again and may pay twice.",
            file=io.out,
        )
    for key in in_doubt:
        why = result.doubt_reasons.get(key)
        if why is not None:
            print(f"{key}: still in doubt: {why}.", file=io.out)
    if result.held_back:
        print(
            "not sent: every slot is held by a create in doubt, which may be generating: "
            f"{', '.join(result.held_back)}. Run again once they are settled.",
            file=io.out,
        )


def _print_findings(result: RunResult, io: IO) -> None:
    out = io.out
    for key, value in result.unknown_status.items():
        print(
            f"{key}: the API answered the undocumented status {value!r}; treated as running.",
            file=out,
        )
    for key, n in result.finishing.items():
        if key not in result.fail_reasons:
            print(f"{key}: answered completed with no video URL yet {plural(n, 'time')}.", file=out)
    if result.stalled:
        print(
            f"stalled (status unchanged for longer than expected): {', '.join(result.stalled)}",
            file=out,
        )
    if result.allowed_at_once is not None:
        print(
            f"the account allowed {result.allowed_at_once} at once "
            f"({plural(result.limit_refusals, 'create')} refused for too many tasks, "
            "none charged)",
            file=out,
        )
    if result.timed_out:
        print(f"still running after --task-timeout: {', '.join(result.timed_out)}", file=out)
    for note in result.notes:
        print(note, file=out)
    for key, other in result.duplicates.items():
        print(
            f"{key}: not sent: the same request is already running or done in the run "
            f"directory {other.run_dir} (job {other.job}, task {other.task_id}); "
            "--allow-duplicate sends it anyway, and it is paid again.",
            file=out,
        )
    for charge in result.orphans:
        print(
            f"orphan charge: task {charge.task_id}, {thousands(charge.credits)} credits at "
            f"{charge.at.isoformat()}, claimed by no job of this run.",
            file=out,
        )


def _print_audit(result: RunResult, io: IO) -> None:
    """The verdict of the end-of-run audit of the account's charges."""
    if result.audit_problem is not None:
        print(f"audit: not done: {result.audit_problem}.", file=io.out)
    audit = result.audit
    if audit is None:
        return
    if not audit.clean:
        _print_audit_findings(audit, result, io)
        return
    unlisted = sum(1 for j in audit.jobs if j.charges == 0 and j.tasks > 0)
    doubts = len(result.jobs_in(JobState.IN_DOUBT))
    found = (
        f"{plural(len(audit.settled), 'charge')}, {thousands(audit.charged)} credits; "
        f"{thousands(audit.committed)} credits committed"
    )
    gaps = [f"{plural(unlisted, 'task')} not in the credits usage yet"] if unlisted else []
    gaps += [f"{plural(doubts, 'job')} in doubt"] if doubts else []
    if gaps:
        verdict = f"no unexplained charge so far ({found}); not proven: {'; '.join(gaps)}"
    else:
        verdict = f"clean: every charge of this run directory's runs is in its ledger ({found})"
    print(f"audit: {verdict}.", file=io.out)


def _print_audit_findings(audit: Audit, result: RunResult, io: IO) -> None:
    if audit.problem is not None:
        print(
            f"audit: not proven: the credits usage read is incomplete ({audit.problem}).",
            file=io.out,
        )
    for c in audit.unexplained:
        print(
            f"audit: unexplained charge: task {c.task_id}, {thousands(c.credits)} credits at "
            f"{c.at.isoformat()}: no task of this run directory or of another one of this "
            "account.",
            file=io.out,
        )
    if audit.unexplained and result.jobs_in(JobState.IN_DOUBT):
        print(
            "audit: the jobs in doubt may account for unexplained charges; "
            "`batchkling reconcile` settles them.",
            file=io.out,
        )
    for j in audit.jobs:
        if j.twice:
            print(
                f"audit: {j.job} was {j.verdict} for {plural(j.tasks, 'task')} "
                f"({thousands(j.credits)} credits).",
                file=io.out,
            )
