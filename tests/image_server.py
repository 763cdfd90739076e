"""A loopback image host for tests: named resources with scripted behaviour, every request logged.

``ImageHost`` is a plain ASGI app; ``serve`` runs it with uvicorn in a thread on a
free port. Each ``Resource`` says how its path answers: status, type, validators,
whether it honours ``Range`` and ``HEAD``, and how slowly it answers. The query
string is ignored, so ``/a.png?1`` and ``/a.png?2`` are distinct URLs for one file.
"""

from __future__ import annotations

import hashlib
import re
import socket
import struct
import threading
import time
import zlib
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

import anyio
import uvicorn

__all__ = [
    "LAST_MODIFIED",
    "ImageHost",
    "Resource",
    "Seen",
    "jpeg",
    "png",
    "png_header",
    "serve",
    "webp",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

LAST_MODIFIED = "Wed, 01 Jan 2025 00:00:00 GMT"
_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, *, noise: int = 0) -> bytes:
    """A valid greyscale PNG; ``noise`` incompressible bytes make the file that much larger."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    raw = b"".join(b"\x00" + bytes(width) for _ in range(height))
    chunks = [_chunk(b"IHDR", header)]
    if noise:
        # A private ancillary chunk: decoders skip it, the file grows by its size.
        chunks.append(_chunk(b"zzZz", hashlib.shake_256(b"noise").digest(noise)))
    chunks += [_chunk(b"IDAT", zlib.compress(raw, 9)), _chunk(b"IEND", b"")]
    return b"\x89PNG\r\n\x1a\n" + b"".join(chunks)


def png_header(width: int, height: int) -> bytes:
    """The signature and IHDR chunk of a PNG: all a header reader needs."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)


def jpeg(width: int, height: int, *, padding: int = 0) -> bytes:
    """A baseline JPEG header (SOI, APP0, optional comment segments, SOF0, SOS, EOI).

    No scan data: enough for any header reader. ``padding`` bytes of comment
    segments before the frame header push the dimensions that far into the file.
    """
    out = (
        b"\xff\xd8"
        + b"\xff\xe0"
        + struct.pack(">H", 16)
        + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    )
    while padding > 0:
        size = min(padding, 65533)
        out += b"\xff\xfe" + struct.pack(">H", size + 2) + b"c" * size
        padding -= size
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x11\x00\x02\x11\x00\x03\x11\x00"
    out += b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof
    sos = b"\x03\x01\x00\x02\x11\x03\x11\x00\x3f\x00"
    return out + b"\xff\xda" + struct.pack(">H", len(sos) + 2) + sos + b"\xff\xd9"


def webp(width: int, height: int) -> bytes:
    """An extended-format (VP8X) WebP header carrying the canvas size."""
    vp8x = (
        b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    )
    chunk = b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", 4 + len(chunk)) + b"WEBP" + chunk


@dataclass
class Resource:
    """How one path answers."""

    body: bytes = b""
    content_type: str | None = "image/png"
    status: int = 200
    validators: bool = True  # send ETag and Last-Modified, answer 304 to a match
    ranges: bool = True  # honour Range with 206
    head: bool = True  # answer HEAD (else 405)
    delay: float = 0.0  # before the status line
    pause: float = 0.0  # between body pieces
    piece: int = 16 * 1024
    length: int | None = None  # claimed size: ``body`` then zeros up to it, made on demand
    total_known: bool = True  # else a 206 says ``bytes a-b/*``

    @property
    def size(self) -> int:
        return self.length if self.length is not None else len(self.body)

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + f'-{self.size}"'

    def bytes_between(self, start: int, end: int) -> bytes:
        part = self.body[start:end]
        return part + bytes(max(0, min(end, self.size) - max(start, len(self.body))))


@dataclass
class Seen:
    """One request as the host saw it."""

    method: str
    path: str
    headers: dict[str, str]
    status: int = 0
    sent: int = 0  # body bytes handed to the server


