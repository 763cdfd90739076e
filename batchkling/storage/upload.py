"""Put local images in the object store, once each, and give every one a URL the API can fetch.

Per distinct file, ``parallel`` at a time: its key is content-addressed
(``storage.location.object_key``). A key that ``uploads.jsonl`` already records
for the same content is not asked about again; otherwise a HEAD tells whether it
is there already, and only a missing object is put. The URL is the public one
(``upload_public_url`` plus the key), or a signed GET URL, reused from the
records while it stays valid long enough and signed again otherwise. Last, a
ranged GET of the first bytes of every URL checks that it answers with an image,
so no create is sent with a URL the provider cannot fetch. Every request to the
store is retried on transient failures with the project's one retry policy.
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import httpx

from batchkling._time import format_rfc3339, utc_now
from batchkling.api.retry import retrying
from batchkling.errors import StorageError, UploadError
from batchkling.preflight.image_rules import sniff
from batchkling.schedule import RetryPolicy
from batchkling.storage.location import DEFAULT_EXPIRES, StoreLocation, object_key, public_url
from batchkling.storage.records import (
    UploadRecord,
    append_records,
    latest_by_key,
    latest_by_path,
    read_records,
    url_usable,
)
from batchkling.storage.store import Store, is_missing, is_transient, short_message

__all__ = [
    "DEFAULT_PARALLEL",
    "UPLOAD_POLICY",
    "LocalImage",
    "UploadEvent",
    "UploadSettings",
    "UploadSummary",
    "upload_images",
]

DEFAULT_PARALLEL = 8
# Five tries, about two seconds of waiting in all: an object store that fails for
# longer than that is down, and the user is better told at once.
UPLOAD_POLICY = RetryPolicy(attempts=5, base=0.25, cap=4.0)
_PROBE_BYTES = 64
_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}

T = TypeVar("T")


@dataclass(frozen=True)
class LocalImage:
    """One distinct local file to make available: its ``file:`` URL, path and sha256."""

    source: str
    path: Path
    sha256: str


@dataclass(frozen=True)
class UploadSettings:
    """Where and how: the location, the public base URL (else signed URLs) and their validity."""

    location: StoreLocation
    public_url: str | None = None
    expires: timedelta = DEFAULT_EXPIRES
    parallel: int = DEFAULT_PARALLEL
    policy: RetryPolicy = UPLOAD_POLICY
    secrets: tuple[str, ...] = ()  # values never to show in a message, whatever the store says


@dataclass(frozen=True)
class UploadEvent:
    """Progress: an image settled (``uploaded``, ``found``, ``reused``, ``signed``) or ``retry``."""

    kind: str
    path: str
    done: int
    total: int
    bytes: int = 0


@dataclass
class UploadSummary:
    """What the uploads did. ``urls`` maps each ``file:`` URL to the URL the API gets."""

    urls: dict[str, str] = field(default_factory=dict)
    uploaded: list[str] = field(default_factory=list)
    found: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    signed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # paths whose content changed since
    bytes_uploaded: int = 0
    records: dict[str, UploadRecord] = field(default_factory=dict)  # by file: URL
    kinds: dict[str, str] = field(default_factory=dict)  # by file: URL: what this call did


async def upload_images(
    images: Sequence[LocalImage],
    store: Store,
    settings: UploadSettings,
    *,
    http: httpx.AsyncClient,
    run_dir: Path | None,
    progress: Callable[[UploadEvent], None] | None = None,
    now: Callable[[], datetime] = utc_now,
    rand: Callable[[], float] = random.random,
) -> UploadSummary:
    """Upload what is missing, sign what needs it, check every URL; raise ``UploadError``.

    ``run_dir`` keeps ``uploads.jsonl`` (None: nothing is recorded or reused).
    """
    job = _Uploads(store, settings, http, run_dir, progress, now, rand, total=len(images))
    limiter = anyio.CapacityLimiter(max(1, settings.parallel))
    failures: list[StorageError] = []

    async def one(image: LocalImage) -> None:
        async with limiter:
            if failures:
                return  # one failure ends the uploads: nothing is created anyway
            try:
                await job.settle(image)
            except StorageError as exc:
                failures.append(exc)

    async with anyio.create_task_group() as group:
        for image in images:
            group.start_soon(one, image)
    if failures:
        raise failures[0]
    summary = job.summary
    # Tasks finish in any order; the summary lists the images as the manifest does.
    order = [image.source for image in images]
    summary.urls = {s: summary.urls[s] for s in order}
    summary.records = {s: summary.records[s] for s in order}
    summary.kinds = {s: summary.kinds[s] for s in order}
    return summary


class _Uploads:
    """The state shared by the tasks of one ``upload_images`` call."""

    def __init__(
        self,
        store: Store,
        settings: UploadSettings,
        http: httpx.AsyncClient,
        run_dir: Path | None,
        progress: Callable[[UploadEvent], None] | None,
        now: Callable[[], datetime],
        rand: Callable[[], float],
        *,
        total: int,
    ) -> None:
        self.store = store
        self.settings = settings
        self.http = http
        self.run_dir = run_dir
        self.progress = progress
        self.now = now
        self.rand = rand
        self.total = total
        records = read_records(run_dir) if run_dir is not None else []
        self.by_key = latest_by_key(records)
        self.by_path = latest_by_path(records)
        self.summary = UploadSummary()
        self.done = 0

    async def settle(self, image: LocalImage) -> None:
        """Make one image available; record and report what was done."""
        location = self.settings.location
        key = object_key(location, image.sha256, image.path.name)
        path = str(image.path)
        last = self.by_path.get(path)
        if last is not None and last.sha256 != image.sha256:
            self.summary.changed.append(path)
        known = self.by_key.get((location.store_url, key))
        if known is not None and known.sha256 != image.sha256:
            known = None  # another file under the same key: never trusted
        record, kind, sent = await self._place(image, key, known)
        if kind != "reused" and self.run_dir is not None:
            append_records(self.run_dir, [record])
        status = await self._answers(record.url, path)
        if status == 404 and known is not None:
            # The object was deleted from the bucket since it was recorded: put it again.
            record, kind, sent = await self._place(image, key, None)
            if self.run_dir is not None:
                append_records(self.run_dir, [record])
            status = await self._answers(record.url, path)
        if status is not None:
            raise UploadError(_not_answering(path, record, status), path=path)
        self._note(image, record, kind, sent)

    async def _place(
        self, image: LocalImage, key: str, known: UploadRecord | None
    ) -> tuple[UploadRecord, str, int]:
        """The object in the store and its URL: (record, what was done, bytes sent)."""
        sent = 0
        if known is None:
            data = await anyio.to_thread.run_sync(image.path.read_bytes)
            _same_content(image, data)
            size = await self._retried(lambda: self.store.size(key), image)
            if size == len(data):
                event = "found"
            else:
                kind = sniff(data[:16]) or "jpeg"
                content_type = _CONTENT_TYPES[kind]
                await self._retried(lambda: self.store.put(key, data, content_type), image)
                event, sent = "uploaded", len(data)
        elif self._reusable(known, key):
            return known, "reused", 0
        else:
            event = "signed"
        url, expires_at = await self._url(key, image)
        record = UploadRecord(
            at=format_rfc3339(self.now()),
            event=event,
            path=str(image.path),
            sha256=image.sha256,
            store=self.settings.location.store_url,
            key=key,
            url=url,
            expires_at=expires_at,
        )
        return record, event, sent

    def _reusable(self, known: UploadRecord, key: str) -> bool:
        """Whether a recorded URL is what these settings would give: the same public URL, or
        a signed one still valid long enough."""
        base = self.settings.public_url
        if base is not None:
            return known.url == public_url(base, key)
        if known.expires_at is None:
            return False  # public before, signed URLs asked for now
        return url_usable(known, now=self.now(), validity=self.settings.expires)

    async def _url(self, key: str, image: LocalImage) -> tuple[str, str | None]:
        base = self.settings.public_url
        if base is not None:
            return public_url(base, key), None
        expires = self.settings.expires
        moment = self.now()
        url = await self._retried(lambda: self.store.sign(key, expires), image)
        return url, format_rfc3339(moment + expires)

    async def _retried(self, call: Callable[[], Any], image: LocalImage) -> Any:
        """One store request under the retry policy; a failure becomes an ``UploadError``."""

        async def attempt(number: int) -> Any:
            if number:
                self._emit(UploadEvent("retry", str(image.path), self.done, self.total))
            return await call()

        try:
            return await retrying(
                attempt, policy=self.settings.policy, retry_on=is_transient, rand=self.rand
            )
        except Exception as exc:
            raise UploadError(self._failure(image, exc), path=str(image.path)) from None

    def _failure(self, image: LocalImage, exc: Exception) -> str:
        location = self.settings.location
        detail = short_message(exc, self.settings.secrets)
        if is_missing(exc):
            return (
                f"{image.path} could not be uploaded: the bucket {location.bucket} does not "
                f"exist or is not visible with these credentials ({detail}); nothing was created."
            )
        tries = self.settings.policy.attempts if is_transient(exc) else 1
        after = f" after {tries} tries" if tries > 1 else ""
        return (
            f"{image.path} could not be uploaded to {location}{after} ({detail}); nothing "
            "was created. Check the store's endpoint and credentials, then run again."
        )

    async def _answers(self, url: str, path: str) -> int | str | None:
        """None when ``url`` answers a ranged GET with an image; else its status or failure."""

        async def attempt(number: int) -> httpx.Response:
            response = await self.http.get(
                url, headers={"Range": f"bytes=0-{_PROBE_BYTES - 1}"}, timeout=30.0
            )
            if response.status_code >= 500:
                raise _ServerError(response.status_code)
            return response

        try:
            response = await retrying(
                attempt,
                policy=self.settings.policy,
                retry_on=(_ServerError, httpx.TransportError),
                rand=self.rand,
            )
        except _ServerError as exc:
            return exc.status
        except httpx.HTTPError as exc:
            return short_message(exc, self.settings.secrets)
        if response.status_code not in (200, 206):
            return response.status_code
        if sniff(response.content[:16]) is None:
            return "an answer that is not the image"
        return None

    def _note(self, image: LocalImage, record: UploadRecord, kind: str, sent: int) -> None:
        summary = self.summary
        summary.urls[image.source] = record.url
        summary.records[image.source] = record
        summary.kinds[image.source] = kind
        getattr(summary, kind).append(str(image.path))
        summary.bytes_uploaded += sent
        self.done += 1
        self._emit(UploadEvent(kind, str(image.path), self.done, self.total, sent))

    def _emit(self, event: UploadEvent) -> None:
        if self.progress is not None:
            self.progress(event)


class _ServerError(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status


def _same_content(image: LocalImage, data: bytes) -> None:
    """The file must still hold what the manifest was read with: its key names that content."""
    if hashlib.sha256(data).hexdigest() != image.sha256:
        raise UploadError(
            f"{image.path} changed while batchkling was running; nothing was created.",
            path=str(image.path),
            hint="Run the command again.",
        )


def _not_answering(path: str, record: UploadRecord, status: int | str) -> str:
    what = f"HTTP {status}" if isinstance(status, int) else status
    where = "its public URL" if record.expires_at is None else "its signed URL"
    fix = (
        "check that upload_public_url serves the bucket's root publicly"
        if record.expires_at is None
        else "check the store's endpoint and that it serves signed URLs"
    )
    return (
        f"{path} was uploaded as {record.store}/{record.key}, but {where} answers {what}, "
        f"so the API could not fetch it; nothing was created: {fix}."
    )
