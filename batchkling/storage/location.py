"""Where local images go, as pure values: the ``upload_to`` location, object keys, public URLs.

``upload_to`` is ``s3://bucket/prefix/`` (AWS S3 and every S3-compatible store:
R2, MinIO, B2, Wasabi, through the standard endpoint setting), ``gs://bucket/prefix/``
or ``az://container/prefix/``. Objects are content-addressed:
``<prefix><first 16 hex digits of the sha256>/<file name>``, so the same frame used by
several shots is one object, and an edited frame is a new one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from urllib.parse import quote, urlsplit

__all__ = [
    "DEFAULT_EXPIRES",
    "MAX_EXPIRES",
    "SCHEMES",
    "StoreLocation",
    "object_key",
    "parse_expires",
    "parse_location",
    "parse_public_url",
    "public_url",
]

SCHEMES = ("s3", "gs", "az")
DEFAULT_EXPIRES = timedelta(hours=24)
# S3 (SigV4) and GCS (V4) signatures are valid for at most 7 days; Azure allows more,
# but one bound for every store keeps a manifest portable between them.
MAX_EXPIRES = timedelta(days=7)
_KEY_HEX = 16


@dataclass(frozen=True)
class StoreLocation:
    """A bucket (or container) and a key prefix: empty, or ending in ``/``."""

    scheme: str
    bucket: str
    prefix: str

    @property
    def store_url(self) -> str:
        """The bucket's URL, without the prefix (keys carry it)."""
        return f"{self.scheme}://{self.bucket}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}/{self.prefix}"


def parse_location(text: str) -> StoreLocation:
    """``upload_to`` as a location; raises ``ValueError`` with a message for the user."""
    try:
        parts = urlsplit(text.strip())
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid storage URL ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(
            f"{text!r} is not a storage location: use s3://bucket/prefix/ (S3, R2, MinIO, "
            "B2, Wasabi), gs://bucket/prefix/ or az://container/prefix/"
        )
    bucket = parts.netloc
    if not bucket or "@" in bucket or ":" in bucket:
        raise ValueError(f"{text!r} names no bucket: write {scheme}://BUCKET/prefix/")
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r} must not carry a query or a fragment")
    prefix = parts.path.strip("/")
    return StoreLocation(scheme, bucket, prefix + "/" if prefix else "")


def parse_public_url(text: str) -> str:
    """``upload_public_url`` as a directory URL (ending in ``/``); raises ``ValueError``."""
    try:
        parts = urlsplit(text.strip())
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{text!r} must be an absolute http or https URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{text!r} must not carry a query or a fragment")
    url = parts.geturl()
    return url if url.endswith("/") else url + "/"


def parse_expires(seconds: float) -> timedelta:
    """``--upload-expires`` as a duration: at least a minute, at most 7 days."""
    if not seconds >= 60:
        raise ValueError(f"must be at least 60 seconds, not {seconds:g}")
    if seconds > MAX_EXPIRES.total_seconds():
        raise ValueError(f"must be at most 7 days ({MAX_EXPIRES.total_seconds():g} s)")
    return timedelta(seconds=seconds)


def object_key(location: StoreLocation, sha256: str, file_name: str) -> str:
    """The object key of a file: ``<prefix><sha256 first 16 hex>/<file name>``."""
    return f"{location.prefix}{sha256[:_KEY_HEX]}/{file_name}"


def public_url(base: str, key: str) -> str:
    """The URL of an object under ``upload_public_url``: the base (the bucket's root), the key."""
    return base + quote(key, safe="/")
