"""Fetching a finished task's video: stream to ``.part``, verify, rename; fresh URLs on expiry.

A download never leads to a new create: the worst a failed download does is leave
the job ``completed`` for the next run to fetch.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import anyio

from batchkling.api.answers import pick_video
from batchkling.api.client import SjinnClient
from batchkling.api.retry import retrying
from batchkling.errors import InDoubtError, RefusedError, TaskNotFoundError, TransientError
from batchkling.schedule import RetryPolicy

__all__ = ["Downloaded", "Downloader", "video_path"]


def video_path(run_dir: Path, job_key: str) -> Path:
    """Where a job's video lives: ``<run-dir>/videos/<job key>.mp4``."""
    return run_dir / "videos" / f"{job_key}.mp4"


@dataclass(frozen=True)
class Downloaded:
    """A verified video on disk."""

    path: Path
    bytes: int
    sha256: str


class Downloader:
    """Downloads videos into a run directory, a bounded number at a time."""

    def __init__(
        self,
        client: SjinnClient,
        run_dir: Path,
        *,
        attempts: int,
        parallel: int,
        backoff_base: float = 1.0,
        backoff_cap: float = 60.0,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._run_dir = run_dir
        self._limiter = anyio.CapacityLimiter(parallel)
        self._policy = RetryPolicy(attempts=attempts, base=backoff_base, cap=backoff_cap)
        self._rand = rand

    async def fetch(self, job_key: str, task_id: str, urls: Sequence[str]) -> Downloaded | None:
        """The job's video, verified and in place; None when every attempt failed."""
        dest = video_path(self._run_dir, job_key)
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        current = list(urls)

        async def attempt(number: int) -> Downloaded:
            nonlocal current
            if not current:
                current = await self._fresh_urls(task_id)
                if not current:
                    raise TransientError("download: the task has no output URL yet.")
            try:
                async with self._limiter:
                    size, sha = await self._client.download(pick_video(current), part)
            except RefusedError:
                current = []  # expired: ask the server for a fresh URL
                raise
            except TransientError:
                if number >= 1:
                    current = []  # a URL that keeps failing may be stale too
                raise
            os.replace(part, dest)
            _fsync_dir(dest.parent)
            return Downloaded(path=dest, bytes=size, sha256=sha)

        try:
            return await retrying(attempt, policy=self._policy, retry_on=_retry_on, rand=self._rand)
        except (RefusedError, TransientError):
            return None

    async def _fresh_urls(self, task_id: str) -> list[str]:
        try:
            status = await self._client.query(task_id)
        except (TransientError, InDoubtError, TaskNotFoundError):
            return []
        return list(status.output_urls) if status.succeeded else []


def _retry_on(exc: Exception) -> bool | float:
    # An expired URL is replaced by a fresh one at once; anything else transient waits.
    if isinstance(exc, RefusedError):
        return 0.0
    return isinstance(exc, TransientError)


def _fsync_dir(path: Path) -> None:
    # The rename is only durable once the directory entry is.
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
