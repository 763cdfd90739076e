"""The work of one run in one task group: jobs start in manifest order as slots free up.

A slot is held from a job's create until its task finishes on the server
(``concurrency`` of them, see ``slots``), so the server never runs more of this
run's tasks at once: a create in doubt may be generating, so it keeps its slot
until it is settled. Each job in a slot is submitted (``submit``), then followed
(``follow``); its video is downloaded (``download``) after the slot is given
back. In-doubt creates are settled during the run (``settle``) when a settle
delay is set. A create refused for too many tasks at once gives its slot back,
lowers the slots' limit (see ``slots``) and waits for a slot again.

Stopping: ``stop()`` is the one way to stop. An interruption or a refused key
cancels the work at once, except for creates already sent, which are shielded
until their answer is recorded; a balance that ran out only stops new creates,
and the tasks already running are followed to the end. A run directory (or
account journal) that cannot be written stops everything at once: nothing more
is created, the running tasks are left for the next run, and ``run()`` raises
the ``RunDirWriteError``.

Chained jobs (``chain``) hold no slot while they wait: each waits for its
source's chosen take to be done (downloaded, verified), then its frame is
extracted and uploaded, and only then does it queue for a slot like any job. A
source that fails or is skipped skips its chain, with the reason; one that is
not done when the run ends leaves its chain pending for the next run.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Iterator, Sequence
from enum import Enum
from pathlib import Path

import anyio
import anyio.abc

from batchkling.api.client import SjinnClient
from batchkling.errors import (
    AccountError,
    InsufficientBalanceError,
    RunDirWriteError,
    StorageError,
)
from batchkling.journal import AccountJournal
from batchkling.ledger import Ledger
from batchkling.model import Job
from batchkling.review.inbox import absorb_live
from batchkling.run.chain import Chainer, chain_reason
from batchkling.run.download import Downloader, DownloadFailure
from batchkling.run.follow import Follower, FollowVerdict
from batchkling.run.live import LiveView, heartbeat, kind_of
from batchkling.run.options import (
    DEFAULT_POLL_MAX,
    DEFAULT_POLL_MIN,
    DEFAULT_TASK_TIMEOUT,
    Progress,
    RunOptions,
    RunResult,
)
from batchkling.run.selection import Selection
from batchkling.run.settle import Settled, Settler
from batchkling.run.slots import Settlement, Slots
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

# Seconds between moves of the review inbox into the ledger during a run.
MARKS_EVERY = 1.0


class StopReason(Enum):
    """Why a run stops early, strongest last: a stronger reason replaces a weaker one."""

    BALANCE = 1  # the balance ran out: no new creates; running tasks are followed
    ACCOUNT = 2  # the key or membership was refused: nothing else can succeed
    INTERRUPTED = 3  # asked to stop: creates already sent record their answer
    BROKEN = 4  # the run directory or the account journal could not be written


class Runner:
    """One run over one ledger. ``run()`` does the work; ``stop()`` stops it cleanly.

    ``journal``: the account journal (see ``batchkling.journal``), shared by the
    submitter (intents, task ids, duplicates, the price lock) and the settler.
    ``chainer`` (set before ``run()``) resolves the frames of chained jobs.
    """

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
        journal: AccountJournal | None = None,
        lag_seen: float = 0.0,
    ) -> None:
        self.jobs = list(jobs)
        self.sel = selection
        self.opt = options = options if options is not None else RunOptions()
        self._clock = clock
        self._rand = rand
        self._journal = journal
        self._by_key = {job.key: job for job in self.jobs}
        self._writer = RunWriter(
            ledger, self.jobs, budget=selection.budget, progress=progress, clock=clock
        )
        self._submitter = Submitter(
            writer=self._writer,
            client=client,
            options=options,
            budget=selection.budget,
            may_create=lambda: self._stop is None,
            rand=rand,
            journal=journal,
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
        self._settler = self._make_settler(ledger, client, lag_seen)
        self._slots = Slots(options.concurrency)
        self._writer.limit = lambda: self._slots.limit
        if self._settler is None:
            self._slots.settling_over()
        self._stop: StopReason | None = None
        self._scope: anyio.CancelScope | None = None
        self._active = 0  # job and download tasks still going
        self._feeding = True
        self._settling = self._settler is not None
        self._over: anyio.Event | None = None  # set once the work is over (see ``_check_over``)
        self._writer.live = self._live_view(client).view
        self.write_error: RunDirWriteError | None = None
        self.result = RunResult(counts={}, credits_committed=0)
        self._chain_init(selection)

    def _chain_init(self, sel: Selection) -> None:
        self.chainer: Chainer | None = None  # set by the caller when the manifest has chains
        # Set once a job of this run's work is over (or will not start): what chains wait on.
        worked = [j for j, _ in sel.submit] + [*sel.follow, *sel.download]
        self._finished = {job.key: anyio.Event() for job in worked}
        self._started: set[str] = set()

    def _live_view(self, client: SjinnClient) -> LiveView:
        # For the live display: the jobs still to start, and those in a slot with no task.
        self._queued = {job.key: kind_of(job) for job, _reason in self.sel.submit}
        self._creating: dict[str, tuple[str, float]] = {}
        return LiveView(
            writer=self._writer,
            follower=self._follower,
            downloader=self._downloader,
            settler=self._settler,
            gate=client.gate,
            slots=lambda: self._slots.limit,
            queued=self._queued,
            creating=self._creating,
            clock=self._clock,
        )

    def _make_settler(self, ledger: Ledger, client: SjinnClient, lag: float) -> Settler | None:
        settle = self.opt.usage_settle
        if settle is None or self.opt.no_wait:
            return None
        jobs = self._by_key.keys()
        return Settler(
            ledger, client, settle=settle, jobs=jobs, journal=self._journal, lag_seen=lag
        )

    def stop(self, reason: StopReason = StopReason.INTERRUPTED) -> None:
        """Send no more creates; unless the balance ran out, cancel the rest of the work."""
        if self._stop is None or reason.value > self._stop.value:
            self._stop = reason
        if reason is not StopReason.BALANCE and self._scope is not None:
            self._scope.cancel()

    async def run(self) -> RunResult:
        """Do the selected work; return the result (the ledger holds everything).

        Raises ``RunDirWriteError`` when the run directory or the journal could not
        be written: the run stopped at once, and the ledger holds only whole lines.
        """
        self._over = anyio.Event()
        with anyio.CancelScope() as scope:
            self._scope = scope
            if self._stop is not None and self._stop is not StopReason.BALANCE:
                scope.cancel()  # stopped before it began
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._feed, tg)
                if self._settler is not None:
                    tg.start_soon(self._settle_loop, tg, self._settler)
                tg.start_soon(heartbeat, self._writer.emit, self._over)
                tg.start_soon(self._absorb_marks)
        if self.write_error is not None:
            raise self.write_error
        stats = self._follower.stats
        result = self.result
        result.interrupted = self._stop is StopReason.INTERRUPTED
        result.counts = self._writer.counts
        result.credits_committed = self._writer.state.credits_committed
        result.polls = stats.polls
        result.detection_gaps = stats.detection_gaps
        result.unknown_status = stats.unknown_status
        result.finishing = stats.finishing
        result.fail_reasons = stats.fail_reasons
        result.stalled = stats.stalled
        result.allowed_at_once = self._slots.allowed
        result.limit_refusals = self._slots.refusals
        return result

    @contextlib.contextmanager
    def _stops_on_write_error(self) -> Iterator[None]:
        """Turn a write that failed into a stop of the whole run (and ``run()`` raising it)."""
        try:
            yield
        except RunDirWriteError as exc:
            if self.write_error is None:
                self.write_error = exc
            if self._writer.ledger.broken is not None:
                self._submitter.abandon()  # no answer can be recorded any more
            self.stop(StopReason.BROKEN)

    async def _absorb_marks(self) -> None:
        """Move picks, rejects and notes made during the run into the ledger, every second."""
        with self._stops_on_write_error():
            while self._over is not None and not self._over.is_set():
                with anyio.move_on_after(MARKS_EVERY):
                    await self._over.wait()
                await absorb_live(self._writer.ledger)

    # -- starting work -----------------------------------------------------------------

    async def _feed(self, tg: anyio.abc.TaskGroup) -> None:
        try:
            with self._stops_on_write_error():
                await self._feed_all(tg)
        finally:
            self._feeding = False
            for key, event in self._finished.items():
                if key not in self._started:
                    event.set()  # it will not start in this run: nobody waits for it
            self._queued.clear()  # nothing more starts from the feed
            self._slots.release_stuck()  # nobody waits for a slot from the feed any more
            self._check_over()

    def _check_over(self) -> None:
        """Tell the heartbeat to stop once nothing is fed, settled, followed or downloaded."""
        if self._over is not None and not (self._feeding or self._active or self._settling):
            self._over.set()

    async def _feed_all(self, tg: anyio.abc.TaskGroup) -> None:
        for job in self.sel.skipped:
            await self._writer.note("skipped", job.key, reason="does not fit the budget")
        for job, why in self.sel.chain_skipped:
            await self._writer.note("skipped", job.key, reason=why)
        if not self.opt.no_download:
            for job in self.sel.download:
                urls = self._writer.state.record(job.key).output_urls
                self._active += 1  # counted from now, so the work is never seen as done early
                self._started.add(job.key)
                tg.start_soon(self._counted_download, job, tuple(urls))
        for job in self.sel.follow:
            self._active += 1
            self._started.add(job.key)
            await tg.start(self._job, job, None)
        for job, reason in self.sel.submit:
            if self.opt.no_wait and self._slots.free == 0:
                break  # submit only what can start now; a later run does the rest
            if self._stop is not None:
                break
            if self._slots.full:
                self.result.held_back.append(job.key)
                self._queued.pop(job.key, None)
                continue
            self._active += 1
            self._started.add(job.key)
            if job.shot.waits_for and self.chainer is not None:
                tg.start_soon(self._chained, job, reason)  # holds no slot while it waits
                continue
            await tg.start(self._job, job, reason)

    async def _settle_loop(self, tg: anyio.abc.TaskGroup, settler: Settler) -> None:
        try:
            with self._stops_on_write_error():
                while self._feeding or self._active or settler.waiting():
                    settled = await settler.settle_ripe()
                    if settled is not None and settled.unavailable is not None:
                        self.result.notes.append(
                            f"the credits usage could not be read ({settled.unavailable}); "
                            "in-doubt jobs are left as they are."
                        )
                        return
                    if settled is not None:
                        self._settled(tg, settled)
                    await anyio.sleep(settler.tick)
        finally:
            self._slots.settling_over()
            self._settling = False
            self._check_over()

    def _settled(self, tg: anyio.abc.TaskGroup, settled: Settled) -> None:
        """Hand each verdict to the job holding the slot, or start the job anew."""
        self._writer.refresh()
        reasons = self.result.doubt_reasons
        reasons.update(settled.reasons)
        for key in settled.adopted:
            reasons.pop(key, None)
            if not self._slots.settle(key, Settlement.ADOPTED):
                self._spawn(tg, self._by_key[key], None)
        for key in settled.not_created:
            reasons.pop(key, None)
            if not self._slots.settle(key, Settlement.NOT_CREATED) and self._stop is None:
                self._spawn(tg, self._by_key[key], "not-created")
        for key in settled.final:
            self._slots.settle(key, Settlement.FINAL)
        self.result.orphans = settled.orphans

    def _spawn(self, tg: anyio.abc.TaskGroup, job: Job, reason: str | None) -> None:
        self._active += 1
        tg.start_soon(self._job, job, reason)

    # -- one job -----------------------------------------------------------------------

    async def _job(
        self,
        job: Job,
        reason: str | None,
        *,
        task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
    ) -> None:
        """Create (unless ``reason`` is None: created earlier) and follow ``job`` in a slot.

        The caller counted the job in ``_active`` before starting it.
        """
        try:
            with self._stops_on_write_error():
                acquired = await self._slots.acquire()
                self._queued.pop(job.key, None)
                if not acquired:
                    task_status.started()
                    if reason is not None:
                        self.result.held_back.append(job.key)
                    return
                try:
                    task_status.started()
                    urls = await self._create_and_follow(job, reason)
                finally:
                    self._slots.release()
                if urls is not None and not self.opt.no_download:
                    await self._download(job, urls)
        finally:
            self._active -= 1
            self._over_for(job.key)
            self._check_over()

    def _over_for(self, key: str) -> None:
        event = self._finished.get(key)
        if event is not None:
            event.set()

    # -- chained jobs ------------------------------------------------------------------

    async def _chained(self, job: Job, reason: str) -> None:
        """Wait for the sources of a chained job, resolve its frames, then run it as any job.

        The caller counted the job in ``_active``; ``_job`` takes that over once it runs.
        """
        handed = False
        try:
            with self._stops_on_write_error():
                videos = await self._sources_of(job)
                if videos is None or self._stop is not None or self.chainer is None:
                    return
                try:
                    resolved = await self.chainer.resolve(job, videos)
                except StorageError as exc:
                    self.result.notes.append(f"{job.key}: {exc} It stays pending; run again.")
                    return
                handed = True
            if handed:
                await self._job(resolved, reason)
        finally:
            if not handed:
                self._queued.pop(job.key, None)
                self._active -= 1
                self._over_for(job.key)
                self._check_over()

    async def _sources_of(self, job: Job) -> dict[str, Path] | None:
        """Field -> the source video of each chained frame; None when the job cannot go now."""
        videos: dict[str, Path] = {}
        run_dir = self._writer.ledger.run_dir
        assert self.chainer is not None
        for field, source in job.shot.waits_for:
            found = await self.chainer.source(source, lambda: self._writer.state, self._finished)
            output = self._writer.state.record(found.key).output if found.key else None
            if found.status == "ready" and output is not None:
                videos[field] = run_dir / output
                continue
            if found.status == "lost":
                if not self._writer.state.record(job.key).ever_sent:
                    await self._writer.note(
                        "skipped", job.key, reason=chain_reason(field, found.why)
                    )
            elif self._stop is None:
                self.result.notes.append(
                    f"{job.key}: waits for {source}, which is not done in this run; "
                    "it stays pending, run again once it is."
                )
            return None
        return videos

    async def _create_and_follow(self, job: Job, reason: str | None) -> tuple[str, ...] | None:
        """The finished task's output URLs; None when there is nothing to download."""
        created_at = None
        if reason is not None:
            self._creating[job.key] = kind_of(job)
            try:
                has_task, created_at = await self._create(job, reason)
            finally:
                self._creating.pop(job.key, None)
            if not has_task:
                return None
        mark = self._slots.running()
        clean = False
        try:
            followed = await self._follower.follow(job, created_at=created_at)
            clean = followed.verdict in (FollowVerdict.COMPLETED, FollowVerdict.FAILED)
        finally:
            self._slots.finished(mark, clean=clean)
        if followed.account_error is not None:
            self._account_refused(followed.account_error)
        if followed.verdict is FollowVerdict.FAILED:
            await self._journal_failed(job)
        if followed.verdict is FollowVerdict.TIMED_OUT:
            self.result.timed_out.append(job.key)
        if followed.verdict is FollowVerdict.COMPLETED:
            return followed.output_urls
        return None

    async def _create(self, job: Job, reason: str) -> tuple[bool, float | None]:
        """Create ``job`` in its slot: whether it has a task now, and when this run created it.

        A create in doubt keeps the slot until it is settled: adopted, its task is
        followed here; proved never created, it is sent again here.
        """
        while True:
            if self._stop is not None:
                return False, None  # stopped while this job waited for its slot
            self._slots.expect(job.key)
            try:
                submitted = await self._submitter.submit(job, reason)
                self._submitted(job, submitted)
                if submitted.verdict is SubmitVerdict.CREATED:
                    return True, self._clock()
                if submitted.verdict is SubmitVerdict.LIMITED:
                    if not await self._limited():
                        return False, None
                    continue
                if submitted.verdict is not SubmitVerdict.IN_DOUBT:
                    return False, None
                verdict = await self._slots.hold_in_doubt(job.key)
            finally:
                self._slots.forget(job.key)
            if verdict is not Settlement.NOT_CREATED:
                return verdict is Settlement.ADOPTED, None
            reason = "not-created"

    async def _limited(self) -> bool:
        """A create was refused for too many tasks at once: wait for a slot within the limit.

        False when no slot will come free in this run (the job stays pending).
        """
        self._slots.refused()
        self._writer.emit(
            f"the account refused a create for too many tasks at once; "
            f"now {self._slots.limit} at once."
        )
        await anyio.sleep(self.opt.backoff_base * (0.5 + self._rand()) / 4)  # a short pause
        return await self._slots.requeue()

    def _account_refused(self, exc: AccountError) -> None:
        if self.result.account_error is None:
            self.result.account_error = exc
        balance = isinstance(exc, InsufficientBalanceError)
        self.stop(StopReason.BALANCE if balance else StopReason.ACCOUNT)

    def _submitted(self, job: Job, submitted: Submitted) -> None:
        if submitted.verdict is SubmitVerdict.OVER_BUDGET:
            self.result.notes.append(f"{job.key}: not sent, the budget is used up.")
        if submitted.elsewhere is not None:
            self.result.duplicates[job.key] = submitted.elsewhere
        if submitted.account_error is not None:
            self._account_refused(submitted.account_error)

    async def _journal_failed(self, job: Job) -> None:
        """A failed task no longer makes its request live: say so in the account journal."""
        rec = self._writer.state.record(job.key)
        if self._journal is None or rec.task_id is None:
            return
        await self._journal.record(
            "failed",
            run_dir=str(self._writer.ledger.run_dir.resolve()),
            job=job.key,
            fingerprint=rec.fingerprint or "",
            task_id=rec.task_id,
        )

    # -- downloading -------------------------------------------------------------------

    async def _counted_download(self, job: Job, urls: tuple[str, ...]) -> None:
        try:
            with self._stops_on_write_error():
                await self._download(job, urls)
        finally:
            self._active -= 1
            self._over_for(job.key)
            self._check_over()

    async def _download(self, job: Job, urls: Sequence[str]) -> None:
        task_id = self._writer.state.record(job.key).task_id
        if task_id is None:
            return
        got = await self._downloader.get(job.key, task_id, urls, duration=job.shot.duration)
        if isinstance(got, DownloadFailure):
            self.result.notes.append(
                f"{job.key}: the download failed ({got.reason}); run again to retry it."
            )
            return
        if got.warning is not None:
            self.result.notes.append(got.warning)
        await self._writer.note(
            "downloaded",
            job.key,
            task_id=task_id,
            path=str(got.path.relative_to(self._writer.ledger.run_dir)),
            **got.ledger_fields(),
        )
