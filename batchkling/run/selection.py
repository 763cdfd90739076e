"""What a run has to do, decided from the manifest, the ledger's fold and the options. Pure.

This is where "never pay twice" and "never spend past the budget" are decided
before anything is sent: a job is only submitted when the ledger shows that no
create of it can have been charged (or the user asked for a resubmission), and
the credits still to commit are checked against the budget over every run of
the run directory together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from batchkling.errors import BudgetError
from batchkling.model import Job, JobState
from batchkling.state import JobRecord, RunState

__all__ = ["Selection", "select_work"]


@dataclass(frozen=True)
class Selection:
    """The work of one run, in manifest order."""

    submit: tuple[tuple[Job, str], ...]  # (job, reason) to create now
    follow: tuple[Job, ...]  # created earlier, not finished: poll
    download: tuple[Job, ...]  # finished on the server (or file lost): download
    skipped: tuple[Job, ...]  # did not fit the budget (--allow-partial)
    changed: tuple[Job, ...]  # manifest entry differs from what was sent, left alone
    left_in_doubt: tuple[Job, ...]
    left_failed: tuple[Job, ...]
    committed: int  # credits committed by the ledger before this run
    to_commit: int  # credits the submissions will commit
    budget: int | None
    notes: tuple[str, ...] = field(default=())


def _reason(
    job: Job,
    rec: JobRecord,
    *,
    retry_failed: bool,
    resubmit_in_doubt: bool,
    rerender_changed: bool,
    changed: bool,
) -> str | None:
    """Why ``job`` should be created now, or None to leave it as it is."""
    state = rec.state
    if state in (JobState.PENDING, JobState.SKIPPED):
        return "new" if not rec.attempts else "retry"
    if changed and rerender_changed:
        return "rerender-changed"
    if state is JobState.IN_DOUBT:
        return "resubmit-in-doubt" if resubmit_in_doubt else None
    if state is JobState.FAILED:
        return "retry-failed" if retry_failed else None
    return None


def select_work(
    jobs: Sequence[Job],
    st: RunState,
    *,
    budget: int | None,
    allow_partial: bool = False,
    retry_failed: bool = False,
    resubmit_in_doubt: bool = False,
    rerender_changed: bool = False,
    present: frozenset[str] = frozenset(),
) -> Selection:
    """Decide what to submit, poll and download. Raises ``BudgetError`` when it cannot fit.

    ``present`` names the done jobs whose video is still on disk and intact; a
    done job missing from it is downloaded again (never created again).
    """
    submit: list[tuple[Job, str]] = []
    follow: list[Job] = []
    download: list[Job] = []
    changed_jobs: list[Job] = []
    in_doubt: list[Job] = []
    failed: list[Job] = []
    for job in jobs:
        rec = st.jobs.get(job.key) or JobRecord(job=job.key)
        changed = rec.fingerprint is not None and rec.fingerprint != job.fingerprint
        reason = _reason(
            job,
            rec,
            retry_failed=retry_failed,
            resubmit_in_doubt=resubmit_in_doubt,
            rerender_changed=rerender_changed,
            changed=changed,
        )
        if reason is not None:
            submit.append((job, reason))
            continue
        if changed:
            changed_jobs.append(job)
        if rec.state is JobState.RUNNING:
            follow.append(job)
        elif rec.state is JobState.COMPLETED or (
            rec.state is JobState.DONE and job.key not in present
        ):
            download.append(job)
        elif rec.state is JobState.IN_DOUBT:
            in_doubt.append(job)
        elif rec.state is JobState.FAILED:
            failed.append(job)

    committed = st.credits_committed
    needed = sum(job.credits for job, _ in submit)
    skipped: list[Job] = []
    notes: list[str] = []
    if budget is not None and committed + needed > budget:
        if not allow_partial:
            over = committed + needed - budget
            raise BudgetError(
                f"the budget of {budget} credits does not cover this run: {committed} already "
                f"committed by the ledger + {needed} to commit = {committed + needed}, "
                f"{over} over. Nothing was sent.",
                needed=committed + needed,
                budget=budget,
                hint="Raise --budget, or pass --allow-partial to submit the jobs that fit "
                "in manifest order.",
            )
        # In manifest order while they fit; everything after the first that does not is skipped.
        room = budget - committed
        fitting: list[tuple[Job, str]] = []
        for i, (job, reason) in enumerate(submit):
            if job.credits > room:
                skipped = [j for j, _ in submit[i:]]
                break
            room -= job.credits
            fitting.append((job, reason))
        submit = fitting
        needed = sum(job.credits for job, _ in submit)
        notes.append(f"{len(skipped)} job(s) do not fit the budget and are skipped.")
    return Selection(
        submit=tuple(submit),
        follow=tuple(follow),
        download=tuple(download),
        skipped=tuple(skipped),
        changed=tuple(changed_jobs),
        left_in_doubt=tuple(in_doubt),
        left_failed=tuple(failed),
        committed=committed,
        to_commit=needed,
        budget=budget,
        notes=tuple(notes),
    )
