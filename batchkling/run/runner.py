"""The orchestration of one run: submit, poll, download, and write every step to the ledger.

Structure (anyio): one task group; a feeder starts one task per job, in manifest
order, as slots of ``concurrency`` free up (a slot is held from the create until
the task finishes on the server). Each job task:

1. reserves its credits (the check and the reservation happen with no await in
   between, under the budget lock, so parallel submitters cannot overshoot);
2. writes and fsyncs an ``intent``, sends the create, writes the answer. These
   three steps are shielded from cancellation: once an intent is on disk the
   run waits (bounded) for the answer so that its task id is never lost;
3. polls on the ``PollPlanner``'s schedule, then downloads (outside the slot).

Every API request passes the client's ``RequestGate`` (even pacing, shared pause).
"""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone

import anyio
import anyio.lowlevel

from batchkling.api.client import SjinnClient
from batchkling.errors import (
    AccountError,
    BatchklingError,
    InDoubtError,
    InsufficientBalanceError,
    RefusedError,
    TaskNotFoundError,
    TransientError,
)
from batchkling.ledger import Ledger
from batchkling.model import Job, JobState
from batchkling.reconcile.match import in_doubt_windows
from batchkling.reconcile.usage import reconcile_ledger
from batchkling.run.download import Downloader
from batchkling.run.options import (
    DEFAULT_POLL_MAX,
    DEFAULT_POLL_MIN,
    DEFAULT_TASK_TIMEOUT,
    Progress,
    RunOptions,
    RunResult,
)
from batchkling.run.selection import Selection
from batchkling.schedule import PollPlanner, backoff, retry_after_delay

__all__ = [
    "DEFAULT_POLL_MAX",
    "DEFAULT_POLL_MIN",
    "DEFAULT_TASK_TIMEOUT",
    "Progress",
    "RunOptions",
    "RunResult",
    "Runner",
]


