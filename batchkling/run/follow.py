"""Following one created task: poll it on the ``PollPlanner``'s schedule until it finishes.

A poll that fails is simply tried again at the next planned time: a query costs
nothing and changes nothing. A status the API reference does not document is
reported once and treated as still running, never as success.

A task that answers "completed" with no video URL yet is still finishing: it is
polled again, and fails only after ``finishing_polls`` such answers. One whose
video URL cannot be used fails with that reason. A task that answers "not found"
for ``gone_after`` seconds in a row is gone from the account (deleted, or lost)
and fails. A task whose status has not changed for longer than three times the
slowest finish seen for its mode and duration (or ``stall_after`` before any) is
named once as stalled; nothing else changes. A refused key or membership ends
the following at once (``ACCOUNT_REFUSED``): nothing else can succeed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import anyio

from batchkling._time import parse_rfc3339, utc_now
from batchkling.api.answers import TaskStatus
from batchkling.api.client import SjinnClient
from batchkling.errors import AccountError, InDoubtError, TaskNotFoundError, TransientError
from batchkling.model import Job
from batchkling.run.options import STALL_FACTOR, RunOptions
from batchkling.run.writer import RunWriter
from batchkling.schedule import PollPlanner

__all__ = ["GONE_REASON", "FollowVerdict", "Followed", "Follower", "PollStats"]

GONE_REASON = "the task is gone from the account (deleted?)"


class FollowVerdict(Enum):
    """How following a task ended."""

    COMPLETED = "completed"  # finished with a video: download ``output_urls``
    FAILED = "failed"  # the task failed on the server
    TIMED_OUT = "timed_out"  # still running after the task timeout
    LEFT_RUNNING = "left_running"  # not waited for (``no_wait``): a later run collects it
    NO_TASK = "no_task"  # the ledger knows no task id for the job
    ACCOUNT_REFUSED = "account_refused"  # a query was refused the key or membership


@dataclass(frozen=True)
class Followed:
    """The outcome of following one task."""

    verdict: FollowVerdict
    output_urls: tuple[str, ...] = ()
    account_error: AccountError | None = None  # ``ACCOUNT_REFUSED``: what refused it


@dataclass
class PollStats:
    """What the polls of a run saw, kept as they happen so that an interrupted run has it too."""

    polls: dict[str, int] = field(default_factory=dict)  # answered polls per job
    detection_gaps: list[float] = field(default_factory=list)  # last running to done, seconds
    unknown_status: dict[str, object] = field(default_factory=dict)  # job -> status as sent
    finishing: dict[str, int] = field(default_factory=dict)  # job -> "completed, no URL" answers
    fail_reasons: dict[str, str] = field(default_factory=dict)  # job -> why the run failed it
    stalled: list[str] = field(default_factory=list)  # jobs named as stalled, in that order


@dataclass
class _Watch:
    """One task being followed."""

    job: Job
    task_id: str
    klass: tuple[str, float]  # the planner's class: mode and whole duration
    start: float  # when following began
    created: float  # when the task was created (or following began, for an older one)
    fresh: bool  # created by this run just now
    last_running: float
    polls: int = 0
    not_found: int = 0
    logged_unknown: bool = False
    finishing: int = 0  # answers "completed" without a usable URL
    lost_since: float | None = None  # first of the current run of "not found" answers
    seen: object = None  # the last status answered
    changed: float = 0.0  # when the status last changed (or following began)
    stalled: bool = False
    born: float = 0.0  # when the ledger says the task was created (clock time), for the ETA


class Follower:
    """Follows the tasks of one run; learns from each how long the next will take."""

    def __init__(
        self,
        *,
        writer: RunWriter,
        client: SjinnClient,
        options: RunOptions,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._writer = writer
        self._client = client
        self._opt = options
        self._clock = clock
        self._planner = PollPlanner(options.poll_min, options.poll_max)
        self._slowest: dict[tuple[str, float], float] = {}  # class -> slowest finish seen
        self.stats = PollStats()
        # For the ETA: how long each task this run created took (only those: a task
        # created earlier may have finished long before it was polled), and the
        # tasks followed now, by job.
        self.generated: list[tuple[tuple[str, float], float]] = []
        self._watching: dict[str, _Watch] = {}

    async def follow(self, job: Job, *, created_at: float | None = None) -> Followed:
        """Poll ``job``'s task until it finishes; ``created_at``: created by this run then."""
        task_id = self._writer.state.record(job.key).task_id
        if task_id is None:
            return Followed(FollowVerdict.NO_TASK)
        start = self._clock()
        created = created_at if created_at is not None else start
        klass = (job.shot.model_mode, float(math.ceil(job.shot.duration)))
        watch = _Watch(job, task_id, klass, start, created, created_at is not None, created)
        watch.changed = created
        watch.born = created if created_at is not None else self._born(job, start)
        self._planner.started(klass, job.key, created)
        self._watching[job.key] = watch
        try:
            return await self._poll_until_done(watch)
        finally:
            self._watching.pop(job.key, None)
            self._planner.stopped(klass, job.key)

    def ages(self, now: float) -> list[tuple[tuple[str, float], float]]:
        """``(class, seconds since created)`` of each task followed now."""
        return [(w.klass, now - w.born) for w in self._watching.values()]

    def _born(self, job: Job, start: float) -> float:
        """When a task created before this run began was created, from the ledger's time."""
        ts = self._writer.state.record(job.key).created_ts
        if ts is None:
            return start
        try:
            age = (utc_now() - parse_rfc3339(ts)).total_seconds()
        except ValueError:
            return start
        return start - max(0.0, age)

    async def _poll_until_done(self, w: _Watch) -> Followed:
        while True:
            now = self._clock()
            if self._opt.no_wait and w.fresh:
                return Followed(FollowVerdict.LEFT_RUNNING)
            if now - w.start >= self._opt.task_timeout:
                return Followed(FollowVerdict.TIMED_OUT)
            await anyio.sleep(self._delay(w, now))
            try:
                status = await self._query(w)
            except AccountError as exc:
                return Followed(FollowVerdict.ACCOUNT_REFUSED, account_error=exc)
            if status is None:
                if (
                    w.lost_since is not None
                    and self._clock() - w.lost_since >= self._opt.gone_after
                ):
                    return await self._fail(w, GONE_REASON)
                self._check_stall(w, self._clock())
                continue
            followed = await self._answered(w, status)
            if followed is not None:
                return followed

    async def _answered(self, w: _Watch, status: TaskStatus) -> Followed | None:
        """Take one answer in: how following ended, or None to poll again."""
        w.polls += 1
        w.lost_since = None
        self.stats.polls[w.job.key] = self.stats.polls.get(w.job.key, 0) + 1
        noticed = self._clock()
        if status.succeeded:
            return await self._completed(w, status, noticed)
        if status.failed:
            return await self._fail(w, status.error or "the task failed", recorded=True)
        if status.finishing:
            if status.url_problem is not None:
                return await self._fail(w, status.url_problem)
            w.finishing += 1
            self.stats.finishing[w.job.key] = w.finishing
            if w.finishing >= self._opt.finishing_polls:
                reason = (
                    f"the task completed but the API gave no video URL after {w.finishing} polls"
                )
                return await self._fail(w, reason)
        if not status.known:
            self._unknown(w, status)
        if status.raw_status != w.seen:
            w.seen, w.changed = status.raw_status, noticed
        self._check_stall(w, noticed)
        w.last_running = noticed
        if self._opt.no_wait:
            return Followed(FollowVerdict.LEFT_RUNNING)
        return None

    async def _fail(self, w: _Watch, reason: str, *, recorded: bool = False) -> Followed:
        """Record the task as failed; ``recorded``: the server said so (else the run decided)."""
        if not recorded:
            self.stats.fail_reasons[w.job.key] = reason
            self._writer.emit(f"{w.job.key}: failed: {reason}.")
        await self._writer.note(
            "failed", w.job.key, task_id=w.task_id, error=reason, status=-1, polls=w.polls
        )
        return Followed(FollowVerdict.FAILED)

    def _check_stall(self, w: _Watch, now: float) -> None:
        """Name the task once as stalled when its status has not changed for too long."""
        if w.stalled:
            return
        slowest = self._slowest.get(w.klass)
        limit = self._opt.stall_after if slowest is None else STALL_FACTOR * slowest
        if now - w.changed <= limit:
            return
        w.stalled = True
        self.stats.stalled.append(w.job.key)
        self._writer.emit(
            f"{w.job.key}: stalled: task {w.task_id} has answered the same status for "
            f"{now - w.changed:.0f} s; still waiting."
        )

    def _delay(self, w: _Watch, now: float) -> float:
        if self._opt.no_wait and w.polls == 0:
            return 0.0
        delay = self._planner.next_delay(w.klass, now - w.created, w.polls, now=now)
        return min(delay, max(0.0, w.start + self._opt.task_timeout - now))

    async def _query(self, w: _Watch) -> TaskStatus | None:
        """The task's status, or None when this poll got no usable answer."""
        try:
            return await self._client.query(w.task_id)
        except (TransientError, InDoubtError):
            return None
        except TaskNotFoundError:
            w.not_found += 1
            if w.lost_since is None:
                w.lost_since = self._clock()
            if w.not_found == 1:
                self._writer.emit(f"{w.job.key}: the server does not know task {w.task_id} (yet).")
            return None

    async def _completed(self, w: _Watch, status: TaskStatus, noticed: float) -> Followed:
        self.stats.detection_gaps.append(noticed - w.last_running)
        took = (w.last_running + noticed) / 2 - w.created
        self._planner.observe(w.klass, took)
        self._slowest[w.klass] = max(self._slowest.get(w.klass, 0.0), took)
        if w.fresh:
            self.generated.append((w.klass, took))
        await self._writer.note(
            "completed",
            w.job.key,
            task_id=w.task_id,
            output_urls=list(status.output_urls),
            polls=w.polls,
        )
        return Followed(FollowVerdict.COMPLETED, output_urls=tuple(status.output_urls))

    def _unknown(self, w: _Watch, status: TaskStatus) -> None:
        if w.logged_unknown:
            return
        w.logged_unknown = True
        self.stats.unknown_status[w.job.key] = status.raw_status
        self._writer.emit(f"{w.job.key}: undocumented status {status.raw_status!r}; still waiting.")
