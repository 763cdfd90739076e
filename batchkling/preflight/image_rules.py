"""Whether Kling 3.0 can take an input image, judged from an HTTP answer and its first bytes.

Pure: no I/O. ``batchkling.preflight.image_fetch`` fetches the answers; everything it
decides comes from here, so every rule is tested without a socket.

Kling's documented input limits: a JPEG, PNG or WebP file of at most 10 MB, at
least 300 px on each side, with an aspect ratio between 1:2.5 and 2.5:1. Width
and height come from the file header, read by the ``imagesize`` library from a
prefix of the file; the signature (the first bytes) decides the format, whatever
the ``Content-Type`` says.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, fields, replace
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote, urlsplit

from batchkling.errors import Problem
from batchkling.model import Manifest, Shot

__all__ = [
    "EXTENSIONS",
    "GENERIC_TYPES",
    "KINDS",
    "MAX_ASPECT",
    "MAX_BYTES",
    "MAX_HEADER_BYTES",
    "MIN_SHORT_SIDE",
    "PROBE_SIZES",
    "SNIFF_BYTES",
    "TAIL_ASPECT_TOLERANCE",
    "ImageInfo",
    "answer_problem",
    "aspect_ok",
    "conditional_headers",
    "copy_name",
    "dimension_problems",
    "distinct_urls",
    "examine",
    "examine_local",
    "failure_message",
    "media_type",
    "problems_for",
    "read_dimensions",
    "sniff",
    "tail_aspect_warning",
    "timeout_message",
    "total_size",
    "updated_cache",
    "wants_copy",
    "wants_more",
]

# "10 MB" is read as 10,000,000 bytes, the stricter of its two readings: a task
# refused for its input may still be charged, so pre-flight errs on the safe side.
MAX_BYTES = 10_000_000
MIN_SHORT_SIDE = 300
# 2.5 as a fraction (long side : short side <= 5 : 2), so the bound is exact in integers.
MAX_ASPECT = (5, 2)
# Start and tail frames whose aspect ratios differ by more than this (relative) get a warning.
TAIL_ASPECT_TOLERANCE = 0.02
# How much of a file is asked for, round after round, until its header can be read.
# Headers sit in the first few hundred bytes except in JPEGs carrying large EXIF, ICC
# or XMP segments before the frame header; 1 MiB covers those.
PROBE_SIZES = (32 * 1024, 256 * 1024, 1024 * 1024)
MAX_HEADER_BYTES = PROBE_SIZES[-1]
# Enough bytes to tell JPEG, PNG and WebP (``RIFF....WEBP``) apart.
SNIFF_BYTES = 16
KINDS = ("jpeg", "png", "webp")
EXTENSIONS = {"jpeg": ".jpg", "png": ".png", "webp": ".webp"}
# Object stores serve uploads without a declared type as one of these; the file is
# accepted when its signature is an image, with a warning to set the real type.
GENERIC_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})

# Formats Kling does not take, named so the message says what the file is.
_OTHER_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"BM", "a BMP image"),
    (b"II*\x00", "a TIFF image"),
    (b"MM\x00*", "a TIFF image"),
    (b"%PDF", "a PDF document"),
)


@dataclass(frozen=True)
class ImageInfo:
    """What pre-flight learnt about one image URL; ``error`` is None when Kling can take it."""

    url: str
    status: int | None = None
    content_type: str | None = None
    size: int | None = None
    width: int | None = None
    height: int | None = None
    kind: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    error: str | None = None
    warning: str | None = None

    @property
    def ok(self) -> bool:
        """True when Kling can take the image (warnings aside)."""
        return self.error is None

    @property
    def revalidatable(self) -> bool:
        """True when a later check can ask the host whether this answer still holds."""
        answered = self.status is not None and 200 <= self.status < 300
        return answered and (self.etag is not None or self.last_modified is not None)

    def to_json(self) -> dict[str, Any]:
        """The info as the cache file stores it; ``from_json`` reads it back."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> ImageInfo | None:
        """The info stored by ``to_json``; None for anything else (a damaged cache is ignored)."""
        if not isinstance(data, dict) or not isinstance(data.get("url"), str):
            return None
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in data.items() if k in known})
        except TypeError:
            return None


