"""Serving a fixed byte string the way a CDN does: ETag, conditional GET, one byte range.

Pure: given the blob and the request's method and headers, say what to
answer. Browsers' ``<video>`` elements ask for ranges, and pre-flight checks
use HEAD, so both must work for the demo to behave like the real thing.

Three ways a server can get a whole-file answer wrong, each of which a client
must not take for a good file (``short_length``, ``no_length``, ``gzipped``):
fewer bytes than the file has, framed as if they were all of it; part of the
file with no ``Content-Length`` at all; the file gzip-compressed, whatever the
request's ``Accept-Encoding`` said.
"""

from __future__ import annotations

import gzip
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from email.utils import formatdate

__all__ = ["Answer", "Blob", "answer", "gzipped", "no_length", "parse_range_header", "short_length"]


@dataclass(frozen=True)
class Blob:
    """Bytes with the validators a CDN would attach."""

    data: bytes
    content_type: str
    etag: str
    last_modified: str

    @classmethod
    def of(cls, data: bytes, content_type: str, modified: float) -> Blob:
        """A blob whose ETag is derived from its bytes."""
        etag = '"' + hashlib.sha256(data).hexdigest()[:20] + '"'
        return cls(data, content_type, etag, formatdate(modified, usegmt=True))


@dataclass(frozen=True)
class Answer:
    """What to send: status, headers and body; ``chunked``: without ``Content-Length``."""

    status: int
    headers: dict[str, str]
    body: bytes
    chunked: bool = False


def parse_range_header(value: str, size: int) -> tuple[int, int] | str | None:
    """The inclusive byte range a ``Range`` header asks for.

    None when the header should be ignored (not bytes, several ranges,
    malformed: RFC 9110 lets a server answer 200 then); ``"unsatisfiable"``
    when it starts beyond the end.
    """
    unit, _, spec = value.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None
    first, sep, last = spec.strip().partition("-")
    if not sep:
        return None
    try:
        if first == "":
            suffix = int(last)
            if suffix <= 0:
                return "unsatisfiable"
            return (max(size - suffix, 0), size - 1) if size else "unsatisfiable"
        start = int(first)
        end = int(last) if last else size - 1
    except ValueError:
        return None
    if start >= size:
        return "unsatisfiable"
    if start < 0 or end < start:
        return None
    return (start, min(end, size - 1))


def _matches(header: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in header.split(",")]
    return "*" in tags or etag in tags


def answer(blob: Blob, headers: Mapping[str, str]) -> Answer:
    """The answer to a GET (or HEAD: the server drops the body) for ``blob``."""
    size = len(blob.data)
    base = {
        "content-type": blob.content_type,
        "etag": blob.etag,
        "last-modified": blob.last_modified,
        "accept-ranges": "bytes",
        "cache-control": "public, max-age=86400",
    }
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None and _matches(if_none_match, blob.etag):
        del base["content-type"]
        return Answer(304, base, b"")
    range_header = headers.get("range")
    if_range = headers.get("if-range")
    if range_header is not None and (if_range is None or if_range.strip() == blob.etag):
        wanted = parse_range_header(range_header, size)
        if wanted == "unsatisfiable":
            base["content-range"] = f"bytes */{size}"
            return Answer(416, base, b"")
        if isinstance(wanted, tuple):
            start, end = wanted
            base["content-range"] = f"bytes {start}-{end}/{size}"
            return Answer(206, base, blob.data[start : end + 1])
    return Answer(200, base, blob.data)


def short_length(ans: Answer) -> Answer:
    """Two thirds of the body, with a ``Content-Length`` that says that is all there is."""
    kept = len(ans.body) * 2 // 3
    return replace(ans, headers={**ans.headers, "content-length": str(kept)}, body=ans.body[:kept])


def no_length(ans: Answer) -> Answer:
    """Half the body, without ``Content-Length``: an ending nothing in the answer contradicts."""
    headers = {k: v for k, v in ans.headers.items() if k != "content-length"}
    return replace(ans, headers=headers, body=ans.body[: len(ans.body) // 2], chunked=True)


def gzipped(ans: Answer) -> Answer:
    """The body gzip-compressed, with ``Content-Encoding: gzip``."""
    body = gzip.compress(ans.body, mtime=0)
    headers = {**ans.headers, "content-encoding": "gzip", "content-length": str(len(body))}
    return replace(ans, headers=headers, body=body)
