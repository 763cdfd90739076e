"""Following one created task: poll it on the ``PollPlanner``'s schedule until it finishes.

A poll that fails is simply tried again at the next planned time: a query costs
nothing and changes nothing. A status the API reference does not document is
reported once and treated as still running, never as success.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum

import anyio

from batchkling.api.answers import TaskStatus
from batchkling.api.client import SjinnClient
from batchkling.errors import InDoubtError, TaskNotFoundError, TransientError
from batchkling.model import Job
from batchkling.run.options import RunOptions
from batchkling.run.writer import RunWriter
from batchkling.schedule import PollPlanner

__all__ = ["FollowVerdict", "Followed", "Follower", "PollStats"]


class FollowVerdict(Enum):
    """How following a task ended."""

    COMPLETED = "completed"  # finished with a video: download ``output_urls``
    FAILED = "failed"  # the task failed on the server
    TIMED_OUT = "timed_out"  # still running after the task timeout
    LEFT_RUNNING = "left_running"  # not waited for (``no_wait``): a later run collects it
    NO_TASK = "no_task"  # the ledger knows no task id for the job


@dataclass(frozen=True)
class Followed:
    """The outcome of following one task."""

    verdict: FollowVerdict
    output_urls: tuple[str, ...] = ()


@dataclass
class PollStats:
    """What the polls of a run saw, kept as they happen so that an interrupted run has it too."""

    polls: dict[str, int] = field(default_factory=dict)  # answered polls per job
    detection_gaps: list[float] = field(default_factory=list)  # last running to done, seconds
    unknown_status: dict[str, int] = field(default_factory=dict)  # job -> undocumented status


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
        self.stats = PollStats()

    async def follow(self, job: Job, *, created_at: float | None = None) -> Followed:
        """Poll ``job``'s task until it finishes; ``created_at``: created by this run then."""
        task_id = self._writer.state.record(job.key).task_id
        if task_id is None:
            return Followed(FollowVerdict.NO_TASK)
        start = self._clock()
        created = created_at if created_at is not None else start
        klass = (job.shot.model_mode, float(math.ceil(job.shot.duration)))
        watch = _Watch(job, task_id, klass, start, created, created_at is not None, created)
        self._planner.started(klass, job.key, created)
        try:
            return await self._poll_until_done(watch)
        finally:
            self._planner.stopped(klass, job.key)

    async def _poll_until_done(self, w: _Watch) -> Followed:
        while True:
            now = self._clock()
            if self._opt.no_wait and w.fresh:
                return Followed(FollowVerdict.LEFT_RUNNING)
            if now - w.start >= self._opt.task_timeout:
                return Followed(FollowVerdict.TIMED_OUT)
            await anyio.sleep(self._delay(w, now))
            status = await self._query(w)
            if status is None:
                continue
            w.polls += 1
            self.stats.polls[w.job.key] = self.stats.polls.get(w.job.key, 0) + 1
            noticed = self._clock()
            if status.succeeded:
                return await self._completed(w, status, noticed)
            if status.failed:
                await self._writer.note(
                    "failed",
                    w.job.key,
                    task_id=w.task_id,
                    error=status.error or "the task failed",
                    status=-1,
                    polls=w.polls,
                )
                return Followed(FollowVerdict.FAILED)
            if not status.known:
                self._unknown(w, status)
            w.last_running = noticed
            if self._opt.no_wait:
                return Followed(FollowVerdict.LEFT_RUNNING)

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
            if w.not_found == 1:
                self._writer.emit(f"{w.job.key}: the server does not know task {w.task_id} (yet).")
            return None

    async def _completed(self, w: _Watch, status: TaskStatus, noticed: float) -> Followed:
        self.stats.detection_gaps.append(noticed - w.last_running)
        self._planner.observe(w.klass, (w.last_running + noticed) / 2 - w.created)
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
        value = status.status if status.status is not None else -999
        self.stats.unknown_status[w.job.key] = value
        self._writer.emit(f"{w.job.key}: undocumented status {status.status!r}; still waiting.")
