"""One object store client for every cloud: obstore (Rust's object_store) behind a thin wrapper.

obstore is an optional dependency (``pip install 'batchkling[storage]'``): only a
manifest with local images needs it, and it is imported when one is uploaded.
Each store finds its credentials and endpoint in its standard environment
variables (``AWS_*``, ``GOOGLE_*``, ``AZURE_*``); obstore's own retries are off,
so that the project's one retry policy decides how often a request is tried.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from batchkling.errors import StorageSetupError
from batchkling.storage.location import StoreLocation

__all__ = [
    "EXTRA_HINT",
    "Store",
    "is_missing",
    "is_transient",
    "open_store",
    "short_message",
]

EXTRA_HINT = "Install it with: pip install 'batchkling[storage]'"


class Store:
    """An open bucket: head, put and sign, each one request (no retry of its own)."""

    def __init__(self, location: StoreLocation, raw: Any) -> None:
        self.location = location
        self.raw = raw

    async def size(self, key: str) -> int | None:
        """The size of the object at ``key``, or None when there is none."""
        import obstore

        try:
            meta = await obstore.head_async(self.raw, key)
        except FileNotFoundError:
            return None
        return int(meta["size"])

    async def put(self, key: str, data: bytes, content_type: str) -> None:
        """Store ``data`` at ``key`` (a content-addressed key: putting it twice is harmless)."""
        import obstore

        await obstore.put_async(
            self.raw, key, data, attributes={"Content-Type": content_type}, use_multipart=False
        )

    async def sign(self, key: str, expires: timedelta) -> str:
        """A presigned GET URL of ``key``, valid for ``expires``."""
        import obstore

        return await obstore.sign_async(self.raw, "GET", key, expires)


def open_store(location: StoreLocation, *, aws_profile: bool = False) -> Store:
    """A client of the bucket of ``location``; raises ``StorageSetupError`` when it cannot be made.

    ``aws_profile``: S3 credentials come from ``~/.aws`` (``AWS_PROFILE``), read
    through boto3, since object_store reads only variables.
    """
    try:
        from obstore.store import AzureStore, GCSStore, S3Store
    except ImportError:
        raise StorageSetupError(
            f"uploading local images to {location} needs the obstore library.", hint=EXTRA_HINT
        ) from None
    # Client options are left to the environment (``AWS_ALLOW_HTTP`` and the like):
    # passing any here would replace those the store reads from its variables.
    options: dict[str, Any] = {"retry_config": {"max_retries": 0}}
    try:
        if location.scheme == "s3":
            if aws_profile:
                options["credential_provider"] = _boto3_provider()
            raw: Any = S3Store(location.bucket, **options)
        elif location.scheme == "gs":
            raw = GCSStore(location.bucket, **options)
        else:
            raw = AzureStore(location.bucket, **options)
    except StorageSetupError:
        raise
    except Exception as exc:  # obstore's configuration errors: a bad region, a bad variable
        raise StorageSetupError(
            f"the store {location} cannot be opened: {short_message(exc)}",
            hint="Check its environment variables (region, endpoint, credentials).",
        ) from None
    return Store(location, raw)


def _boto3_provider() -> Any:
    try:
        import boto3
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError:
        raise StorageSetupError(
            "S3 credentials from a profile (AWS_PROFILE or ~/.aws/credentials) are read "
            "through boto3, which is not installed.",
            hint="Install it (pip install boto3), or set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY.",
        ) from None
    return Boto3CredentialProvider(boto3.session.Session())


def is_transient(exc: BaseException) -> bool:
    """True for a failure worth trying again: a connection, a timeout, a 5xx.

    Refused credentials, a missing bucket and a bad key are not: trying again
    changes nothing.
    """
    try:
        from obstore.exceptions import GenericError
    except ImportError:  # pragma: no cover - only reached with obstore installed
        return False
    if isinstance(exc, (FileNotFoundError, PermissionError)):
        return False
    return isinstance(exc, (GenericError, TimeoutError, ConnectionError))


def is_missing(exc: BaseException) -> bool:
    """True when the store answered that the bucket (or the object) does not exist."""
    return isinstance(exc, FileNotFoundError)


def short_message(exc: BaseException, secrets: tuple[str, ...] = ()) -> str:
    """The first line of a store error, without ``secrets`` (obstore adds a long debug dump)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0].strip()
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text.rstrip(".:") or type(exc).__name__
