"""The upload step of a run, and of ``batchkling upload``: the manifest's local images made URLs.

``prepare_images`` uploads the local files of the given jobs (all of them by
default) and returns the manifest with each such image replaced by the URL the
API gets, together with what was done. A manifest without local images comes
back as it is, with no request made.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import httpx

from batchkling.api.client import make_http_client
from batchkling.errors import StorageSetupError
from batchkling.model import Job, Manifest
from batchkling.storage.images import local_images, shots_of, with_urls
from batchkling.storage.store import Store
from batchkling.storage.upload import (
    LocalImage,
    UploadEvent,
    UploadSettings,
    UploadSummary,
    upload_images,
)

__all__ = ["Uploader", "prepare_images"]


@dataclass
class Uploader:
    """The store, the upload settings, and who hears about progress and the outcome.

    ``store`` is opened (and the credentials looked for) only when something is to be
    uploaded: a resumed run whose jobs are all sent needs no credentials.
    """

    open_store: Callable[[], Store]
    settings: UploadSettings
    progress: Callable[[UploadEvent], None] | None = None
    report: Callable[[UploadSummary], None] | None = None
    _store: Store | None = None

    @property
    def store(self) -> Store:
        """The open store (opened on first use; raises ``StorageSetupError``)."""
        if self._store is None:
            self._store = self.open_store()
        return self._store


async def prepare_images(
    manifest: Manifest,
    uploader: Uploader | None,
    *,
    run_dir: Path | None,
    jobs: Iterable[Job] | None = None,
    http: httpx.AsyncClient | None = None,
) -> tuple[Manifest, UploadSummary | None]:
    """Upload the local images of ``jobs`` (default: every job); the manifest with their URLs.

    Raises ``StorageSetupError`` when there are local images and no ``uploader``,
    ``UploadError`` when the store fails or a URL does not answer.
    """
    chosen = manifest.jobs if jobs is None else tuple(jobs)
    images = local_images(shots_of(chosen))
    if not images:
        return manifest, None
    if uploader is None:
        raise StorageSetupError(
            f"{manifest.path} names {len(images)} local image files but no upload_to "
            "says where to put them for the API to fetch.",
            hint="Add upload_to: s3://BUCKET/PREFIX/ to the manifest or pass --upload-to.",
        )
    uploader.store  # noqa: B018 - opened before anything else is asked: a setup error first
    if http is None:
        async with make_http_client() as own:
            summary = await _upload(images, uploader, run_dir, own)
    else:
        summary = await _upload(images, uploader, run_dir, http)
    if uploader.report is not None:
        uploader.report(summary)
    return with_urls(manifest, summary.urls), summary


async def _upload(
    images: list[LocalImage], uploader: Uploader, run_dir: Path | None, http: httpx.AsyncClient
) -> UploadSummary:
    return await upload_images(
        images,
        uploader.store,
        uploader.settings,
        http=http,
        run_dir=run_dir,
        progress=uploader.progress,
    )
