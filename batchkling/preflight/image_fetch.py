"""Pre-flight image checks: fetch every distinct image URL once and judge it.

The rules live in ``batchkling.preflight.image_rules``; this module only asks the hosts. Per
distinct URL, ``max_parallel`` URLs at a time, each request bounded by ``timeout``:

First check of a URL (or no usable cache entry for it):

1. ``HEAD``. A 2xx whose status, type or length already rules the image out ends the
   check, as do 404, 410, a timeout or a refused connection. Any other answer (405,
   501, a 403 from a URL signed for GET only) or a dropped connection falls back to GET.
2. ``GET``. Without local copies: ``Range: bytes=0-32767``, then 0-262143 and
   0-1048575 only while the header is not yet readable; a host that ignores Range
   (200) is read as a stream and dropped once the header is read. With local copies:
   one plain GET of the whole file (at most 10 MB), judged from its first bytes as
   they arrive (a body that is not an image is dropped at once) and saved under
   ``<cache_dir>/images/``.

Later checks, when ``<cache_dir>/images.json`` holds an ``ETag`` or
``Last-Modified`` for the URL (and its local copy exists, when copies are kept):
one conditional ``GET`` with ``If-None-Match`` / ``If-Modified-Since``, ranged as
above when copies are not kept. A 304 reuses the cached result; any other answer
is judged as on a first check, in that same request.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import anyio
import anyio.to_thread

from batchkling._util import write_atomic
from batchkling.model import DEFAULT_IMAGE_TIMEOUT, Shot
from batchkling.preflight.image_rules import (
    KINDS,
    MAX_BYTES,
    MAX_HEADER_BYTES,
    PROBE_SIZES,
    SNIFF_BYTES,
    ImageInfo,
    answer_problem,
    conditional_headers,
    copy_name,
    distinct_urls,
    examine,
    examine_local,
    failure_message,
    read_dimensions,
    sniff,
    timeout_message,
    total_size,
    updated_cache,
    wants_copy,
    wants_more,
)

if TYPE_CHECKING:
    import httpx

# httpx is imported by the functions that catch its errors: the report, which reads
# this module's cache file name and local copies, loads no HTTP stack.

__all__ = [
    "CACHE_FILE",
    "CACHE_VERSION",
    "COPIES_DIR",
    "DEFAULT_COPY_TIMEOUT",
    "DEFAULT_MAX_PARALLEL",
    "DEFAULT_TIMEOUT",
    "OnRequest",
    "check_images",
    "load_cache",
    "local_copy_path",
    "save_cache",
]

CACHE_FILE = "images.json"
CACHE_VERSION = 1
COPIES_DIR = "images"
DEFAULT_MAX_PARALLEL = 8
DEFAULT_TIMEOUT = DEFAULT_IMAGE_TIMEOUT
DEFAULT_COPY_TIMEOUT = 60.0

OnRequest = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class _Answer:
    """One HTTP answer: status, the headers that matter, and as much body as was read."""

    status: int
    content_type: str | None
    size: int | None
    etag: str | None
    last_modified: str | None
    body: bytes = b""
    complete: bool = False


def _facts(response: httpx.Response) -> _Answer:
    headers = response.headers
    return _Answer(
        status=response.status_code,
        content_type=headers.get("content-type"),
        size=total_size(
            response.status_code, headers.get("content-length"), headers.get("content-range")
        ),
        etag=headers.get("etag"),
        last_modified=headers.get("last-modified"),
    )


async def check_images(
    shots: Sequence[Shot],
    *,
    client: httpx.AsyncClient,
    cache_dir: Path | None,
    max_parallel: int = DEFAULT_MAX_PARALLEL,
    timeout: float = DEFAULT_TIMEOUT,
    keep_copies: bool = True,
    copy_timeout: float = DEFAULT_COPY_TIMEOUT,
    on_request: OnRequest | None = None,
) -> dict[str, ImageInfo]:
    """Check every distinct start and tail image; never raises for a bad one.

    Returns an ``ImageInfo`` per distinct URL, in manifest order. ``timeout`` bounds
    each request until the image is judged; the rest of a local copy's download gets
    ``copy_timeout``, and a copy that misses it is simply not kept. ``on_request`` is
    awaited before every request (a rate limiter, say). Without ``cache_dir`` nothing
    is cached and no copies are kept.
    """
    urls = distinct_urls(shots)
    cache = load_cache(cache_dir) if cache_dir is not None else {}
    copies = cache_dir / COPIES_DIR if keep_copies and cache_dir is not None else None
    fetcher = _Fetcher(client, timeout, copy_timeout, on_request, copies)
    limiter = anyio.CapacityLimiter(max_parallel)
    results: dict[str, ImageInfo] = {}

    async def check(url: str) -> None:
        async with limiter:
            if url.startswith("file:"):
                # A local image: read from disk, never uploaded here, never cached.
                results[url] = await anyio.to_thread.run_sync(_check_local, url, copies)
            else:
                results[url] = await fetcher.check(url, cache.get(url))

    try:
        async with anyio.create_task_group() as group:
            for url in urls:
                group.start_soon(check, url)
    finally:
        # Also on cancellation: what was learnt so far saves requests next time.
        if cache_dir is not None:
            save_cache(cache_dir, updated_cache(cache, results))
    return {url: results[url] for url in urls}


class _Fetcher:
    """The requests for one URL; shared by every task of one check."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        timeout: float,
        copy_timeout: float,
        on_request: OnRequest | None,
        copies: Path | None,
    ) -> None:
        self.client = client
        self.timeout = timeout
        self.copy_timeout = copy_timeout
        self.on_request = on_request
        self.copies = copies

    async def check(self, url: str, cached: ImageInfo | None) -> ImageInfo:
        if cached is not None and cached.revalidatable and self._copy_in_place(url, cached):
            got = await self._get(url, conditional_headers(cached))
            if isinstance(got, ImageInfo):
                return got
            if got.status == 304:
                return cached
            return await self._judge(url, got, None)
        head = await self._head(url)
        if isinstance(head, ImageInfo):
            return head
        got = await self._get(url, {})
        if isinstance(got, ImageInfo):
            return got
        return await self._judge(url, got, head)

    def _copy_in_place(self, url: str, cached: ImageInfo) -> bool:
        # Revalidating is only enough if it leaves nothing to download: with copies
        # kept, a wanted copy that is missing needs the body, so no conditional request.
        if self.copies is None or not wants_copy(cached) or cached.kind is None:
            return True
        return (self.copies / copy_name(url, cached.kind)).is_file()

    async def _before(self) -> None:
        if self.on_request is not None:
            await self.on_request()

    async def _head(self, url: str) -> ImageInfo | _Answer | None:
        """The HEAD step: a final ImageInfo, the facts it gave, or None to go on with GET alone."""
        import httpx

        await self._before()
        try:
            with anyio.fail_after(self.timeout):
                response = await self.client.head(url, follow_redirects=True, timeout=self.timeout)
        except (TimeoutError, httpx.TimeoutException):
            # A host too slow for HEAD is too slow for GET: waiting twice tells nothing more.
            return ImageInfo(url, error=timeout_message(self.timeout))
        except (httpx.ConnectError, httpx.UnsupportedProtocol, httpx.InvalidURL) as exc:
            return ImageInfo(url, error=failure_message(exc))
        except httpx.HTTPError:
            return None
        facts = _facts(response)
        final = 200 <= facts.status < 300 or facts.status in (404, 410)
        if final and answer_problem(facts.status, facts.content_type, facts.size) is not None:
            return self._examine(url, facts, None)
        return facts if 200 <= facts.status < 300 else None

    async def _get(self, url: str, conditional: dict[str, str]) -> _Answer | ImageInfo:
        if self.copies is not None:
            return await self._fetch(url, conditional, None)
        headers = dict(conditional)
        for asked in PROBE_SIZES:
            headers["Range"] = f"bytes=0-{asked - 1}"
            got = await self._fetch(url, headers, asked)
            if isinstance(got, ImageInfo) or got.status != 206:
                return got
            if not wants_more(got.body, complete=got.complete, asked=asked):
                return got
            # The header lies further in: ask again for more, unconditionally, since
            # the first answer already showed the image changed.
            headers = {}
        return got

    async def _fetch(
        self, url: str, headers: dict[str, str], asked: int | None
    ) -> _Answer | ImageInfo:
        """One GET: ranged when ``asked`` is set, else the whole file for a local copy."""
        import httpx

        await self._before()
        read = _Read()
        with anyio.CancelScope(deadline=anyio.current_time() + self.timeout) as scope:
            try:
                async with self.client.stream(
                    "GET", url, headers=headers, follow_redirects=True, timeout=self.timeout
                ) as response:
                    facts = read.facts = _facts(response)
                    if facts.status == 304 or (
                        answer_problem(facts.status, facts.content_type, facts.size) is not None
                    ):
                        return facts
                    cap = _body_cap(asked, facts.status)
                    await self._read_body(response, read, cap, asked, scope)
            except (httpx.HTTPError, httpx.InvalidURL) as exc:
                read.failed = exc
        interrupted = scope.cancelled_caught or read.failed is not None
        return _outcome(url, read, asked, interrupted=interrupted, timeout=self.timeout)

    async def _read_body(
        self,
        response: httpx.Response,
        read: _Read,
        cap: int,
        asked: int | None,
        scope: anyio.CancelScope,
    ) -> None:
        """Read at most ``cap`` bytes into ``read.body``: what judging (or a copy) needs."""
        body = read.body  # grown in place, so that a cancelled read keeps what it got
        probes = iter(PROBE_SIZES)
        next_probe: int | None = next(probes)
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) >= SNIFF_BYTES and sniff(body) is None:
                break  # not an image: nothing further can change that
            if len(body) >= cap:
                del body[cap:]
                break
            if next_probe is not None and len(body) >= next_probe:
                if read_dimensions(body) is None:
                    next_probe = next(probes, None)
                elif asked is not None:
                    break
                else:
                    # Judged: the rest only feeds the copy, on its own clock.
                    next_probe = None
                    scope.deadline = anyio.current_time() + self.copy_timeout
        else:
            read.ended = True

    async def _judge(self, url: str, got: _Answer, head: _Answer | None) -> ImageInfo:
        info = self._examine(url, got, head)
        copies = self.copies
        fresh = got.status == 200 and got.complete
        if copies is not None and fresh and info.kind is not None and wants_copy(info):
            await anyio.to_thread.run_sync(_write_copy, copies, url, info.kind, got.body)
        return info

    @staticmethod
    def _examine(url: str, got: _Answer, head: _Answer | None) -> ImageInfo:
        # A GET that does not state the size (a 206 with ``/*``) may have had it from HEAD.
        size = got.size if got.size is not None or head is None else head.size
        return examine(
            url,
            status=got.status,
            content_type=got.content_type,
            size=size,
            prefix=got.body,
            complete=got.complete,
            etag=got.etag if got.etag is not None or head is None else head.etag,
            last_modified=got.last_modified
            if got.last_modified is not None or head is None
            else head.last_modified,
        )


