"""Creating one task: reserve its credits, write the intent, send the create, record the answer.

The write-ahead rule: the intent is written and fsynced after the request has
passed the rate gate and before it is sent (the client's ``before_send``), so
the intent's time and the create's arrival at the server are milliseconds
apart; that narrow window is what lets reconciliation match a lost answer to
its charge. The intent goes to the account journal first, so that other run
directories know of the create.

Price windows: a create holds its price's lock from just before its intent
until its answer is recorded, never while it waits for the gate. The lock is
shared while nothing of that price is in doubt, so creates of one price
overlap; it is exclusive (one create of that price at a time, in every run
directory of the account) while a create of that price is in doubt, or went
in doubt less than the settle delay ago. A charge found later in the credits
usage must fit at most one in-doubt window of its price: only creates that
were already on the wire together when answers were lost can share one. So
the overlap is earned, as TCP's window is: the first create goes alone, and
``overlap_width`` lets more share a window only as answers keep arriving.
docs/money-safety.md gives the worst case.

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

import math
import random
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from enum import Enum

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
from batchkling.journal import AccountJournal, Elsewhere, PriceLock
from batchkling.model import Job, JobState
from batchkling.reconcile.match import DEFAULT_SETTLE
from batchkling.run.options import RunOptions
from batchkling.run.writer import RunWriter
from batchkling.schedule import RetryPolicy

__all__ = ["OVERLAP_RISK", "SubmitVerdict", "Submitted", "Submitter", "overlap_width"]

# The creates of one price that may share a window are bounded so that a lost
# answer is expected to catch at most this many others on the wire with it.
OVERLAP_RISK = 0.5


def overlap_width(answered: int, lost: int, *, risk: float = OVERLAP_RISK) -> int:
    """How many creates of one price may be on the wire together, from this run's answers.

    With ``lost`` answers lost of ``answered + lost`` creates, the chance that an
    answer is lost is taken as ``(lost + 1) / answered`` (pessimistic while little
    is known), and the others on the wire with a lost create are held to ``risk``
    expected: ``1 + risk * answered / (lost + 1)``. The first create goes alone;
    where answers are lost often, creates go one at a time.
    """
    return 1 + math.floor(risk * max(answered, 0) / (max(lost, 0) + 1))


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


_ANSWERED = frozenset(
    {
        SubmitVerdict.CREATED,
        SubmitVerdict.REFUSED,
        SubmitVerdict.ACCOUNT_REFUSED,
        SubmitVerdict.LIMITED,
    }
)


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
        self._price_locks: dict[int, PriceLock] = {}
        self._guards: set[anyio.CancelScope] = set()
        self._abandoned = False
        # Per price: jobs whose create went in doubt (one-at-a-time while any still
        # is), and until when (``anyio.current_time``) it stays one-at-a-time anyway.
        self._doubts: dict[int, set[str]] = {}
        self._serial_until: dict[int, float] = {}
        self._answered = 0  # creates of this run that got an answer
        self._lost = 0  # creates of this run whose answer was lost
        self._settle = options.usage_settle if options.usage_settle is not None else DEFAULT_SETTLE
        for key, rec in writer.state.jobs.items():
            last = rec.last_attempt
            if rec.state is JobState.IN_DOUBT and last is not None:
                self._doubts.setdefault(last.credits, set()).add(key)
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
        # The price's lock is taken in ``before_send`` and let go when this exits:
        # after the answer is recorded, and after the pause that follows a create
        # in doubt, which keeps the next window of this price apart from this one,
        # wider than the provider's clock uncertainty, so the charge is matchable.
        async with AsyncExitStack() as window:
            outcome = await self._create(job, reason, window)
            if outcome.verdict in _ANSWERED:
                self._answered += 1
            if outcome.verdict is SubmitVerdict.IN_DOUBT and not self._abandoned:
                self._lost += 1
                self._doubted(job)
                await self._journal_record("in_doubt", job, credits=job.credits)
                await anyio.sleep(self._opt.doubt_gap)
            return outcome

    def _doubted(self, job: Job) -> None:
        """``job``'s create went in doubt: its price is one-at-a-time until it is settled."""
        self._doubts.setdefault(job.credits, set()).add(job.key)
        until = anyio.current_time() + self._settle
        self._serial_until[job.credits] = max(until, self._serial_until.get(job.credits, 0.0))

    def serial(self, credits: int) -> bool:
        """Whether creates of this price go one at a time now (see the module's docstring)."""
        if self._opt.serial_creates:
            return True
        if self._serial_until.get(credits, -math.inf) > anyio.current_time():
            return True
        keys = self._doubts.get(credits)
        if keys:
            state = self._writer.state
            keys -= {k for k in keys if state.state_of(k) is not JobState.IN_DOUBT}  # settled
            if keys:
                return True
        return self._journal is not None and self._journal.doubtful(
            credits, within=self._settle + self._opt.doubt_gap
        )

    def _width(self) -> int:
        return overlap_width(self._answered, self._lost)

    def _price_lock(self, credits: int) -> PriceLock:
        if self._journal is not None:
            return self._journal.price_lock(credits)  # across processes and run directories
        lock = self._price_locks.get(credits)
        if lock is None:
            lock = self._price_locks[credits] = PriceLock()
        return lock

    async def _open_window(self, job: Job, window: AsyncExitStack) -> None:
        """Hold ``job``'s price lock until ``window`` closes: shared, or exclusive when serial.

        Called once the create has its slot of the gate. When the lock is not free
        at once, the create waits for it, then for a new slot: a request sent long
        after its slot would crowd the requests paced after it.
        """
        lock = self._price_lock(job.credits)
        exclusive = self._alone(job.credits)
        if lock.try_hold(exclusive=exclusive, width=self._width()):
            window.callback(lock.release, exclusive=exclusive)
            return
        await window.enter_async_context(
            lock.hold(exclusive=lambda: self._alone(job.credits), width=self._width)
        )
        if self._client.gate is not None:
            await self._client.gate.wait(Priority.CREATE, count=False)

    def _alone(self, credits: int) -> bool:
        # While no overlap is earned, a create goes alone in every run directory too.
        return self.serial(credits) or self._width() <= 1

    async def _create(self, job: Job, reason: str, window: AsyncExitStack) -> Submitted:
        """One create, write-ahead logged; raises ``TransientError`` (recorded) to be retried."""
        withheld: list[Submitted] = []
        sent = False
        with anyio.CancelScope() as guard:
            answer = anyio.CancelScope()

            async def before_send() -> bool:
                nonlocal sent
                await self._open_window(job, window)  # before the shield: a wait may be cut
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
