"""The downloader against the emulator over real HTTP: only a playable MP4 is ever done."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from batchkling.api.client import SjinnClient
from batchkling.api.gate import RequestGate
from batchkling.emulator.clips import clip
from batchkling.errors import RunDirWriteError
from batchkling.run.download import Downloaded, Downloader, DownloadFailure
from batchkling.schedule import Rate
from tests.emulator_fixtures import TEST_KEY, LiveEmulator, kling_body

pytestmark = pytest.mark.anyio

Factory = Callable[..., LiveEmulator]


@contextlib.asynccontextmanager
async def downloader(
    base_url: str,
    run_dir: Path,
    *,
    sent: list[httpx.Request] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **options: Any,
) -> AsyncIterator[tuple[Downloader, SjinnClient]]:
    """A downloader (and its client) on one HTTP client that notes every request it sends."""

    async def note(request: httpx.Request) -> None:
        if sent is not None:
            sent.append(request)

    hooks = {"request": [note]}
    async with httpx.AsyncClient(
        transport=transport, event_hooks=hooks, follow_redirects=True
    ) as http:
        client = SjinnClient(
            http, base_url=base_url, api_key=TEST_KEY, gate=RequestGate(Rate(500, 1.0))
        )
        settings: dict[str, Any] = {
            "attempts": 2,
            "parallel": 2,
            "backoff_base": 0.001,
            "backoff_cap": 0.01,
        }
        settings.update(options)
        yield Downloader(client, run_dir, **settings), client


async def finished(client: SjinnClient, duration: int = 5) -> tuple[str, list[str]]:
    """A task of ``duration`` seconds that finished at once (gen_seconds 0), and its URLs."""
    task_id = await client.create(kling_body(duration=duration))
    assert task_id is not None
    status = await client.query(task_id)
    assert status.succeeded
    return task_id, list(status.output_urls)


def file_requests(emu: LiveEmulator) -> int:
    """How many video requests the emulator answered, any status."""
    return sum(emu.stats()["requests"].get("files", {}).values())


async def test_a_good_clip_is_done_with_its_length_codec_and_poster(
    live_emulator_factory: Factory, tmp_path: Path
) -> None:
    """The file is the clip itself; FFmpeg's findings and the poster come with it."""
    emu = live_emulator_factory(gen_seconds=(0, 0))
    sent: list[httpx.Request] = []
    async with downloader(emu.base_url, tmp_path, sent=sent) as (down, client):
        task_id, urls = await finished(client, duration=3)
        got = await down.get("s01", task_id, urls, duration=3)
    assert isinstance(got, Downloaded)
    assert got.path == tmp_path / "videos" / "s01.mp4"
    assert got.path.read_bytes() == clip(3) and got.bytes == len(clip(3))
    assert got.ledger_fields() == {
        "bytes": len(clip(3)),
        "sha256": got.sha256,
        "duration": 3.0,
        "codec": "h264",
        "width": 160,
        "height": 90,
    }
    assert got.poster == tmp_path / "videos" / "s01.jpg"
    assert got.poster.read_bytes().startswith(b"\xff\xd8")
    assert got.warning is None and got.earlier is None
    video_requests = [r for r in sent if "/files/" in r.url.path]
    assert [r.headers["accept-encoding"] for r in video_requests] == ["identity"]
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == ["s01.jpg", "s01.mp4"]


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ({"download_short_length": True}, "not a playable MP4: it is cut short"),
        ({"download_no_length": True}, "not a playable MP4: it is cut short"),
        ({"download_fail_rate": 1.0}, "interrupted (RemoteProtocolError)"),
    ],
    ids=["content-length-short", "no-length-cut", "cut-mid-body"],
)
async def test_a_bad_download_is_never_done(
    live_emulator_factory: Factory, tmp_path: Path, fault: dict[str, Any], reason: str
) -> None:
    """Each attempt is refused; nothing lands in videos/, not even the ``.part``."""
    emu = live_emulator_factory(gen_seconds=(0, 0), **fault)
    async with downloader(emu.base_url, tmp_path, attempts=3) as (down, client):
        task_id, urls = await finished(client)
        got = await down.get("s01", task_id, urls, duration=5)
        assert await down.fetch("s01", task_id, urls) is None
    assert isinstance(got, DownloadFailure)
    assert got.reason.startswith(reason)
    assert list((tmp_path / "videos").iterdir()) == []
    assert file_requests(emu) == 6  # three attempts, twice