@dataclass
class _Read:
    """What one GET got so far; kept outside the request, so a timeout loses none of it."""

    facts: _Answer | None = None
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False  # the whole body was read
    failed: Exception | None = None


def _body_cap(asked: int | None, status: int) -> int:
    """How many bytes of the body to read at most."""
    if asked is None:
        return MAX_BYTES + 1  # one byte over tells a file without length is too big
    if status == 206:
        return asked
    return MAX_HEADER_BYTES  # Range ignored: read on until the header is read


def _outcome(
    url: str, read: _Read, asked: int | None, *, interrupted: bool, timeout: float
) -> _Answer | ImageInfo:
    """The answer a GET gave, or the error when it was cut short before it could be judged."""
    import httpx

    facts, body = read.facts, bytes(read.body)
    if facts is None or (interrupted and not _judgeable(body)):
        if read.failed is None or isinstance(read.failed, httpx.TimeoutException):
            return ImageInfo(url, error=timeout_message(timeout))
        return ImageInfo(url, error=failure_message(read.failed))
    size = facts.size
    if size is None and len(body) > MAX_BYTES:
        size = len(body)
    if facts.status == 206:
        complete = (size is not None and len(body) >= size) or (
            read.ended and asked is not None and len(body) < asked
        )
    else:
        complete = read.ended and not interrupted
    return replace(facts, size=size, body=body, complete=complete)