class Runner:
    """One run over one ledger. ``run()`` does the work; ``interrupt()`` stops it cleanly."""

    def __init__(
        self,
        *,
        jobs: Sequence[Job],
        selection: Selection,
        ledger: Ledger,
        client: SjinnClient,
        options: RunOptions | None = None,
        progress: Callable[[Progress], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.jobs = list(jobs)
        self.sel = selection
        self.ledger = ledger
        self.client = client
        self.opt = options = options if options is not None else RunOptions()
        self._progress = progress
        self._clock = clock
        self._rand = rand
        self._by_key = {job.key: job for job in self.jobs}
        self._counts: Counter[str] = Counter(
            ledger.state.state_of(job.key).value for job in self.jobs
        )
        self._slots = anyio.Semaphore(options.concurrency)
        self._downloader = Downloader(
            client,
            ledger.run_dir,
            attempts=options.download_attempts,
            parallel=max(2, min(options.concurrency, 16)),
            backoff_base=options.backoff_base,
            backoff_cap=options.backoff_cap,
            rand=rand,
        )
        self._budget_lock = anyio.Lock()
        self._price_locks: dict[int, anyio.Lock] = {}
        self._stopping = False
        self._no_more_creates = False
        self._scope: anyio.CancelScope | None = None
        self._planner = PollPlanner(options.poll_min, options.poll_max)
        self._active = 0  # job, follow and download tasks still going
        self._feeding = True
        self.result = RunResult(counts={}, credits_committed=0)

    # -- ledger writes keep the counts current ------------------------------------

    def _write(self, event: str, job: str, **fields: object) -> int:
        before = self.ledger.state.state_of(job)
        seq = self.ledger.write(event, job, **fields)
        after = self.ledger.state.state_of(job)
        if before is not after and job in self._by_key:
            self._counts[before.value] -= 1
            self._counts[after.value] += 1
        self._emit()
        return seq

    async def _record(self, event: str, job: str, **fields: object) -> None:
        """Write an event that records money and wait until it is on disk."""
        await self.ledger.flush(self._write(event, job, **fields))

    async def _note(self, event: str, job: str, **fields: object) -> None:
        """Write an event that records no money (a finished task, a file, a skip).

        It reaches the disk with the next money event's fsync or at close; losing it
        to a power cut costs one more poll or download on resume, never a create.
        """
        self._write(event, job, **fields)
        await anyio.lowlevel.checkpoint()

    def _emit(self, message: str | None = None) -> None:
        if self._progress is not None:
            self._progress(
                Progress(
                    total=len(self.jobs),
                    counts=dict(self._counts),
                    credits_committed=self.ledger.state.credits_committed,
                    budget=self.sel.budget,
                    message=message,
                )
            )

    # -- control --------------------------------------------------------------------

    def interrupt(self) -> None:
        """Stop starting creates, let sent creates record their answer, cancel the rest."""
        self._stopping = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self) -> RunResult:
        """Do the selected work; return the result (the ledger holds everything)."""
        with anyio.CancelScope() as scope:
            self._scope = scope
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._feed, tg)
                if self.opt.usage_settle is not None and not self.opt.no_wait:
                    tg.start_soon(self._reconcile_loop, tg)
        self.result.interrupted = self._stopping
        self.result.counts = {k: v for k, v in self._counts.items() if v}
        self.result.credits_committed = self.ledger.state.credits_committed
        return self.result

    def _spawn(
        self, tg: anyio.abc.TaskGroup, fn: Callable[..., Awaitable[None]], *args: object
    ) -> None:
        self._active += 1

        async def tracked() -> None:
            try:
                await fn(*args)
            finally:
                self._active -= 1

        tg.start_soon(tracked)

    async def _feed(self, tg: anyio.abc.TaskGroup) -> None:
        try:
            await self._feed_all(tg)
        finally:
            self._feeding = False

    async def _feed_all(self, tg: anyio.abc.TaskGroup) -> None:
        for job in self.sel.skipped:
            await self._note("skipped", job.key, reason="does not fit the budget")
        for job in self.sel.download:
            if not self.opt.no_download:
                self._spawn(tg, self._download, job, self.ledger.state.record(job.key).output_urls)
        for job in self.sel.follow:
            await self._slots.acquire()
            self._spawn(tg, self._follow_in_slot, job, None)
        for job, reason in self.sel.submit:
            if self.opt.no_wait:
                try:
                    self._slots.acquire_nowait()
                except anyio.WouldBlock:
                    break
            else:
                await self._slots.acquire()
            if self._stopping or self._no_more_creates:
                self._slots.release()
                break
            self._spawn(tg, self._job, job, reason)

    async def _reconcile_loop(self, tg: anyio.abc.TaskGroup) -> None:
        """Settle in-doubt creates once their window is older than the settle delay.

        The run waits for in-doubt jobs that can still be settled, even when all
        other work is done: adopting the task or proving the create never happened
        spares the user a guess about money.
        """
        settle = self.opt.usage_settle
        assert settle is not None
        tick = min(1.0, max(0.02, settle / 4))
        final: set[str] = set()  # ambiguous after settling: waiting will not help this run
        while True:
            idle = not self._feeding and self._active == 0
            doubts = [
                d
                for d in in_doubt_windows(self.ledger.state)
                if d.job in self._by_key and d.job not in final
            ]
            if idle and not doubts:
                return
            now = _utc_now()
            ripe = [
                d for d in doubts if d.end is not None and (now - d.end).total_seconds() > settle
            ]
            if ripe:
                outcome = await reconcile_ledger(self.ledger, self.client, settle=settle)
                if outcome.unavailable is not None:
                    self.result.notes.append(
                        f"the credits usage could not be read ({outcome.unavailable}); "
                        "in-doubt jobs are left as they are."
                    )
                    return
                res = outcome.result
                if res is not None:
                    self._refresh_counts()
                    for job, _charge in res.adopted:
                        await self._slots.acquire()
                        self._spawn(tg, self._follow_in_slot, self._by_key[job], None)
                    for job in res.not_created:
                        if self._stopping or self._no_more_creates:
                            break
                        await self._slots.acquire()
                        self._spawn(tg, self._job, self._by_key[job], "not-created")
                    for job, _charges in res.ambiguous:
                        final.add(job)
                    # A ripe window still without a verdict will not get one by waiting.
                    final.update(d.job for d in ripe if d.job in res.waiting)
                    self.result.orphans = res.orphans
            await anyio.sleep(tick)

    def _refresh_counts(self) -> None:
        self._counts = Counter(self.ledger.state.state_of(job.key).value for job in self.jobs)
        self._emit()

    async def _follow_in_slot(self, job: Job, created_at: float | None) -> None:
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                self._slots.release()

        try:
            await self._follow(job, created_at, release)
        finally:
            release()

    async def _job(self, job: Job, reason: str) -> None:
        try:
            task_id = await self._submit(job, reason)
        except BaseException:
            self._slots.release()
            raise
        if task_id is None:
            self._slots.release()
            return
        await self._follow_in_slot(job, self._clock())

    # -- creating ---------------------------------------------------------------------

    async def _submit(self, job: Job, reason: str) -> str | None:
        """Create the task (with retries); its id, or None when no task runs for it now."""
        attempt = 0
        while True:
            outcome = await self._create_once(job, reason)
            if not isinstance(outcome, TransientError):
                return outcome
            attempt += 1
            if attempt >= self.opt.create_attempts:
                return None  # left pending: provably never charged; the next run retries
            if outcome.retry_after is not None:
                delay = retry_after_delay(outcome.retry_after, rand=self._rand())
            else:
                delay = backoff(
                    attempt - 1,
                    base=self.opt.backoff_base,
                    cap=self.opt.backoff_cap,
                    rand=self._rand(),
                )
            await anyio.sleep(delay)

    async def _create_once(self, job: Job, reason: str) -> str | TransientError | None:
        """One create, write-ahead logged. A TransientError means: provably not charged, retry."""
        # Creates of one price go out one at a time: their windows (intent to answer)
        # never overlap, so a charge found later in the credits usage fits at most
        # one in-doubt job of that price. Generation takes minutes; a create takes
        # milliseconds, so this costs little.
        async with self._price_lock(job.credits):
            outcome = await self._create_serialized(job, reason)
            if self.ledger.state.state_of(job.key) is JobState.IN_DOUBT:
                # Keep the next window of this price well apart from this one, wider
                # than the provider's clock uncertainty, so the charge is matchable.
                await anyio.sleep(self.opt.doubt_gap)
            return outcome

    def _price_lock(self, credits: int) -> anyio.Lock:
        lock = self._price_locks.get(credits)
        if lock is None:
            lock = self._price_locks[credits] = anyio.Lock()
        return lock

    async def _create_serialized(self, job: Job, reason: str) -> str | TransientError | None:
        # The rate slot is taken before the intent is written, so that the intent's
        # time and the create's arrival at the server are milliseconds apart: that
        # narrow window is what lets reconciliation match a lost answer to its charge.
        await self.client.pass_gate()
        # Shielded: once an intent is on disk, its outcome must follow if at all possible.
        with anyio.CancelScope(shield=True):
            async with self._budget_lock:
                # No await between the check and the write: the fold counts the
                # intent's credits before any other submitter can look.
                if self._stopping or self._no_more_creates:
                    return None
                budget = self.sel.budget
                if budget is not None and (
                    self.ledger.state.credits_committed + job.credits > budget
                ):
                    seq = self._write("skipped", job.key, reason="the budget is used up")
                    stop = True
                else:
                    seq = self._write(
                        "intent",
                        job.key,
                        credits=job.credits,
                        fingerprint=job.fingerprint,
                        mode=job.shot.model_mode,
                        duration=job.shot.duration,
                        reason=reason,
                    )
                    stop = False
            await self.ledger.flush(seq)
            if stop:
                self.result.notes.append(f"{job.key}: not sent, the budget is used up.")
                return None
            return await self._send_create(job)
        return None  # only reached if the shielded scope itself was cancelled

    async def _refused(self, job: Job, exc: BatchklingError, *, permanent: bool) -> None:
        """The create provably charged nothing: permanent fails the job, else it waits."""
        await self._record(
            "create_failed",
            job.key,
            error=str(exc),
            permanent=permanent,
            error_code=getattr(exc, "error_code", None),
            status_code=getattr(exc, "status_code", None),
        )

    async def _send_create(self, job: Job) -> str | TransientError | None:
        try:
            with anyio.move_on_after(self.opt.shutdown_grace) as guard:
                task_id = await self.client.create(job.request_body(), gated=True)
            if guard.cancelled_caught:
                raise InDoubtError("create_tool_task: no answer in time.")
        except TransientError as exc:
            await self._refused(job, exc, permanent=False)
            return exc
        except InDoubtError as exc:
            await self._record("in_doubt", job.key, error=str(exc))
            return None
        except (RefusedError, TaskNotFoundError) as exc:
            await self._refused(job, exc, permanent=isinstance(exc, RefusedError))
            return None
        except AccountError as exc:
            await self._refused(job, exc, permanent=False)
            self._no_more_creates = True
            if self.result.account_error is None:
                self.result.account_error = exc
            if not isinstance(exc, InsufficientBalanceError):
                # A refused key or membership: nothing else can succeed, stop everything.
                self.interrupt_for_account()
            return None
        await self._record("created", job.key, task_id=task_id)
        return task_id

    def interrupt_for_account(self) -> None:
        """Stop at once after an account refusal; the ledger is complete."""
        self._no_more_creates = True
        if self._scope is not None:
            self._scope.cancel()

    # -- following ---------------------------------------------------------------------

    async def _follow(
        self, job: Job, created_at: float | None, release: Callable[[], None]
    ) -> None:
        rec = self.ledger.state.record(job.key)
        task_id = rec.task_id
        if task_id is None:
            return
        start = self._clock()
        created = created_at if created_at is not None else start
        klass = (job.shot.model_mode, float(math.ceil(job.shot.duration)))
        self._planner.started(klass, job.key, created)
        try:
            await self._poll_until_done(
                job, task_id, klass, start, created, release, fresh=created_at is not None
            )
        finally:
            self._planner.stopped(klass, job.key)

    async def _poll_until_done(
        self,
        job: Job,
        task_id: str,
        klass: tuple[str, float],
        start: float,
        created: float,
        release: Callable[[], None],
        *,
        fresh: bool,
    ) -> None:
        polls = 0
        last_running = created
        logged_unknown = False
        not_found = 0
        while True:
            now = self._clock()
            if self.opt.no_wait and fresh:
                return
            if now - start >= self.opt.task_timeout:
                self.result.timed_out.append(job.key)
                return
            delay = (
                0.0
                if (self.opt.no_wait and polls == 0)
                else self._planner.next_delay(klass, now - created, polls, now=now)
            )
            delay = min(delay, max(0.0, start + self.opt.task_timeout - now))
            await anyio.sleep(delay)
            try:
                status = await self.client.query(task_id)
            except (TransientError, InDoubtError):
                continue
            except TaskNotFoundError:
                not_found += 1
                if not_found == 1:
                    self._emit(f"{job.key}: the server does not know task {task_id} (yet).")
                continue
            polls += 1
            self.result.polls[job.key] = self.result.polls.get(job.key, 0) + 1
            noticed = self._clock()
            if status.succeeded:
                self.result.detection_gaps.append(noticed - last_running)
                self._planner.observe(klass, (last_running + noticed) / 2 - created)
                await self._note(
                    "completed",
                    job.key,
                    task_id=task_id,
                    output_urls=list(status.output_urls),
                    polls=polls,
                )
                release()
                if not self.opt.no_download:
                    await self._download(job, status.output_urls)
                return
            if status.failed:
                await self._note(
                    "failed",
                    job.key,
                    task_id=task_id,
                    error=status.error or "the task failed",
                    status=-1,
                    polls=polls,
                )
                return
            if not status.known and not logged_unknown:
                logged_unknown = True
                self.result.unknown_status[job.key] = (
                    status.status if status.status is not None else -999
                )
                self._emit(f"{job.key}: undocumented status {status.status!r}; still waiting.")
            last_running = noticed
            if self.opt.no_wait:
                return

    # -- downloading -------------------------------------------------------------------

    async def _download(self, job: Job, urls: Sequence[str]) -> None:
        task_id = self.ledger.state.record(job.key).task_id
        if task_id is None:
            return
        got = await self._downloader.fetch(job.key, task_id, urls)
        if got is None:
            self.result.notes.append(f"{job.key}: the download failed; run again to retry it.")
            return
        await self._note(
            "downloaded",
            job.key,
            task_id=task_id,
            path=str(got.path.relative_to(self.ledger.run_dir)),
            bytes=got.bytes,
            sha256=got.sha256,
        )


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)
