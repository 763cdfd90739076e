"""Creating one task: reserve its credits, write the intent, send the create, record the answer.

The write-ahead rule: the intent is written and fsynced after the request has
passed the rate gate and before it is sent (the client's ``before_send``), so
the intent's time and the create's arrival at the server are milliseconds
apart; that narrow window is what lets reconciliation match a lost answer to
its charge. The intent goes to the account journal first, so that other run
directories know of the create, and creates of one price hold the journal's
price lock, so that their windows never overlap across processes either.

The price lock is taken once the create has its slot of the gate, never while
it waits for one: a create waiting behind polls would make every create of its
price wait too. It is held until the answer is recorded. A create that had to
wait for the lock takes a new slot (ahead of the polls) before it is sent.

From the intent on, the create is shielded from cancellation: an interrupted
run waits (at most ``create_answer_timeout``) for the answer, so a task id is
never lost to a clean stop. Only a ledger that can no longer be written gives
up waiting (``abandon``): the answer could not be recorded anyway, and the
intent on disk leaves the job in doubt for the next run.

A create is retried only when the API provably did not process it
(``TransientError``); every other failure is recorded and ends the submission.
A create refused for too many tasks at once (``ConcurrencyLimitError``) is not
retried here: it is ``LIMITED``, and the runner sends it again once a slot
within the account's limit is free.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from dataclasses import dataclass
from enum import Enum
from typing import Any

import anyio

from batchkling.api.client import SjinnClient
from batchkling.api.gate import Priority
from batchkling.api.retry import retrying
from batchkling.errors import (
    AccountError,
    ApiError,
    ConcurrencyLimitError,
    InDoubtError,
    RefusedError,
    TaskNotFoundError,
    TransientError,
)
from batchkling.journal import AccountJournal, Elsewhere
from batchkling.model import Job
from batchkling.run.options import RunOptions
from batchkling.run.writer import RunWriter
from batchkling.schedule import RetryPolicy

__all__ = ["SubmitVerdict", "Submitted", "Submitter"]

# Seconds of waiting for a price lock after which a create takes a new gate slot.
_LOCK_WAITED = 0.002


class SubmitVerdict(Enum):
    """What became of one submission."""

    CREATED = "created"  # a task runs: follow it
    REFUSED = "refused"  # refused for good or for now, provably not charged
    IN_DOUBT = "in_doubt"  # the answer was lost: it may have been charged
    GAVE_UP = "gave_up"  # every attempt was turned away unprocessed: still pending
    ACCOUNT_REFUSED = "account_refused"  # the key, membership or balance was refused
    OVER_BUDGET = "over_budget"  # not sent: the budget is used up (recorded as skipped)
    DUPLICATE = "duplicate"  # not sent: another run directory has this request live
    STOPPED = "stopped"  # not sent: the run is stopping; nothing was written
    LIMITED = "limited"  # refused for too many tasks at once, not charged: send it later


@dataclass(frozen=True)
class Submitted:
    """The outcome of a submission: the verdict, the task id if created, what refused it."""

    verdict: SubmitVerdict
    task_id: str | None = None
    account_error: AccountError | None = None
    elsewhere: Elsewhere | None = None  # the other run directory's task (``DUPLICATE``)


class Submitter:
    """Submits the jobs of one run: the budget lock and the per-price order are shared by all.

    With a ``journal``, every intent and task id is also recorded there, a request
    live in another run directory is not sent (unless ``allow_duplicate``), and the
    per-price order holds across processes.
    """

    def __init__(
        self,
        *,
        writer: RunWriter,
        client: SjinnClient,
        options: RunOptions,
        budget: int | None,
        may_create: Callable[[], bool],
        rand: Callable[[], float] = random.random,
        journal: AccountJournal | None = None,
    ) -> None:
        self._writer = writer
        self._client = client
        self._opt = options
        self._budget = budget
        self._may_create = may_create
        self._rand = rand
        self._journal = journal
        self._here = writer.ledger.run_dir.resolve()  # how the journal names this run directory
        self._policy = RetryPolicy(
            attempts=options.create_attempts, base=options.backoff_base, cap=options.backoff_cap
        )
        self._budget_lock = anyio.Lock()
        self._price_locks: dict[int, anyio.Lock] = {}
        self._guards: set[anyio.CancelScope] = set()
        self._abandoned = False
        if client.gate is not None:
            # Polls yield to creates for at most one (the shortest) poll interval.
            client.gate.aging = options.poll_min

    async def submit(self, job: Job, reason: str) -> Submitted:
        """Create ``job``'s task, retrying while the API provably did not process the create."""
        try:
            return await retrying(
                lambda _n: self._attempt(job, reason),
                policy=self._policy,
                retry_on=TransientError,
                rand=self._rand,
            )
        except TransientError:
            return Submitted(SubmitVerdict.GAVE_UP)  # provably never charged: the next run retries

    def abandon(self) -> None:
        """Stop waiting for the answers of creates already sent: nothing can record them."""
        self._abandoned = True
        for guard in self._guards:
            guard.shield = False
            guard.cancel()

    async def _attempt(self, job: Job, reason: str) -> Submitted:
        # Creates of one price go out one at a time: their windows (intent to answer)
        # never overlap, so a charge found later in the credits usage fits at most
        # one in-doubt job of that price. Generation takes minutes; a create takes
        # milliseconds, so this costs little.
        # The lock is taken in ``before_send`` (``_open_window``) and let go when
        # ``window`` closes: after the answer is recorded and after the gap.
        async with AsyncExitStack() as window:
            outcome = await self._create(job, reason, window)
            if outcome.verdict is SubmitVerdict.IN_DOUBT and not self._abandoned:
                # Keep the next window of this price well apart from this one, wider
                # than the provider's clock uncertainty, so the charge is matchable.
                await anyio.sleep(self._opt.doubt_gap)
            return outcome

    def _price_lock(self, credits: int) -> AbstractAsyncContextManager[Any]:
        if self._journal is not None:
            return self._journal.price_lock(credits)  # across processes and run directories
        lock = self._price_locks.get(credits)
        if lock is None:
            lock = self._price_locks[credits] = anyio.Lock()
        return lock

    async def _open_window(self, job: Job, window: AsyncExitStack) -> None:
        """Hold ``job``'s price lock until ``window`` closes; called once the gate let it go.

        A create that waited for the lock takes a new slot of the gate: sent long
        after its first slot, it would crowd the requests paced after that one.
        """
        asked = anyio.current_time()
        await window.enter_async_context(self._price_lock(job.credits))
        gate = self._client.gate
        if gate is not None and anyio.current_time() - asked > _LOCK_WAITED:
            await gate.wait(Priority.CREATE, count=False)

    async def _create(self, job: Job, reason: str, window: AsyncExitStack) -> Submitted:
        """One create, write-ahead logged; raises ``TransientError`` (recorded) to be retried."""
        withheld: list[Submitted] = []
        sent = False
        with anyio.CancelScope() as guard:
            answer = anyio.CancelScope()

            async def before_send() -> bool:
                nonlocal sent
                await self._open_window(job, window)  # before the shield: this wait may be cut
                guard.shield = not self._abandoned  # from here on the outcome must be recorded
                self._guards.add(guard)
                refusal = await self._reserve(job, reason)
                if refusal is not None:
                    withheld.append(refusal)
                    return False
                answer.deadline = anyio.current_time() + self._opt.create_answer_timeout
                sent = True
                return True

            try:
                outcome = await self._outcome(job, before_send, answer)
            finally:
                self._guards.discard(guard)
            if isinstance(outcome, Submitted):
                return outcome
            if outcome is None:
                return withheld[0] if withheld else Submitted(SubmitVerdict.STOPPED)
            await self._writer.record("created", job.key, task_id=outcome)
            await self._journal_record("created", job, task_id=outcome)
            return Submitted(SubmitVerdict.CREATED, task_id=outcome)
        # Only ``abandon`` cancels ``guard``: the ledger can no longer record anything.
        return Submitted(SubmitVerdict.IN_DOUBT if sent else SubmitVerdict.STOPPED)

    async def _outcome(
        self, job: Job, before_send: Callable[[], Awaitable[bool]], answer: anyio.CancelScope
    ) -> Submitted | str | None:
        """The task id (None: ``before_send`` withheld the create), or the recorded failure."""
        try:
            with answer:
                task_id = await self._client.create(job.request_body(), before_send=before_send)
            if answer.cancelled_caught:
                raise InDoubtError(
                    f"create_tool_task: no answer in time ({self._opt.create_answer_timeout:g} s)."
                )
        except ConcurrencyLimitError as exc:
            await self._refused(job, exc, permanent=False)
            return Submitted(SubmitVerdict.LIMITED)
        except TransientError as exc:
            await self._refused(job, exc, permanent=False)
            raise
        except InDoubtError as exc:
            await self._writer.record("in_doubt", job.key, error=str(exc))
            return Submitted(SubmitVerdict.IN_DOUBT)
        except (RefusedError, TaskNotFoundError) as exc:
            await self._refused(job, exc, permanent=isinstance(exc, RefusedError))
            return Submitted(SubmitVerdict.REFUSED)
        except AccountError as exc:
            await self._refused(job, exc, permanent=False)
            return Submitted(SubmitVerdict.ACCOUNT_REFUSED, account_error=exc)
        return task_id

    def _refusal(self, job: Job) -> Submitted | None:
        """Why ``job`` must not be sent now (nothing written), or None."""
        if not self._may_create():
            return Submitted(SubmitVerdict.STOPPED)
        if self._journal is not None and not self._opt.allow_duplicate:
            other = self._journal.elsewhere(self._here, job.fingerprint)
            if other is not None:
                return Submitted(SubmitVerdict.DUPLICATE, elsewhere=other)
        budget = self._budget
        if budget is not None and self._writer.state.credits_committed + job.credits > budget:
            return Submitted(SubmitVerdict.OVER_BUDGET)
        return None

    async def _reserve(self, job: Job, reason: str) -> Submitted | None:
        """Write the intent if ``job`` may be sent now; else why not (and nothing is sent)."""
        async with self._budget_lock:
            refusal = self._refusal(job)
            if refusal is None:
                # The journal first: no create is sent that other run directories cannot see.
                await self._journal_record("intent", job, credits=job.credits)
                refusal = self._refusal(job)  # the run may have been stopped meanwhile
            if refusal is not None:
                if refusal.verdict is SubmitVerdict.OVER_BUDGET and not self._sent_before(job):
                    self._writer.write("skipped", job.key, reason="the budget is used up")
                return refusal
            # No await between the check and the write: the fold counts the intent's
            # credits before any other submitter can look.
            seq = self._writer.write(
                "intent",
                job.key,
                credits=job.credits,
                fingerprint=job.fingerprint,
                mode=job.shot.model_mode,
                duration=job.shot.duration,
                reason=reason,
            )
        await self._writer.flush(seq)
        return None

    def _sent_before(self, job: Job) -> bool:
        return self._writer.state.record(job.key).ever_sent

    async def _journal_record(self, event: str, job: Job, **fields: object) -> None:
        """Append ``event`` of ``job`` to the account journal (fsynced), if there is one."""
        if self._journal is not None:
            await self._journal.record(
                event, run_dir=str(self._here), job=job.key, fingerprint=job.fingerprint, **fields
            )

    async def _refused(self, job: Job, exc: ApiError | AccountError, *, permanent: bool) -> None:
        """The create provably charged nothing: permanent fails the job, else it waits."""
        await self._writer.record(
            "create_failed",
            job.key,
            error=str(exc),
            permanent=permanent,
            error_code=getattr(exc, "error_code", None),
            status_code=getattr(exc, "status_code", None),
        )
