"""The store failing under the uploads: retried with the one retry policy, then one clear error."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from batchkling.errors import UploadError
from batchkling.schedule import RetryPolicy
from batchkling.storage.location import parse_location
from batchkling.storage.records import read_records
from batchkling.storage.store import open_store
from batchkling.storage.upload import LocalImage, UploadEvent, UploadSettings, upload_images
from tests.storage.conftest import SECRET_KEY, S3Server, write_frames

FAST_RETRIES = RetryPolicy(attempts=3, base=0.01, cap=0.05)


def _images(directory: Path, names: list[str]) -> list[LocalImage]:
    import hashlib

    write_frames(directory, names)
    out = []
    for name in names:
        path = directory / f"{name}.png"
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        out.append(LocalImage(source=path.as_uri(), path=path, sha256=sha))
    return out


def test_the_store_going_down_mid_upload_is_retried_then_one_error(
    s3: S3Server, tmp_path: Path
) -> None:
    """After the first frame the store goes away: each request is tried 3 times, then it fails.

    What was uploaded before is recorded, so the next attempt does not put it again.
    """
    images = _images(tmp_path / "frames", ["s01", "s02", "s03"])
    settings = UploadSettings(
        location=parse_location("s3://frames/ep01/"),
        parallel=1,
        policy=FAST_RETRIES,
        secrets=(SECRET_KEY,),
    )
    events: list[UploadEvent] = []

    def progress(event: UploadEvent) -> None:
        events.append(event)
        if event.kind == "uploaded":
            s3.stop()

    async def upload() -> None:
        async with httpx.AsyncClient() as http:
            await upload_images(
                images,
                open_store(settings.location),
                settings,
                http=http,
                run_dir=tmp_path / "run",
                progress=progress,
            )

    with pytest.raises(UploadError) as caught:
        anyio.run(upload)
    message = str(caught.value)
    assert "\n" not in message and SECRET_KEY not in message
    assert "after 3 tries" in message and "nothing was created" in message
    assert [e.kind for e in events] == ["uploaded", "retry", "retry"]
    recorded = read_records(tmp_path / "run")
    assert [(r.event, Path(r.path).name) for r in recorded] == [("uploaded", "s01.png")]
