"""From a manifest to the local files it names, and back to a manifest with their URLs. Pure.

A shot's local image is its ``file:`` URL with the file's sha256 beside it
(``Shot.image_sha256``); once uploaded, the shot's ``image`` becomes the URL the
API fetches, and its sha256 stays, so the job's fingerprint does not change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

from batchkling.model import Job, Manifest, Shot
from batchkling.storage.upload import LocalImage

__all__ = ["file_path", "local_images", "shots_of", "with_urls"]


def file_path(url: str) -> Path:
    """The path of a ``file:`` URL, as the manifest reader writes them (absolute)."""
    return Path(unquote(urlsplit(url).path))


def local_images(shots: Iterable[Shot]) -> list[LocalImage]:
    """Every distinct local file of ``shots``, in manifest order (start image, then tail)."""
    seen: dict[str, LocalImage] = {}
    for shot in shots:
        for url, sha in ((shot.image, shot.image_sha256), (shot.tail_image_url, shot.tail_sha256)):
            if url is not None and sha is not None and url not in seen:
                seen[url] = LocalImage(source=url, path=file_path(url), sha256=sha)
    return list(seen.values())


def shots_of(jobs: Iterable[Job]) -> list[Shot]:
    """The distinct shots of ``jobs``, in order."""
    out: dict[str, Shot] = {}
    for job in jobs:
        out.setdefault(job.shot.id, job.shot)
    return list(out.values())


def with_urls(manifest: Manifest, urls: Mapping[str, str]) -> Manifest:
    """``manifest`` with every uploaded local image replaced by its URL (fingerprints unchanged)."""
    shots = []
    for shot in manifest.shots:
        image = urls.get(shot.image, shot.image) if shot.image_sha256 else shot.image
        tail = shot.tail_image_url
        if tail is not None and shot.tail_sha256:
            tail = urls.get(tail, tail)
        shots.append(replace(shot, image=image, tail_image_url=tail))
    return replace(manifest, shots=tuple(shots))
