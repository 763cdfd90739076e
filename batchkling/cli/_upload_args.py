"""The upload options every manifest command shares, and the uploader they make for a run.

``add_upload_options`` adds ``--upload-to URL`` (``args.upload_to``),
``--upload-public-url URL`` (``args.upload_public_url``) and ``--upload-expires S``
(``args.upload_expires``). ``uploader_from`` checks the environment (here, in
the CLI, where the environment is read) and opens the store, for the commands
that upload: ``run`` and ``upload``. ``check`` and ``plan`` never upload.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from batchkling._util import plural, thousands
from batchkling.cli._types import positive_seconds
from batchkling.errors import StorageSetupError

if TYPE_CHECKING:
    from tqdm import tqdm

    from batchkling.model import Manifest
    from batchkling.storage.prepare import Uploader
    from batchkling.storage.store import Store
    from batchkling.storage.upload import UploadEvent, UploadSummary

__all__ = [
    "SECRET_VARIABLES",
    "add_upload_options",
    "progress_line",
    "summary_line",
    "uploader_from",
]

_DEFAULT_EXPIRES_S = 24 * 3600
# Variables whose values are secrets: removed from any message a store sends back.
SECRET_VARIABLES = (
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_KEY",
    "AZURE_CLIENT_SECRET",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
)


def add_upload_options(parser: argparse.ArgumentParser) -> None:
    """Add --upload-to, --upload-public-url and --upload-expires."""
    parser.add_argument(
        "--upload-to",
        metavar="URL",
        help="where local images are uploaded: s3://BUCKET/PREFIX/, gs://... or az://... "
        "(overrides the manifest's upload_to)",
    )
    parser.add_argument(
        "--upload-public-url",
        metavar="URL",
        help="a public base URL serving the bucket's root: the API gets it plus the object "
        "key instead of a signed URL (overrides upload_public_url)",
    )
    parser.add_argument(
        "--upload-expires",
        type=_expires,
        default=_DEFAULT_EXPIRES_S,
        metavar="S",
        help="how long a signed image URL stays valid, seconds (default 86400: 24 h; 60 to 604800)",
    )


def _expires(text: str) -> float:
    """``--upload-expires S``: seconds, at least 60 and at most 7 days (what S3 and GCS sign)."""
    from batchkling.storage.location import parse_expires

    seconds = positive_seconds(text)
    try:
        parse_expires(seconds)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return seconds


def uploader_from(
    args: argparse.Namespace,
    manifest: Manifest,
    *,
    say: Callable[[str], None] | None = None,
    each: bool = False,
    bar: TextIO | None = None,
) -> Uploader | None:
    """The uploader of a manifest with local images (None without); may raise ``StorageSetupError``.

    The environment is read here, but only once an upload is due (a resumed run
    whose jobs were all sent needs no credentials): with no credentials, one line
    naming the variables (exit 2), before any request to the store or any create.
    ``say`` hears the summary and every retry, and every image too with ``each``,
    unless ``bar`` (a terminal) gets a progress bar of the images instead.
    """
    if not manifest.has_local_images or manifest.upload_to is None:
        return None
    from batchkling.storage.credentials import missing_credentials, uses_aws_profile
    from batchkling.storage.location import parse_expires, parse_location
    from batchkling.storage.prepare import Uploader
    from batchkling.storage.store import open_store
    from batchkling.storage.upload import UploadSettings

    location = parse_location(manifest.upload_to)
    expires = parse_expires(args.upload_expires)  # checked already, as the option was read

    def opened() -> Store:
        names = {name for name, value in os.environ.items() if value}
        credential_file = _credential_file(location.scheme)
        problem = missing_credentials(location.scheme, names, credential_file=credential_file)
        if problem is not None:
            raise StorageSetupError(problem + ".")
        aws_profile = location.scheme == "s3" and uses_aws_profile(
            names, credentials_file=credential_file
        )
        return open_store(location, aws_profile=aws_profile)

    settings = UploadSettings(
        location=location,
        public_url=manifest.upload_public_url,
        expires=expires,
        secrets=tuple(os.environ[v] for v in SECRET_VARIABLES if os.environ.get(v)),
    )
    if say is None:
        return Uploader(open_store=opened, settings=settings)

    shown = _Shown(say, each=each, bar=bar)
    return Uploader(open_store=opened, settings=settings, progress=shown.event, report=shown.end)


class _Shown:
    """What a command shows of the uploads: a bar on a terminal, else lines; the summary."""

    def __init__(self, say: Callable[[str], None], *, each: bool, bar: TextIO | None) -> None:
        self.say = say
        self.each = each
        self.stream = bar
        self.bar: tqdm[None] | None = None

    def event(self, event: UploadEvent) -> None:
        if event.kind == "retry":
            self.say(progress_line(event))
        elif self.stream is not None:
            if self.bar is None:
                from tqdm import tqdm  # here: building a parser loads none of it

                self.bar = tqdm(
                    total=event.total, unit="image", desc="uploading", file=self.stream, leave=False
                )
            self.bar.update(1)
        elif self.each:
            self.say(progress_line(event))

    def end(self, summary: UploadSummary) -> None:
        if self.bar is not None:
            self.bar.close()
        self.say(summary_line(summary))


def _credential_file(scheme: str) -> bool:
    """Whether the store's standard credentials file is there (only its presence is looked at)."""
    home = Path(os.environ.get("HOME") or Path.home())
    if scheme == "s3":
        shared = os.environ.get("AWS_SHARED_CREDENTIALS_FILE")
        return Path(shared).is_file() if shared else (home / ".aws" / "credentials").is_file()
    if scheme == "gs":
        config = os.environ.get("CLOUDSDK_CONFIG")
        base = Path(config) if config else home / ".config" / "gcloud"
        return (base / "application_default_credentials.json").is_file()
    return False


def summary_line(summary: UploadSummary) -> str:
    """One line saying what the uploads did: ``local images: 3 uploaded (2.1 MB), ...``."""
    sent = summary.bytes_uploaded
    size = f"{sent / 1e6:.1f} MB" if sent >= 100_000 else f"{thousands(sent)} bytes"
    parts = [f"{len(summary.uploaded)} uploaded ({size})"]
    if summary.found:
        parts.append(f"{len(summary.found)} already in the store")
    if summary.reused:
        parts.append(f"{len(summary.reused)} with their URL reused")
    if summary.signed:
        parts.append(f"{len(summary.signed)} signed again")
    line = f"local images: {plural(len(summary.urls), 'image')}: " + ", ".join(parts)
    if summary.changed:
        line += "; changed since their last upload: " + ", ".join(summary.changed)
    return line


def progress_line(event: UploadEvent) -> str:
    """One progress line of an upload (``retry`` events say which file is tried again)."""
    if event.kind == "retry":
        return f"uploading {event.path}: the store failed; trying again"
    return f"[{event.done}/{event.total}] {event.kind}: {event.path}"
