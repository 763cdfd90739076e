"""What a run has to do, decided from the manifest, the ledger's fold and the options. Pure.

This is where "never pay twice" and "never spend past the budget" are decided
before anything is sent: a job is only submitted when the ledger shows that no
create of it can have been charged (or the user asked for a resubmission), and
the credits still to commit are checked against the budget over every run of
the run directory together.

A chained job whose source shot can no longer be done in this run (its takes
failed, were skipped, or do not fit the budget) is skipped with a reason naming
the source, and costs nothing; one whose source is still to come waits for it
in the runner (``chain``).
"""

from __future__ import annotations

import heapq
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from batchkling.errors import BudgetError
from batchkling.model import Job, JobState
from batchkling.review.marks import Marks
from batchkling.run.chain import chain_reason, choose_take, takes_by_shot
from batchkling.state import JobRecord, RunState

__all__ = ["Selection", "plan_moves", "select_work"]


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
    # Chained jobs whose source cannot be done in this run: (job, reason), never sent.
    chain_skipped: tuple[tuple[Job, str], ...] = field(default=())


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
    marks: Marks | None = None,
) -> Selection:
    """Decide what to submit, poll and download. Raises ``BudgetError`` when it cannot fit.

    ``present`` names the done jobs whose video is still on disk and intact; a
    done job missing from it is downloaded again (never created again). ``marks``
    (the review's picks) decide which take a chained job starts from.
    """
    sorted_ = _Sorted()
    for job in jobs:
        rec = st.jobs.get(job.key) or JobRecord(job=job.key)
        # A chained job whose frame is not extracted yet cannot be compared: not changed.
        changed = (
            rec.fingerprint is not None
            and rec.fingerprint != job.fingerprint
            and not job.shot.waits_for
        )
        reason = _reason(
            job,
            rec,
            retry_failed=retry_failed,
            resubmit_in_doubt=resubmit_in_doubt,
            rerender_changed=rerender_changed,
            changed=changed,
        )
        sorted_.add(job, rec, reason, changed=changed, present=job.key in present)
    committed = st.credits_committed
    chains = _Chains(jobs, st, marks or Marks(), present, sorted_)
    submit = chains.drop_lost(sorted_.submit)
    if rerender_changed:
        submit = chains.pull_downstream(jobs, submit)
    submit, skipped, notes = _budgeted(submit, st, budget, allow_partial, chains)
    return Selection(
        submit=tuple(submit),
        follow=tuple(sorted_.follow),
        download=tuple(sorted_.download),
        skipped=tuple(skipped),
        changed=tuple(sorted_.changed),
        left_in_doubt=tuple(sorted_.in_doubt),
        left_failed=tuple(sorted_.failed),
        committed=committed,
        to_commit=_credits(submit),
        budget=budget,
        notes=notes,
        chain_skipped=tuple((j, r) for j, r in chains.lost if not st.record(j.key).ever_sent),
    )


class _Chains:
    """Chained jobs to submit whose source cannot be done in this run, with the reason."""

    def __init__(
        self, jobs: Sequence[Job], st: RunState, marks: Marks, present: frozenset[str], s: _Sorted
    ) -> None:
        self.takes = takes_by_shot(jobs)
        self.st = st
        self.marks = marks
        self.present = present
        self.sorted = s
        self.others = {j.key for j in (*s.follow, *s.download)}
        self.lost: list[tuple[Job, str]] = []
        self.over_budget: set[str] = set()

    def drop_lost(self, submit: list[tuple[Job, str]]) -> list[tuple[Job, str]]:
        """``submit`` without the chained jobs whose source is lost (over and over: chains)."""
        if not any(job.shot.waits_for for job, _ in submit):
            return submit
        while True:
            alive = self.others | {job.key for job, _ in submit}
            lost_keys = {j.key for j, _ in self.lost}
            dropped: dict[str, str] = {}
            for job, _reason in submit:
                why = self._why_lost(job, alive, lost_keys)
                if why is not None:
                    dropped[job.key] = why
            if not dropped:
                return submit
            self.lost += [(job, dropped[job.key]) for job, _ in submit if job.key in dropped]
            submit = [(job, r) for job, r in submit if job.key not in dropped]

    def pull_downstream(
        self, jobs: Sequence[Job], submit: list[tuple[Job, str]]
    ) -> list[tuple[Job, str]]:
        """With ``--rerender-changed``: a chain made from a take rendered again here follows it.

        Its frame is not extracted yet (``chain.extract_ready`` left it waiting), so it
        waits for the new take in the runner. Only done or failed jobs are pulled in:
        one running or in doubt keeps its state.
        """
        order = {job.key: i for i, job in enumerate(jobs)}
        while True:
            keys = {job.key for job, _ in submit}
            added = [
                (job, "rerender-changed")
                for job in jobs
                if job.key not in keys
                and job.shot.waits_for
                and self.st.state_of(job.key) in (JobState.DONE, JobState.FAILED)
                and any(
                    k in keys for _f, src in job.shot.waits_for for k in self.takes.get(src, [])
                )
            ]
            if not added:
                return submit
            pulled = {job.key for job, _ in added}
            for kept in (self.sorted.download, self.sorted.failed, self.sorted.changed):
                kept[:] = [j for j in kept if j.key not in pulled]
            submit = sorted([*submit, *added], key=lambda item: order[item[0].key])

    def _why_lost(self, job: Job, alive: set[str], lost_keys: set[str]) -> str | None:
        for field_name, source in job.shot.waits_for:
            takes = self.takes.get(source, [])
            found = choose_take(
                source,
                takes,
                self.st.state_of,
                marks=self.marks,
                present=self.present,
                alive=alive,
            )
            if found.status != "lost":
                continue
            why = found.why
            if takes and all(k in lost_keys for k in takes):
                why = f"{source} is skipped too"
            elif takes and all(k in self.over_budget for k in takes):
                why = f"{source} does not fit the budget"
            return chain_reason(field_name, why)
        return None