def _judgeable(body: bytes) -> bool:
    """True when a cut-short body already settles the verdict (not an image, or a readable one)."""
    if len(body) < SNIFF_BYTES:
        return False
    return sniff(body) is None or read_dimensions(body) is not None


def local_copy_path(cache_dir: Path, url: str) -> Path | None:
    """The local copy of an image kept by ``check_images``, or None if there is none."""
    for kind in KINDS:
        path = cache_dir / COPIES_DIR / copy_name(url, kind)
        if path.is_file():
            return path
    return None


def load_cache(cache_dir: Path) -> dict[str, ImageInfo]:
    """The results of earlier checks by URL; an absent or unreadable cache is empty."""
    try:
        data = json.loads((cache_dir / CACHE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return {}
    images = data.get("images")
    if not isinstance(images, dict):
        return {}
    out: dict[str, ImageInfo] = {}
    for url, raw in images.items():
        info = ImageInfo.from_json(raw)
        if info is not None and info.url == url:
            out[url] = info
    return out


def save_cache(cache_dir: Path, entries: dict[str, ImageInfo]) -> None:
    """Write ``images.json`` atomically, so a crash leaves the old cache or the new one."""
    payload = {
        "version": CACHE_VERSION,
        "images": {url: entries[url].to_json() for url in sorted(entries)},
    }
    text = json.dumps(payload, indent=1, ensure_ascii=False) + "\n"
    cache_dir.mkdir(parents=True, exist_ok=True)
    write_atomic(cache_dir / CACHE_FILE, text)


def _check_local(url: str, copies: Path | None) -> ImageInfo:
    """Judge a local file as an image, keeping a copy (for the report) when it can be used."""
    path = Path(unquote(urlsplit(url).path))
    try:
        with open(path, "rb") as stream:
            size = os.fstat(stream.fileno()).st_size
            # Over the limit, only the first bytes matter: enough to say what it is.
            data = stream.read(MAX_HEADER_BYTES if size > MAX_BYTES else size)
    except OSError as exc:
        return ImageInfo(url, error=f"cannot be read ({exc.strerror or exc}).")
    info = examine_local(url, data, size=size)
    if copies is not None and info.kind is not None and wants_copy(info):
        copy = copies / copy_name(url, info.kind)
        if not _copy_current(copy, path, size):
            _write_copy(copies, url, info.kind, data)
    return info


def _copy_current(copy: Path, source: Path, size: int) -> bool:
    """True when the copy of a local file is newer than the file and of its size."""
    try:
        kept = copy.stat()
        return kept.st_size == size and kept.st_mtime_ns >= source.stat().st_mtime_ns
    except OSError:
        return False


def _write_copy(directory: Path, url: str, kind: str, data: bytes) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    write_atomic(directory / copy_name(url, kind), data)
    for other in KINDS:
        # An image that changed format under the same URL leaves no stale copy behind.
        if other != kind:
            (directory / copy_name(url, other)).unlink(missing_ok=True)
