"""Fetching a finished task's video: stream to ``.part``, check it plays, put it in place.

A video is done only when it is a playable MP4 (``batchkling.video.verify``:
FFmpeg opens it, and its first and last frames decode): a body cut short, a
``Content-Length`` shorter than the file, a body with no length that ended
early, or a compressed body stored as it came are never called done, whatever
the HTTP framing said. Videos are asked for with ``Accept-Encoding: identity``;
a server that compresses anyway is decoded. A download may take 60 s plus one
second per 64 KiB received (so a server that trickles a byte at a time is given
up on), and at most 2 GB are accepted.

A download never leads to a new create: the worst a failed one does is leave
the job ``completed`` for the next run to fetch. A run directory that cannot be
written (a full disk, a read-only one) raises ``RunDirWriteError`` naming it,
and this downloader refuses every later download: nothing is retried against a
full disk. The fsyncs run in a worker thread, as do FFmpeg's checks, so the
event loop never waits on the disk.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import httpx

from batchkling.api.answers import pick_video
from batchkling.api.client import SjinnClient
from batchkling.api.retry import retrying
from batchkling.errors import (
    InDoubtError,
    RefusedError,
    RunDirWriteError,
    TaskNotFoundError,
    TransientError,
)
from batchkling.ledger import LEDGER_NAME
from batchkling.schedule import RetryPolicy
from batchkling.video.rules import (
    MAX_VIDEO_BYTES,
    VIDEOS_DIR,
    VideoInfo,
    duration_warning,
    video_name,
)
from batchkling.video.store import Placed, place_video
from batchkling.video.verify import Inspection, UnplayableVideo, inspect_video

__all__ = [
    "DOWNLOAD_GRACE",
    "DOWNLOAD_MIN_RATE",
    "DownloadFailure",
    "Downloaded",
    "Downloader",
    "video_path",
]

# Seconds a download may take before it must average DOWNLOAD_MIN_RATE bytes a second.
DOWNLOAD_GRACE = 60.0
DOWNLOAD_MIN_RATE = 64 * 1024
_CHUNK = 1 << 16


def video_path(run_dir: Path, job_key: str) -> Path:
    """Where a job's latest video lives: ``<run-dir>/videos/<job key>.mp4``."""
    return run_dir / VIDEOS_DIR / video_name(job_key)


@dataclass(frozen=True)
class Downloaded:
    """A video on disk that plays: where, its size and hash, and what FFmpeg found in it.

    ``poster`` is its first frame as a JPEG; ``earlier`` is where the video it
    replaced (another task's) was kept; ``warning`` says when its length is more
    than a second off the duration asked.
    """

    path: Path
    bytes: int
    sha256: str
    info: VideoInfo
    poster: Path | None = None
    earlier: Path | None = None
    warning: str | None = None

    def ledger_fields(self) -> dict[str, Any]:
        """The ``downloaded`` event's fields besides ``task_id`` and ``path``."""
        return {"bytes": self.bytes, "sha256": self.sha256, **self.info.ledger_fields()}


@dataclass(frozen=True)
class DownloadFailure:
    """Every attempt failed; ``reason`` says how the last one did (for the summary)."""

    reason: str


class _TooLarge(Exception):
    """Over the size cap: not worth another attempt in this run."""


@dataclass(frozen=True)
class _Got:
    """A body streamed whole into the ``.part`` file."""

    size: int
    sha256: str