@dataclass
class _Sorted:
    """The jobs sorted by what this run does with them, in manifest order."""

    submit: list[tuple[Job, str]] = field(default_factory=list)
    follow: list[Job] = field(default_factory=list)
    download: list[Job] = field(default_factory=list)
    changed: list[Job] = field(default_factory=list)
    in_doubt: list[Job] = field(default_factory=list)
    failed: list[Job] = field(default_factory=list)

    def add(
        self, job: Job, rec: JobRecord, reason: str | None, *, changed: bool, present: bool
    ) -> None:
        if reason is not None:
            self.submit.append((job, reason))
            return
        if changed:
            self.changed.append(job)
        state = rec.state
        if state is JobState.RUNNING:
            self.follow.append(job)
        elif state is JobState.COMPLETED or (state is JobState.DONE and not present):
            self.download.append(job)
        elif state is JobState.IN_DOUBT:
            self.in_doubt.append(job)
        elif state is JobState.FAILED:
            self.failed.append(job)


def _budgeted(
    submit: list[tuple[Job, str]],
    st: RunState,
    budget: int | None,
    allow_partial: bool,
    chains: _Chains,
) -> tuple[list[tuple[Job, str]], list[Job], tuple[str, ...]]:
    """The submissions within the budget, the jobs skipped for it, and what to say about it."""
    committed = st.credits_committed
    if budget is None or committed + _credits(submit) <= budget:
        return submit, [], ()
    notes: tuple[str, ...] = ()
    # Sources before their chains: the budget never lets a chain in whose source it leaves out.
    submit, left = _fit(_sources_first(submit), committed, budget, allow_partial=allow_partial)
    # States only move forward: a job with a create behind it is never marked
    # skipped; it keeps its state (done, failed, in doubt) and is only not resent.
    skipped = [j for j in left if not st.record(j.key).ever_sent]
    kept = [j.key for j in left if st.record(j.key).ever_sent]
    if skipped:
        notes = (f"{len(skipped)} job(s) do not fit the budget and are skipped.",)
    if kept:
        notes += (
            f"not sent again, the budget has no room; each keeps its state: {', '.join(kept)}.",
        )
    chains.over_budget = {j.key for j in left}
    return chains.drop_lost(submit), skipped, notes  # less any chained on what is left out


def _sources_first(submit: list[tuple[Job, str]]) -> list[tuple[Job, str]]:
    """``submit`` in manifest order, except that a chained job comes after its sources' jobs.

    Kahn's order, the earliest ready job first. Chains have no cycles (the manifest
    is validated); should one remain, its jobs keep their order at the end.
    """
    if not any(job.shot.waits_for for job, _ in submit):
        return submit
    left = Counter(job.shot.id for job, _ in submit)  # jobs of each shot not placed yet
    needs: list[int] = []
    dependents: dict[str, list[int]] = {}
    for i, (job, _reason) in enumerate(submit):
        sources = {src for _f, src in job.shot.waits_for if src != job.shot.id and left[src]}
        needs.append(sum(left[src] for src in sources))
        for src in sources:
            dependents.setdefault(src, []).append(i)
    ready = [i for i, n in enumerate(needs) if n == 0]
    heapq.heapify(ready)
    order: list[int] = []
    while ready:
        i = heapq.heappop(ready)
        order.append(i)
        for d in dependents.get(submit[i][0].shot.id, ()):
            needs[d] -= 1
            if needs[d] == 0:
                heapq.heappush(ready, d)
    placed = set(order)
    order += [i for i in range(len(submit)) if i not in placed]
    return [submit[i] for i in order]


def _credits(submit: Sequence[tuple[Job, str]]) -> int:
    return sum(job.credits for job, _ in submit)


def _fit(
    submit: list[tuple[Job, str]], committed: int, budget: int, *, allow_partial: bool
) -> tuple[list[tuple[Job, str]], list[Job]]:
    """The submissions that fit an exceeded budget, and the jobs skipped (or ``BudgetError``)."""
    needed = _credits(submit)
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
    for i, (job, _reason) in enumerate(submit):
        if job.credits > room:
            return submit[:i], [j for j, _ in submit[i:]]
        room -= job.credits
    return submit, []


def plan_moves(jobs: Sequence[Job], st: RunState) -> tuple[tuple[str, str], ...]:
    """Ledger records to carry over to a new key: ``(old key, new key)``, in manifest order.

    A manifest job the ledger never sent takes the record of a sent job whose key
    is no longer in the manifest and whose request fingerprint is the same (one to
    one, first come first served), so that a rename, a change of case or ``takes``
    going from 1 to 2 renders nothing again.
    """
    keys = {job.key for job in jobs}
    gone: dict[str, list[str]] = {}
    for key, rec in st.jobs.items():
        if key not in keys and rec.ever_sent and rec.fingerprint:
            gone.setdefault(rec.fingerprint, []).append(key)
    moves: list[tuple[str, str]] = []
    for job in jobs:
        if st.record(job.key).ever_sent:
            continue
        olds = gone.get(job.fingerprint)
        if olds:
            moves.append((olds.pop(0), job.key))
    return tuple(moves)