@dataclass
class ImageHost:
    """The ASGI app: serves ``resources`` by path and logs every request in ``seen``."""

    resources: dict[str, Resource] = field(default_factory=dict)
    seen: list[Seen] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    base: str = ""

    def url(self, name: str) -> str:
        return f"{self.base}/{name}"

    def reset(self) -> None:
        self.resources.clear()
        self.seen.clear()
        self.in_flight = self.max_in_flight = 0

    def requests(self, name: str | None = None) -> list[Seen]:
        return [s for s in self.seen if name is None or s.path == name]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        path = scope["path"].lstrip("/")
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        seen = Seen(scope["method"], path, headers)
        self.seen.append(seen)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            async with anyio.create_task_group() as group:

                async def watch() -> None:
                    # A client that goes away ends the answer, as a real server would.
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    group.cancel_scope.cancel()

                group.start_soon(watch)
                await self._answer(self.resources.get(path), seen, send)
                group.cancel_scope.cancel()
        finally:
            self.in_flight -= 1

    async def _answer(self, res: Resource | None, seen: Seen, send: Send) -> None:
        if res is None:
            await self._plain(seen, send, 404, b"no such file")
            return
        if res.delay:
            await anyio.sleep(res.delay)
        if seen.method == "HEAD" and not res.head:
            await self._plain(seen, send, 405, b"", [("allow", "GET")])
            return
        if res.status != 200:
            await self._plain(seen, send, res.status, res.body or b"error")
            return
        headers: list[tuple[str, str]] = []
        if res.content_type is not None:
            headers.append(("content-type", res.content_type))
        if res.validators:
            headers += [("etag", res.etag), ("last-modified", LAST_MODIFIED)]
            if _not_modified(seen.headers, res):
                await self._start(seen, send, 304, headers)
                await send({"type": "http.response.body", "body": b""})
                return
        start, end, status = 0, res.size, 200
        wanted = _RANGE.match(seen.headers.get("range", ""))
        if res.ranges and wanted:
            start = int(wanted.group(1))
            end = min(res.size, int(wanted.group(2)) + 1 if wanted.group(2) else res.size)
            status = 206
            total = str(res.size) if res.total_known else "*"
            headers.append(("content-range", f"bytes {start}-{end - 1}/{total}"))
        headers.append(("content-length", str(end - start)))
        await self._start(seen, send, status, headers)
        if seen.method == "HEAD":
            await send({"type": "http.response.body", "body": b""})
            return
        for at in range(start, end, res.piece):
            piece = res.bytes_between(at, min(end, at + res.piece))
            seen.sent += len(piece)
            await send({"type": "http.response.body", "body": piece, "more_body": True})
            if res.pause:
                await anyio.sleep(res.pause)
        await send({"type": "http.response.body", "body": b""})

    @staticmethod
    async def _start(seen: Seen, send: Send, status: int, headers: list[tuple[str, str]]) -> None:
        seen.status = status
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        await send({"type": "http.response.start", "status": status, "headers": raw})

    async def _plain(
        self,
        seen: Seen,
        send: Send,
        status: int,
        body: bytes,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        headers = [("content-type", "text/plain"), ("content-length", str(len(body)))]
        await self._start(seen, send, status, headers + (extra or []))
        if seen.method == "HEAD":
            body = b""
        seen.sent += len(body)
        await send({"type": "http.response.body", "body": body})


def _not_modified(headers: dict[str, str], res: Resource) -> bool:
    if "if-none-match" in headers:
        return res.etag in [tag.strip() for tag in headers["if-none-match"].split(",")]
    if "if-modified-since" in headers:
        try:
            since = parsedate_to_datetime(headers["if-modified-since"])
        except (TypeError, ValueError):
            return False
        return parsedate_to_datetime(LAST_MODIFIED) <= since
    return False


@contextmanager
def serve(host: ImageHost) -> Iterator[ImageHost]:
    """Run ``host`` on a free loopback port for the duration of the block."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(
        host,
        lifespan="off",
        log_level="warning",
        access_log=False,
        http="h11",
        ws="none",
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the image host did not start")
        time.sleep(0.005)
    host.base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    try:
        yield host
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