class Downloader:
    """Downloads videos into a run directory, a bounded number at a time.

    ``http`` carries the downloads; without it they go through the HTTP client
    that ``client`` was made with (its pool, proxies and redirects, never its
    API transport or its key).
    """

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
        http: httpx.AsyncClient | None = None,
        max_bytes: int = MAX_VIDEO_BYTES,
        grace: float = DOWNLOAD_GRACE,
        min_rate: float = DOWNLOAD_MIN_RATE,
    ) -> None:
        self._client = client
        self._run_dir = run_dir
        self._http = http if http is not None else _http_of(client)
        self._limiter = anyio.CapacityLimiter(parallel)
        self._policy = RetryPolicy(attempts=attempts, base=backoff_base, cap=backoff_cap)
        self._rand = rand
        self._max_bytes = max_bytes
        self._grace = grace
        self._min_rate = min_rate
        self._broken: RunDirWriteError | None = None
        self._provenance = _Provenance(run_dir)
        self.active = 0  # downloads under way now, for the live display

    async def fetch(
        self, job_key: str, task_id: str, urls: Sequence[str], *, duration: float | None = None
    ) -> Downloaded | None:
        """The job's video, verified and in place; None when every attempt failed."""
        got = await self.get(job_key, task_id, urls, duration=duration)
        return got if isinstance(got, Downloaded) else None

    async def get(
        self, job_key: str, task_id: str, urls: Sequence[str], *, duration: float | None = None
    ) -> Downloaded | DownloadFailure:
        """The job's video, verified and in place, or why every attempt failed.

        ``duration`` is what the job asked for: a video more than a second off it is
        still done (it was paid for), with a ``warning``. Raises ``RunDirWriteError``
        when the run directory cannot be written; every later call raises it too.
        """
        if self._broken is not None:
            raise self._broken
        dest = video_path(self._run_dir, job_key)
        part = dest.with_name(dest.name + ".part")
        self.active += 1
        try:
            with self._writing():
                await anyio.to_thread.run_sync(
                    lambda: dest.parent.mkdir(parents=True, exist_ok=True)
                )
            return await self._attempts(job_key, task_id, list(urls), part, duration)
        finally:
            self.active -= 1
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)

    async def _attempts(
        self, job: str, task_id: str, current: list[str], part: Path, duration: float | None
    ) -> Downloaded | DownloadFailure:
        async def attempt(number: int) -> Downloaded:
            nonlocal current
            if not current:
                current = await self._fresh_urls(task_id)
                if not current:
                    raise TransientError("download: the task has no output URL yet.")
            try:
                async with self._limiter:
                    got = await self._stream(pick_video(current), part)
                    checked = await self._check(part)
            except RefusedError:
                current = []  # expired: ask the server for a fresh URL
                raise
            except TransientError:
                if number >= 1:
                    current = []  # a URL that keeps failing may be stale too
                raise
            placed = await self._place(part, job, task_id, got, checked)
            warning = duration_warning(job, checked.info.duration, duration)
            return Downloaded(
                placed.path,
                got.size,
                got.sha256,
                checked.info,
                placed.poster,
                placed.earlier,
                warning,
            )

        try:
            return await retrying(attempt, policy=self._policy, retry_on=_retry_on, rand=self._rand)
        except (RefusedError, TransientError, _TooLarge) as exc:
            return DownloadFailure(str(exc).removeprefix("download: ").rstrip("."))

    async def _stream(self, url: str, part: Path) -> _Got:
        """GET ``url`` into ``part`` (decoded), within the deadline and the size cap."""
        start = anyio.current_time()
        with anyio.CancelScope(deadline=start + self._grace) as scope:
            try:
                async with self._http.stream(
                    "GET", url, headers={"Accept-Encoding": "identity"}
                ) as resp:
                    expected = _declared_length(resp, self._max_bytes)
                    got = await self._write_body(resp, part, scope, start)
                    raw = resp.num_bytes_downloaded
            except httpx.HTTPError as exc:
                raise TransientError(f"download: interrupted ({type(exc).__name__}).") from exc
        if scope.cancelled_caught:
            raise TransientError(
                f"download: too slow (less than {self._min_rate / 1024:g} KiB/s after "
                f"{self._grace:g} s)."
            )
        if expected is not None and raw != expected:
            raise TransientError(f"download: got {raw} of {expected} bytes.")
        if got.size == 0:
            raise TransientError("download: an empty file.")
        return got

    async def _write_body(
        self, resp: httpx.Response, part: Path, scope: anyio.CancelScope, start: float
    ) -> _Got:
        digest = hashlib.sha256()
        size = 0
        with self._writing():
            fh = open(part, "wb")  # noqa: SIM115 - closed below, its errors told apart
        try:
            async for chunk in resp.aiter_bytes(_CHUNK):
                size += len(chunk)
                if size > self._max_bytes:
                    raise _TooLarge(_too_large(self._max_bytes))
                with self._writing():
                    fh.write(chunk)
                digest.update(chunk)
                scope.deadline = start + self._grace + size / self._min_rate
            with self._writing():
                fh.flush()
                await anyio.to_thread.run_sync(os.fsync, fh.fileno())
        finally:
            with contextlib.suppress(OSError):
                fh.close()
        return _Got(size, digest.hexdigest())

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Where the disk is written: an ``OSError`` there is the run directory's, not the
        network's, and stops every download."""
        try:
            yield
        except OSError as exc:
            raise self._disk_error(exc) from None

    async def _check(self, part: Path) -> Inspection:
        try:
            return await anyio.to_thread.run_sync(inspect_video, part)
        except UnplayableVideo as exc:
            raise TransientError(f"download: not a playable MP4: {exc}.") from None

    async def _place(
        self, part: Path, job: str, task_id: str, got: _Got, checked: Inspection
    ) -> Placed:
        def place() -> Placed:
            return place_video(
                part,
                job=job,
                task_id=task_id,
                sha256=got.sha256,
                poster=checked.poster,
                task_of=self._provenance.task_of,
            )

        with self._writing():
            placed = await anyio.to_thread.run_sync(place)
        self._provenance.placed(placed.path, got.sha256, task_id)
        return placed

    async def _fresh_urls(self, task_id: str) -> list[str]:
        try:
            status = await self._client.query(task_id)
        except (TransientError, InDoubtError, TaskNotFoundError):
            return []
        return list(status.output_urls) if status.succeeded else []

    def _disk_error(self, exc: OSError) -> RunDirWriteError:
        videos = self._run_dir / VIDEOS_DIR
        error = RunDirWriteError(
            f"the run directory {self._run_dir} could not be written (a video in {videos}: "
            f"{_disk_reason(exc)}); the job stays completed and nothing more is downloaded.",
            hint="Free space or fix the disk, then run the same command again to fetch it.",
        )
        self._broken = error
        return error