async def test_a_gzip_body_is_decoded_and_done(
    live_emulator_factory: Factory, tmp_path: Path
) -> None:
    """Sent compressed although identity was asked for: the stored file is the video itself."""
    emu = live_emulator_factory(gen_seconds=(0, 0), download_gzip=True)
    async with downloader(emu.base_url, tmp_path) as (down, client):
        task_id, urls = await finished(client)
        got = await down.get("s01", task_id, urls)
    assert isinstance(got, Downloaded)
    assert got.path.read_bytes() == clip(5)
    assert emu.stats()["faults"]["download_gzip"] == 1


async def test_a_video_of_the_wrong_length_is_done_with_a_warning(
    live_emulator_factory: Factory, tmp_path: Path
) -> None:
    """It was paid for: kept, with a line saying how long it is and what was asked."""
    emu = live_emulator_factory(gen_seconds=(0, 0), video_duration_offset=2.5)
    async with downloader(emu.base_url, tmp_path) as (down, client):
        task_id, urls = await finished(client)
        got = await down.get("s01", task_id, urls, duration=5)
    assert isinstance(got, Downloaded)
    assert got.info.duration == pytest.approx(7.5)
    assert got.warning == (
        "s01: the video is 7.5 s long where 5 s were asked; it is kept, as it was paid for."
    )


@pytest.mark.parametrize("gzipped", [False, True])
async def test_a_video_over_the_size_cap_fails_at_once(
    live_emulator_factory: Factory, tmp_path: Path, gzipped: bool
) -> None:
    """Declared or decoded past the cap: a clear reason, and no attempt after the first."""
    emu = live_emulator_factory(gen_seconds=(0, 0), download_gzip=gzipped)
    async with downloader(emu.base_url, tmp_path, attempts=4, max_bytes=10_000) as (down, client):
        task_id, urls = await finished(client)
        got = await down.get("s01", task_id, urls)
    assert got == DownloadFailure(
        "the video is larger than 10,000 bytes, the most a download accepts"
    )
    assert file_requests(emu) == 1
    assert list((tmp_path / "videos").iterdir()) == []


async def test_a_server_that_trickles_is_given_up_on(tmp_path: Path) -> None:
    """A byte every 50 ms keeps every read alive, but not the download's deadline."""

    async def trickle(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"video/mp4"), (b"content-length", b"400")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for _ in range(400):
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            await anyio.sleep(0.05)

    transport = httpx.ASGITransport(app=trickle)
    started = anyio.current_time()
    async with downloader(
        "http://cdn.test", tmp_path, transport=transport, attempts=1, grace=0.3, min_rate=1e6
    ) as (down, _):
        got = await down.get("s01", "t1", ["http://cdn.test/v.mp4"])
    assert isinstance(got, DownloadFailure) and got.reason.startswith("too slow")
    assert anyio.current_time() - started < 3


@contextlib.contextmanager
def small_filesystem(path: Path, size: str) -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``path`` (root only); skips the test when it cannot."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mount = ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)]
    done = subprocess.run(mount, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", str(path)], capture_output=True)


async def test_a_full_disk_stops_every_download_naming_the_run_directory(
    live_emulator_factory: Factory, tmp_path: Path
) -> None:
    """ENOSPC: one error naming the run directory, no ``.part`` left, no later request."""
    emu = live_emulator_factory(gen_seconds=(0, 0))
    with small_filesystem(tmp_path / "disk", "8k") as run_dir:
        async with downloader(emu.base_url, run_dir) as (down, client):
            task_id, urls = await finished(client)
            with pytest.raises(RunDirWriteError) as caught:
                await down.get("s01", task_id, urls)
            asked = file_requests(emu)
            with pytest.raises(RunDirWriteError):
                await down.get("s02", task_id, urls)
        assert list((run_dir / "videos").iterdir()) == []
    assert str(run_dir) in caught.value.message and "the disk is full" in caught.value.message
    assert caught.value.exit_code == 5
    assert file_requests(emu) == asked == 1