def sniff(prefix: bytes | bytearray) -> str | None:
    """The image kind that the first bytes prove (``jpeg``, ``png``, ``webp``), else None."""
    if prefix.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if prefix.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if len(prefix) >= 12 and prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP":
        return "webp"
    return None


def _describe(prefix: bytes) -> str:
    for signature, name in _OTHER_SIGNATURES:
        if prefix.startswith(signature):
            return f"it is {name}"
    if len(prefix) >= 12 and prefix[4:8] == b"ftyp":
        return "it is a HEIF/AVIF image"
    head = prefix[:512].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "it is an HTML page"
    if head.startswith((b"<?xml", b"<svg")):
        return "it is XML or SVG"
    if not prefix:
        return "the answer has no body"
    return "its first bytes match no image format"


def read_dimensions(prefix: bytes | bytearray) -> tuple[int, int] | None:
    """Width and height as displayed (EXIF rotation applied), or None if the prefix lacks them.

    ``imagesize`` answers (-1, -1) both for a prefix cut before the header ends and
    for a damaged header; the caller knows which by whether it holds the whole file.
    """
    import imagesize  # here: the report reads these rules and never an image header

    width, height = imagesize.get(io.BytesIO(bytes(prefix)))
    if int(width) <= 0 or int(height) <= 0:
        return None
    return int(width), int(height)


def media_type(content_type: str | None) -> str | None:
    """The bare media type of a ``Content-Type`` header, lower-cased, without parameters."""
    if content_type is None:
        return None
    bare = content_type.split(";", 1)[0].strip().lower()
    return bare or None


def total_size(status: int, content_length: str | None, content_range: str | None) -> int | None:
    """The file's full size: the total of a 206's ``Content-Range``, else a 200's length."""
    if status == 206 and content_range:
        total = content_range.rsplit("/", 1)[-1].strip()
        return int(total) if total.isdigit() else None
    if 200 <= status < 300 and status != 206 and content_length and content_length.isdigit():
        return int(content_length)
    return None


