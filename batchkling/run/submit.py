"""Creating one task: reserve its credits, write the intent, send the create, record the answer.

The write-ahead rule: the intent is written and fsynced after the request has
passed the rate gate and before it is sent (the client's ``before_send``), so
the intent's time and the create's arrival at the server are milliseconds
apart; that narrow window is what lets reconciliation match a lost answer to
its charge. From the intent on, the create is shielded from cancellation: an
interrupted run waits (at most ``create_answer_timeout``) for the answer, so a
task id is never lost to a clean stop.

A create is retried only when the API provably did not process it
(``TransientError``); every other failure is recorded and ends the submission.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import anyio

from batchkling.api.client import SjinnClient
from batchkling.api.retry import retrying
from batchkling.errors import (
    AccountError,
    ApiError,
    InDoubtError,
    RefusedError,
    TaskNotFoundError,
    TransientError,
)
from batchkling.model import Job
from batchkling.run.options import RunOptions
from batchkling.run.writer import RunWriter
from batchkling.schedule import RetryPolicy

__all__ = ["SubmitVerdict", "Submitted", "Submitter"]


class SubmitVerdict(Enum):
    """What became of one submission."""

    CREATED = "created"  # a task runs: follow it
    REFUSED = "refused"  # refused for good or for now, provably not charged
    IN_DOUBT = "in_doubt"  # the answer was lost: it may have been charged
    GAVE_UP = "gave_up"  # every attempt was turned away unprocessed: still pending
    ACCOUNT_REFUSED = "account_refused"  # the key, membership or balance was refused
    OVER_BUDGET = "over_budget"  # not sent: the budget is used up (recorded as skipped)
    STOPPED = "stopped"  # not sent: the run is stopping; nothing was written


@dataclass(frozen=True)
class Submitted:
    """The outcome of a submission: the verdict, the task id if created, an account refusal."""

    verdict: SubmitVerdict
    task_id: str | None = None
    account_error: AccountError | None = None


class Submitter:
    """Submits the jobs of one run: the budget lock and the per-price order are shared by all."""

    def __init__(
        self,
        *,
        writer: RunWriter,
        client: SjinnClient,
        options: RunOptions,
        budget: int | None,
        may_create: Callable[[], bool],
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._writer = writer
        self._client = client
        self._opt = options
        self._budget = budget
        self._may_create = may_create
        self._rand = rand
        self._policy = RetryPolicy(
            attempts=options.create_attempts, base=options.backoff_base, cap=options.backoff_cap
        )
        self._budget_lock = anyio.Lock()
        self._price_locks: dict[int, anyio.Lock] = {}

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

    async def _attempt(self, job: Job, reason: str) -> Submitted:
        # Creates of one price go out one at a time: their windows (intent to answer)
        # never overlap, so a charge found later in the credits usage fits at most
        # one in-doubt job of that price. Generation takes minutes; a create takes
        # milliseconds, so this costs little.
        async with self._price_lock(job.credits):
            outcome = await self._create(job, reason)
            if outcome.verdict is SubmitVerdict.IN_DOUBT:
                # Keep the next window of this price well apart from this one, wider
                # than the provider's clock uncertainty, so the charge is matchable.
                await anyio.sleep(self._opt.doubt_gap)
            return outcome

    def _price_lock(self, credits: int) -> anyio.Lock:
        lock = self._price_locks.get(credits)
        if lock is None:
            lock = self._price_locks[credits] = anyio.Lock()
        return lock

    async def _create(self, job: Job, reason: str) -> Submitted:
        """One create, write-ahead logged; raises ``TransientError`` (recorded) to be retried."""
        not_sent = SubmitVerdict.STOPPED
        with anyio.CancelScope() as guard:
            answer = anyio.CancelScope()

            async def before_send() -> bool:
                nonlocal not_sent
                guard.shield = True  # from here on the create's outcome must be recorded
                refusal = await self._reserve(job, reason)
                if refusal is not None:
                    not_sent = refusal
                    return False
                answer.deadline = anyio.current_time() + self._opt.create_answer_timeout
                return True

            try:
                with answer:
                    task_id = await self._client.create(job.request_body(), before_send=before_send)
                if answer.cancelled_caught:
                    raise InDoubtError("create_tool_task: no answer in time.")
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
            if task_id is None:
                return Submitted(not_sent)
            await self._writer.record("created", job.key, task_id=task_id)
            return Submitted(SubmitVerdict.CREATED, task_id=task_id)
        # A scope only swallows the cancellation it issued itself; ``guard`` issues none.
        raise AssertionError("unreachable")

    async def _reserve(self, job: Job, reason: str) -> SubmitVerdict | None:
        """Write the intent if the run may still create and the budget has room; else why not."""
        async with self._budget_lock:
            # No await between the check and the write: the fold counts the
            # intent's credits before any other submitter can look.
            if not self._may_create():
                return SubmitVerdict.STOPPED
            budget = self._budget
            if budget is not None and self._writer.state.credits_committed + job.credits > budget:
                seq = self._writer.write("skipped", job.key, reason="the budget is used up")
                verdict: SubmitVerdict | None = SubmitVerdict.OVER_BUDGET
            else:
                seq = self._writer.write(
                    "intent",
                    job.key,
                    credits=job.credits,
                    fingerprint=job.fingerprint,
                    mode=job.shot.model_mode,
                    duration=job.shot.duration,
                    reason=reason,
                )
                verdict = None
        await self._writer.flush(seq)
        return verdict

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
