"""The work of one run in one task group: jobs start in manifest order as slots free up.

A slot is held from a job's create until its task finishes on the server
(``concurrency`` of them), so the server never runs more of this run's tasks at
once. Each job in a slot is submitted (``submit``), then followed (``follow``);
its video is downloaded (``download``) after the slot is given back. In-doubt
creates are settled during the run (``settle``) when a settle delay is set.

Stopping: ``stop()`` is the one way to stop. An interruption or a refused key
cancels the work at once, except for creates already sent, which are shielded
until their answer is recorded; a balance that ran out only stops new creates,
and the tasks already running are followed to the end.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from enum import Enum

import anyio
import anyio.abc

from batchkling.api.client import SjinnClient
from batchkling.errors import InsufficientBalanceError
from batchkling.ledger import Ledger
from batchkling.model import Job
from batchkling.run.download import Downloader
from batchkling.run.follow import Follower, FollowVerdict
from batchkling.run.options import (
    DEFAULT_POLL_MAX,
    DEFAULT_POLL_MIN,
    DEFAULT_TASK_TIMEOUT,
    Progress,
    RunOptions,
    RunResult,
)
from batchkling.run.selection import Selection
from batchkling.run.settle import Settler
from batchkling.run.submit import Submitted, Submitter, SubmitVerdict
from batchkling.run.writer import RunWriter

__all__ = [
    "DEFAULT_POLL_MAX",
    "DEFAULT_POLL_MIN",
    "DEFAULT_TASK_TIMEOUT",
    "Progress",
    "RunOptions",
    "RunResult",
    "Runner",
    "StopReason",
]


class StopReason(Enum):
    """Why a run stops early, strongest last: a stronger reason replaces a weaker one."""

    BALANCE = 1  # the balance ran out: no new creates; running tasks are followed
    ACCOUNT = 2  # the key or membership was refused: nothing else can succeed
    INTERRUPTED = 3  # asked to stop: creates already sent record their answer


class Runner:
    """One run over one ledger. ``run()`` does the work; ``stop()`` stops it cleanly."""

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
        self.opt = options = options if options is not None else RunOptions()
        self._clock = clock
        self._by_key = {job.key: job for job in self.jobs}
        self._writer = RunWriter(ledger, self.jobs, budget=selection.budget, progress=progress)
        self._submitter = Submitter(
            writer=self._writer,
            client=client,
            options=options,
            budget=selection.budget,
            may_create=lambda: self._stop is None,
            rand=rand,
        )
        self._follower = Follower(writer=self._writer, client=client, options=options, clock=clock)
        self._downloader = Downloader(
            client,
            ledger.run_dir,
            attempts=options.download_attempts,
            parallel=max(2, min(options.concurrency, 16)),
            backoff_base=options.backoff_base,
            backoff_cap=options.backoff_cap,
            rand=rand,
        )
        self._settler = (
            Settler(ledger, client, settle=options.usage_settle, jobs=self._by_key.keys())
            if options.usage_settle is not None and not options.no_wait
            else None
        )
        self._slots = anyio.Semaphore(options.concurrency)
        self._stop: StopReason | None = None
        self._scope: anyio.CancelScope | None = None
        self._active = 0  # job and download tasks still going
        self._feeding = True
        self.result = RunResult(counts={}, credits_committed=0)

    def stop(self, reason: StopReason = StopReason.INTERRUPTED) -> None:
        """Send no more creates; unless the balance ran out, cancel the rest of the work."""
        if self._stop is None or reason.value > self._stop.value:
            self._stop = reason
        if reason is not StopReason.BALANCE and self._scope is not None:
            self._scope.cancel()

    async def run(self) -> RunResult:
        """Do the selected work; return the result (the ledger holds everything)."""
        with anyio.CancelScope() as scope:
            self._scope = scope
            if self._stop is not None and self._stop is not StopReason.BALANCE:
                scope.cancel()  # stopped before it began
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._feed, tg)
                if self._settler is not None:
                    tg.start_soon(self._settle_loop, tg, self._settler)
        stats = self._follower.stats
        result = self.result
        result.interrupted = self._stop is StopReason.INTERRUPTED
        result.counts = self._writer.counts
        result.credits_committed = self._writer.state.credits_committed
        result.polls = stats.polls
        result.detection_gaps = stats.detection_gaps
        result.unknown_status = stats.unknown_status
        return result

    # -- starting work -----------------------------------------------------------------

    async def _feed(self, tg: anyio.abc.TaskGroup) -> None:
        try:
            await self._feed_all(tg)
        finally:
            self._feeding = False

    async def _feed_all(self, tg: anyio.abc.TaskGroup) -> None:
        for job in self.sel.skipped:
            await self._writer.note("skipped", job.key, reason="does not fit the budget")
        if not self.opt.no_download:
            for job in self.sel.download:
                urls = self._writer.state.record(job.key).output_urls
                self._active += 1  # counted from now, so the work is never seen as done early
                tg.start_soon(self._counted_download, job, tuple(urls))
        for job in self.sel.follow:
            await tg.start(self._job, job, None)
        for job, reason in self.sel.submit:
            if self.opt.no_wait and self._slots.value == 0:
                break  # submit only what can start now; a later run does the rest
            if self._stop is not None:
                break
            await tg.start(self._job, job, reason)

    async def _settle_loop(self, tg: anyio.abc.TaskGroup, settler: Settler) -> None:
        while self._feeding or self._active or settler.waiting():
            settled = await settler.settle_ripe()
            if settled is not None:
                if settled.unavailable is not None:
                    self.result.notes.append(
                        f"the credits usage could not be read ({settled.unavailable}); "
                        "in-doubt jobs are left as they are."
                    )
                    return
                self._writer.refresh()
                for key in settled.adopted:
                    await tg.start(self._job, self._by_key[key], None)
                for key in settled.not_created:
                    if self._stop is not None:
                        break
                    await tg.start(self._job, self._by_key[key], "not-created")
                self.result.orphans = settled.orphans
            await anyio.sleep(settler.tick)

    # -- one job -----------------------------------------------------------------------

    async def _job(
        self,
        job: Job,
        reason: str | None,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Create (unless ``reason`` is None: created earlier) and follow ``job`` in a slot."""
        self._active += 1
        try:
            async with self._slots:
                task_status.started()
                urls = await self._create_and_follow(job, reason)
            if urls is not None and not self.opt.no_download:
                await self._download(job, urls)
        finally:
            self._active -= 1

    async def _create_and_follow(self, job: Job, reason: str | None) -> tuple[str, ...] | None:
        """The finished task's output URLs; None when there is nothing to download."""
        created_at = None
        if reason is not None:
            if self._stop is not None:
                return None  # stopped while this job waited for its slot
            submitted = await self._submitter.submit(job, reason)
            self._submitted(job, submitted)
            if submitted.verdict is not SubmitVerdict.CREATED:
                return None
            created_at = self._clock()
        followed = await self._follower.follow(job, created_at=created_at)
        if followed.verdict is FollowVerdict.TIMED_OUT:
            self.result.timed_out.append(job.key)
        if followed.verdict is FollowVerdict.COMPLETED:
            return followed.output_urls
        return None

    def _submitted(self, job: Job, submitted: Submitted) -> None:
        if submitted.verdict is SubmitVerdict.OVER_BUDGET:
            self.result.notes.append(f"{job.key}: not sent, the budget is used up.")
        exc = submitted.account_error
        if exc is not None:
            if self.result.account_error is None:
                self.result.account_error = exc
            balance = isinstance(exc, InsufficientBalanceError)
            self.stop(StopReason.BALANCE if balance else StopReason.ACCOUNT)

    # -- downloading -------------------------------------------------------------------

    async def _counted_download(self, job: Job, urls: tuple[str, ...]) -> None:
        try:
            await self._download(job, urls)
        finally:
            self._active -= 1

    async def _download(self, job: Job, urls: Sequence[str]) -> None:
        task_id = self._writer.state.record(job.key).task_id
        if task_id is None:
            return
        got = await self._downloader.fetch(job.key, task_id, urls)
        if got is None:
            self.result.notes.append(f"{job.key}: the download failed; run again to retry it.")
            return
        await self._writer.note(
            "downloaded",
            job.key,
            task_id=task_id,
            path=str(got.path.relative_to(self._writer.ledger.run_dir)),
            bytes=got.bytes,
            sha256=got.sha256,
        )