def _megabytes(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"


def answer_problem(status: int, content_type: str | None, size: int | None) -> str | None:
    """What the status line and headers alone rule out (so no body need be read)."""
    if not 200 <= status < 300:
        try:
            phrase = " " + HTTPStatus(status).phrase
        except ValueError:
            phrase = ""
        return (
            f"answered HTTP {status}{phrase}; check that the URL is right"
            " and that the image is public."
        )
    kind = media_type(content_type)
    if kind is not None and not kind.startswith("image/") and kind not in GENERIC_TYPES:
        return (
            f"answered with content type {kind}, not an image; link to the image file"
            " itself, not to a page that shows it."
        )
    if size is not None and size > MAX_BYTES:
        return f"is {_megabytes(size)}; Kling accepts at most 10 MB, so save it smaller."
    return None


def aspect_ok(width: int, height: int) -> bool:
    """True when the aspect ratio lies between 1:2.5 and 2.5:1, bounds included."""
    longer, shorter = max(width, height), min(width, height)
    num, den = MAX_ASPECT
    return longer * den <= shorter * num


def _ratio(width: int, height: int) -> str:
    return f"{width / height:.2f}:1" if width >= height else f"1:{height / width:.2f}"


def dimension_problems(width: int, height: int) -> list[str]:
    """Every size rule the width and height break, each as a clause."""
    found = []
    if min(width, height) < MIN_SHORT_SIDE:
        found.append("Kling needs at least 300 px on each side")
    if not aspect_ok(width, height):
        found.append(
            f"its aspect ratio {_ratio(width, height)} is outside the 1:2.5 to 2.5:1"
            " Kling accepts (crop it)"
        )
    return found


def examine(
    url: str,
    *,
    status: int,
    content_type: str | None,
    size: int | None,
    prefix: bytes,
    complete: bool,
    etag: str | None = None,
    last_modified: str | None = None,
) -> ImageInfo:
    """Judge one answer: its status, headers and the first bytes of its body.

    ``complete`` says ``prefix`` is the whole file, which turns an unreadable header
    into a damaged file rather than one whose header lies further in.
    """
    if complete and size is None:
        size = len(prefix)
    base = ImageInfo(
        url=url,
        status=status,
        content_type=content_type,
        size=size,
        etag=etag,
        last_modified=last_modified,
    )
    problem = answer_problem(status, content_type, size)
    if problem is not None:
        return replace(base, error=problem)
    kind = sniff(prefix)
    if kind is None:
        return replace(
            base,
            error=f"is not a JPEG, PNG or WebP file ({_describe(prefix)}); "
            "convert it to one of these.",
        )
    dimensions = read_dimensions(prefix)
    if dimensions is None:
        return replace(base, kind=kind, error=_unreadable_header(kind, len(prefix), complete))
    width, height = dimensions
    found = dimension_problems(width, height)
    return replace(
        base,
        kind=kind,
        width=width,
        height=height,
        error=f"is {width}x{height} px: " + " and ".join(found) + "." if found else None,
        warning=_type_warning(content_type, kind),
    )


def examine_local(url: str, data: bytes, *, size: int) -> ImageInfo:
    """Judge a local file (``url`` its ``file:`` URL) by the same rules as a fetched image.

    ``data`` is the whole file, or its first bytes when ``size`` (the file's size)
    is already over the limit. Its type is what its signature proves, so no
    content-type warning applies.
    """
    kind = sniff(data)
    declared = f"image/{kind}" if kind is not None else None
    return examine(
        url, status=200, content_type=declared, size=size, prefix=data, complete=len(data) >= size
    )


def _unreadable_header(kind: str, read: int, complete: bool) -> str:
    """The error of an image whose width and height are not in the ``read`` bytes."""
    name = kind.upper() if kind != "webp" else "WebP"
    if complete:
        return f"is a damaged {name} file: its width and height cannot be read."
    return (
        f"is a {name} file whose width and height are not in its first {read}"
        f" bytes; save it again as a plain {name}."
    )


def _type_warning(content_type: str | None, kind: str) -> str | None:
    """A warning for an image served without an image type (which Kling may not read)."""
    declared = media_type(content_type)
    if declared is not None and declared not in GENERIC_TYPES:
        return None
    return (
        f"is served as {declared or 'no content type'} rather than an image type;"
        f" set the host's Content-Type to image/{kind} so Kling is sure to read it."
    )


def timeout_message(seconds: float) -> str:
    """The error of a host that did not answer in time."""
    return f"timed out after {seconds:g}s; the image host is too slow or unreachable."


def failure_message(exc: Exception) -> str:
    """The error of a request that failed before an answer (refused, reset, bad URL)."""
    detail = str(exc) or type(exc).__name__
    return f"could not be fetched ({detail}); check the URL and that its host is reachable."


def tail_aspect_warning(start: ImageInfo, tail: ImageInfo) -> str | None:
    """A warning when the tail frame's aspect ratio differs from the start frame's."""
    if start.width is None or start.height is None or tail.width is None or tail.height is None:
        return None
    start_ratio = start.width / start.height
    tail_ratio = tail.width / tail.height
    # Comparing logarithms makes the test symmetric: swapping the frames changes nothing.
    if abs(math.log(tail_ratio / start_ratio)) <= math.log1p(TAIL_ASPECT_TOLERANCE):
        return None
    return (
        f"the tail image is {tail.width}x{tail.height} ({_ratio(tail.width, tail.height)})"
        f" but the start image is {start.width}x{start.height}"
        f" ({_ratio(start.width, start.height)}); Kling expects both frames to share one"
        " composition."
    )


def distinct_urls(shots: Iterable[Shot]) -> list[str]:
    """Every start and tail image URL once, in manifest order."""
    seen: dict[str, None] = {}
    for shot in shots:
        # A chained frame not extracted yet has no URL to check: it comes from a video.
        if shot.after is None:
            seen.setdefault(shot.image, None)
        if shot.tail_image_url is not None and shot.before is None:
            seen.setdefault(shot.tail_image_url, None)
    return list(seen)


def conditional_headers(info: ImageInfo) -> dict[str, str]:
    """The headers that ask the host to answer 304 if the image is unchanged."""
    headers = {}
    if info.etag is not None:
        headers["If-None-Match"] = info.etag
    if info.last_modified is not None:
        headers["If-Modified-Since"] = info.last_modified
    return headers


def wants_copy(info: ImageInfo) -> bool:
    """True when the answer was an image small enough to keep a local copy of."""
    answered = info.status is not None and 200 <= info.status < 300
    small = info.size is None or info.size <= MAX_BYTES
    return answered and info.kind is not None and small


def wants_more(prefix: bytes, *, complete: bool, asked: int) -> bool:
    """True when a ranged answer of ``asked`` bytes holds an image whose header lies further in."""
    if complete or len(prefix) < asked or asked >= MAX_HEADER_BYTES:
        return False
    return sniff(prefix) is not None and read_dimensions(prefix) is None


def updated_cache(
    cache: Mapping[str, ImageInfo], results: Mapping[str, ImageInfo]
) -> dict[str, ImageInfo]:
    """The cache after a check.

    A fresh answer with a validator replaces the entry; any other HTTP answer (a 404,
    a page without validators) drops it; no answer at all (a timeout, a refused
    connection) keeps it, since the host may still hold the same image.
    """
    out = dict(cache)
    for url, info in results.items():
        if info.revalidatable:
            out[url] = info
        elif info.status is not None:
            out.pop(url, None)
    return out


def copy_name(url: str, kind: str) -> str:
    """A local copy's file name: a hash of the URL (path-safe) and the format's extension."""
    return hashlib.sha256(url.encode("utf-8")).hexdigest()[:16] + EXTENSIONS[kind]


def _shown(url: str) -> str:
    """How a problem names an image: a local file by its path, any other by its URL."""
    if url.startswith("file:"):
        return unquote(urlsplit(url).path)
    return url


def problems_for(
    source: Manifest | Iterable[Shot],
    infos: Mapping[str, ImageInfo],
    *,
    file: str | None = None,
) -> list[Problem]:
    """One Problem per shot and field whose image is bad, plus warnings, in manifest order.

    URLs missing from ``infos`` were not checked and give nothing.
    """
    if isinstance(source, Manifest):
        shots: Iterable[Shot] = source.shots
        file = file if file is not None else source.path
    else:
        shots = source
    where = file if file is not None else "manifest"
    found: list[Problem] = []
    for shot in shots:
        start = infos.get(shot.image)
        tail = infos.get(shot.tail_image_url) if shot.tail_image_url is not None else None
        for field, info in (("image", start), ("tail_image_url", tail)):
            if info is None:
                continue
            shown = _shown(info.url)
            if info.error is not None:
                found.append(Problem(where, shot.line, shot.id, field, f"{shown} {info.error}"))
            elif info.warning is not None:
                message = f"{shown} {info.warning}"
                found.append(Problem(where, shot.line, shot.id, field, message, warning=True))
        if start is not None and tail is not None and start.ok and tail.ok:
            warning = tail_aspect_warning(start, tail)
            if warning is not None:
                found.append(
                    Problem(where, shot.line, shot.id, "tail_image_url", warning, warning=True)
                )
    return found