def _http_of(client: SjinnClient) -> httpx.AsyncClient:
    # The one HTTP client a run's client holds; it sends no API key of its own.
    return client.http


def _declared_length(resp: httpx.Response, cap: int) -> int | None:
    """The answer's ``Content-Length`` once its status is a video's; errors say what to do."""
    if resp.status_code in (401, 403, 404, 410):
        raise RefusedError(
            f"download: HTTP {resp.status_code} (the URL expired).", status_code=resp.status_code
        )
    if resp.status_code != 200:
        raise TransientError(f"download: HTTP {resp.status_code}.", status_code=resp.status_code)
    text = resp.headers.get("Content-Length")
    expected = int(text) if text is not None and text.isdigit() else None
    encoded = resp.headers.get("Content-Encoding", "identity").lower() not in ("", "identity")
    if expected is not None and expected > cap and not encoded:
        raise _TooLarge(_too_large(cap))
    return expected


def _too_large(cap: int) -> str:
    return f"download: the video is larger than {cap:,} bytes, the most a download accepts"


def _retry_on(exc: Exception) -> bool | float:
    # An expired URL is replaced by a fresh one at once; anything else transient waits.
    if isinstance(exc, RefusedError):
        return 0.0
    return isinstance(exc, TransientError)


def _disk_reason(exc: OSError) -> str:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "the disk is full"
    if exc.errno == errno.EFBIG:
        return "the file size limit was reached"
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return "the run directory is read-only"
    return exc.strerror or str(exc)


class _Provenance:
    """Which task's video each file in ``videos/`` is, by path and sha256, from the ledger.

    Read from the ledger the first time a video would replace another, then kept
    current with every video this downloader places.
    """

    def __init__(self, run_dir: Path) -> None:
        self._run_dir = run_dir
        self._owners: dict[tuple[str, str], str] | None = None
        self._placed: dict[tuple[str, str], str] = {}

    def task_of(self, path: Path, sha256: str) -> str | None:
        """The task whose video, with this hash, was last put at ``path`` (blocking)."""
        if self._owners is None:
            self._owners = _downloads_in(self._run_dir / LEDGER_NAME)
        key = (self._relative(path), sha256)
        return self._placed.get(key) or self._owners.get(key)

    def placed(self, path: Path, sha256: str, task_id: str) -> None:
        """Remember that ``path`` now holds ``task_id``'s video."""
        self._placed[(self._relative(path), sha256)] = task_id

    def _relative(self, path: Path) -> str:
        return str(path.relative_to(self._run_dir))


def _downloads_in(ledger: Path) -> dict[tuple[str, str], str]:
    """(path, sha256) -> task id of every ``downloaded`` event, later events winning."""
    owners: dict[tuple[str, str], str] = {}
    with contextlib.suppress(FileNotFoundError), open(ledger, "rb") as fh:
        for line in fh:
            if b'"downloaded"' not in line:
                continue
            try:
                ev = json.loads(line)
            except ValueError:
                continue  # a torn last line
            if not isinstance(ev, dict) or ev.get("event") != "downloaded":
                continue
            path, sha, task = ev.get("path"), ev.get("sha256"), ev.get("task_id")
            if isinstance(path, str) and isinstance(sha, str) and isinstance(task, str):
                owners[(path, sha)] = task
    return owners
