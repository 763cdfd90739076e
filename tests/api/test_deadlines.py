"""Every API request has an overall deadline and a size cap; a create waits longest."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from batchkling.api.client import Deadlines, SjinnClient, make_http_client, make_transport
from batchkling.errors import InDoubtError
from batchkling.schedule import DOWNLOAD_MIN_RATE, download_behind, download_deadline
from tests.emulator_fixtures import TEST_KEY, LiveEmulator, kling_body

pytestmark = pytest.mark.anyio

Live = Callable[..., LiveEmulator]


async def test_a_server_sending_a_byte_at_a_time_meets_the_deadline(
    live_emulator_factory: Live,
) -> None:
    """--trickle 0.2 never trips the 30 s read timeout; the overall deadline of 1 s ends it."""
    emu = live_emulator_factory(trickle=0.2)
    async with make_transport() as transport, make_http_client() as http:
        api = SjinnClient(
            http,
            base_url=emu.base_url,
            api_key=TEST_KEY,
            transport=transport,
            deadlines=Deadlines(api=1.0),
        )
        started = time.monotonic()
        with pytest.raises(InDoubtError, match="no whole answer within 1 s"):
            await api.account()
        assert time.monotonic() - started < 2.0
    assert emu.stats()["requests"]["query_account_status"] == {"200": 1}


async def test_a_create_outlives_the_api_deadline(live_emulator_factory: Live) -> None:
    """Under 0.6 s of latency a query misses its 0.3 s deadline; a create is waited for."""
    emu = live_emulator_factory(latency=(0.6, 0.6))
    async with make_http_client() as http:
        api = SjinnClient(
            http,
            base_url=emu.base_url,
            api_key=TEST_KEY,
            deadlines=Deadlines(api=0.3, read=0.2, create=5.0),
        )
        task_id = await api.create(kling_body())
        assert task_id is not None
        with pytest.raises(InDoubtError):
            await api.query(task_id)


def _answering(stream: httpx.AsyncByteStream, headers: dict[str, str]) -> SjinnClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers, stream=stream)

    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return SjinnClient(http, base_url="http://api.test", api_key="k")


class _Endless(httpx.AsyncByteStream):
    """A body that never ends; counts what was read of it."""

    def __init__(self) -> None:
        self.sent = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while True:
            self.sent += 65536
            yield b" " * 65536


async def test_an_answer_over_8_mb_is_cut_off_while_it_streams() -> None:
    """No Content-Length and no end: reading stops just past 8 MB with a clear error."""
    body = _Endless()
    with pytest.raises(InDoubtError, match="larger than 8 MB"):
        await _answering(body, {}).account()
    assert body.sent <= 8 * 1024 * 1024 + 65536


async def test_a_declared_length_over_8_mb_is_refused_before_reading() -> None:
    """A Content-Length over the cap: refused without reading the body."""
    body = _Endless()
    with pytest.raises(InDoubtError, match="larger than 8 MB"):
        await _answering(body, {"Content-Length": str(9 * 1024 * 1024)}).account()
    assert body.sent == 0


def test_the_download_deadline_scales_with_the_size() -> None:
    """A minute, then 64 KiB/s: 100 MiB may take 60 + 1600 s; a stalled download falls behind."""
    assert download_deadline(0) == 60.0
    assert download_deadline(100 * 1024 * 1024) == 60.0 + 1600.0
    assert not download_behind(59.0, 0)
    assert download_behind(61.0, 0)
    assert not download_behind(70.0, 10 * DOWNLOAD_MIN_RATE)
    assert download_behind(71.0, 10 * DOWNLOAD_MIN_RATE)
