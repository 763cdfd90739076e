"""The sjinn client against the in-process emulator: answers and the money risk of each error."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import pytest

from batchkling.api.client import SjinnClient, make_http_client
from batchkling.api.failures import parse_retry_after
from batchkling.api.gate import RequestGate
from batchkling.errors import (
    AuthError,
    InDoubtError,
    InsufficientBalanceError,
    MembershipError,
    RefusedError,
    TaskNotFoundError,
    TransientError,
)
from batchkling.ledger import Ledger
from batchkling.model import Job, Shot
from batchkling.run.runner import Progress, Runner, RunOptions
from batchkling.run.selection import select_work
from batchkling.schedule import Rate
from tests.emulator_fixtures import InProcessEmulator

pytestmark = pytest.mark.anyio

Factory = Callable[..., InProcessEmulator]
BODY = {
    "tool_type": "kling3-image-to-video-api",
    "input": {"prompt": "p", "image": "https://x/i.png", "duration": 5},
}


def client_for(
    emu: InProcessEmulator,
    http: httpx.AsyncClient,
    key: str = "test-key",
    gate: RequestGate | None = None,
) -> SjinnClient:
    return SjinnClient(http, base_url=emu.base_url, api_key=key, gate=gate)


async def test_create_query_download(emulator_factory: Factory, tmp_path: Path) -> None:
    """A task is created, finishes, and its video downloads with a verified size."""
    emu = emulator_factory(gen_seconds=(0.01, 0.02))
    async with make_http_client(transport=emu.transport) as http:
        api = client_for(emu, http)
        task_id = await api.create(BODY)
        assert task_id is not None
        await anyio.sleep(0.05)
        status = await api.query(task_id)
        assert status.succeeded and status.video_url() is not None
        size, sha = await api.download(status.video_url() or "", tmp_path / "v.mp4")
        assert size == (tmp_path / "v.mp4").stat().st_size and len(sha) == 64


async def test_before_send_runs_between_the_gate_and_the_request(
    emulator_factory: Factory,
) -> None:
    """``before_send`` sees the rate slot taken and the create not yet arrived; then it is sent."""
    emu = emulator_factory()
    gate = RequestGate(Rate(1000, 1.0))
    seen: list[tuple[int, int]] = []

    async def before_send() -> bool:
        seen.append((gate.calls, emu.stats()["tasks_created"]))
        return True

    async with make_http_client(transport=emu.transport) as http:
        task_id = await client_for(emu, http, gate=gate).create(BODY, before_send=before_send)
    assert seen == [(1, 0)]
    assert task_id is not None and emu.stats()["tasks_created"] == 1


async def test_before_send_returning_false_sends_nothing(emulator_factory: Factory) -> None:
    """A create withheld by ``before_send`` returns None and reaches no server."""
    emu = emulator_factory()
    gate = RequestGate(Rate(1000, 1.0))

    async def withhold() -> bool:
        return False

    async with make_http_client(transport=emu.transport) as http:
        assert await client_for(emu, http, gate=gate).create(BODY, before_send=withhold) is None
    assert emu.stats()["requests"] == {}
    assert gate.calls == 1


async def test_an_error_in_before_send_reaches_the_caller_and_sends_nothing(
    emulator_factory: Factory,
) -> None:
    """The client does not translate the caller's own failure, and sends nothing after it."""
    emu = emulator_factory()

    async def fail() -> bool:
        raise OSError("disk full")

    async with make_http_client(transport=emu.transport) as http:
        with pytest.raises(OSError, match="disk full"):
            await client_for(emu, http).create(BODY, before_send=fail)
    assert emu.stats()["requests"] == {}


async def test_api_calls_take_the_transport_and_downloads_the_client(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """Given a transport, API calls go straight to it; downloads still use the client."""
    emu = emulator_factory(gen_seconds=(0.0, 0.0))
    async with make_http_client(transport=emu.transport) as http:
        api = SjinnClient(
            http, base_url=emu.base_url, api_key="test-key", transport=httpx.ASGITransport(emu.app)
        )
        task_id = await api.create(BODY)
        assert task_id is not None
        status = await api.query(task_id)
        await http.aclose()
        assert (await api.query(task_id)).succeeded  # the closed client was not used
        with pytest.raises(RuntimeError):
            await api.download(status.video_url() or "", tmp_path / "v.mp4")


@pytest.mark.parametrize("as_http", [False, True])
async def test_functional_errors_map_by_code(emulator_factory: Factory, as_http: bool) -> None:
    """Errors as 200 + success:false or as HTTP statuses map to the same exceptions."""
    emu = emulator_factory(api_keys=("test-key",), errors_as_http=as_http, balance=0)
    async with make_http_client(transport=emu.transport) as http:
        with pytest.raises(AuthError) as auth:
            await client_for(emu, http, key="sk-secret-value").create(BODY)
        assert "sk-secret-value" not in str(auth.value)
        with pytest.raises(InsufficientBalanceError):
            await client_for(emu, http).create(BODY)
        with pytest.raises(RefusedError) as bad:
            await client_for(emu, http).create(
                {"tool_type": BODY["tool_type"], "input": {"prompt": "", "image": "x"}}
            )
        assert bad.value.error_code == 400
        with pytest.raises(TaskNotFoundError):
            await client_for(emu, http).query("no-such-task")
    emu = emulator_factory(no_membership=True, errors_as_http=as_http)
    async with make_http_client(transport=emu.transport) as http:
        with pytest.raises(MembershipError):
            await client_for(emu, http).create(BODY)


async def test_rate_limit_is_transient_with_retry_after(emulator_factory: Factory) -> None:
    """429 is provably not processed and carries Retry-After; the gate pauses everyone."""
    emu = emulator_factory(rate_limit=1)
    gate = RequestGate(Rate(1000, 1.0))
    async with make_http_client(transport=emu.transport) as http:
        api = client_for(emu, http, gate=gate)
        await api.create(BODY)
        with pytest.raises(TransientError) as err:
            await api.create(BODY)
        assert err.value.status_code == 429 and err.value.retry_after is not None
        assert gate.pauses == 1
    assert emu.stats()["tasks_created"] == 1


async def test_lost_answer_and_server_errors_are_in_doubt(emulator_factory: Factory) -> None:
    """A dropped answer or a 500 may have been charged: in doubt, not transient."""
    emu = emulator_factory(lost_response_rate=1.0)
    async with make_http_client(transport=emu.transport) as http:
        with pytest.raises(InDoubtError):
            await client_for(emu, http).create(BODY)
    assert emu.stats()["tasks_created"] == 1  # it was charged


async def test_refused_connection_is_transient() -> None:
    """Nothing listening: provably not sent."""
    async with make_http_client() as http:
        api = SjinnClient(http, base_url="http://127.0.0.1:9", api_key="k")
        with pytest.raises(TransientError):
            await api.create(BODY)


def test_parse_retry_after() -> None:
    """Delta seconds and HTTP dates both parse; garbage is ignored."""
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412475.0) == 5.0
    assert parse_retry_after("soon") is None and parse_retry_after(None) is None


async def test_runner_in_process(emulator_factory: Factory, tmp_path: Path) -> None:
    """The runner itself over httpx.ASGITransport: every job done, progress reported."""
    emu = emulator_factory(gen_seconds=(0.01, 0.05))
    jobs = [
        Job(key=f"j{i}", shot=Shot(id=f"j{i}", prompt=f"p{i}", image="https://x/i.png"))
        for i in range(6)
    ]
    seen: list[Progress] = []
    with Ledger.open(tmp_path) as ledger:
        sel = select_work(jobs, ledger.state, budget=None)
        async with make_http_client(transport=emu.transport) as http:
            api = client_for(emu, http, gate=RequestGate(Rate(500, 1.0)))
            runner = Runner(
                jobs=jobs,
                selection=sel,
                ledger=ledger,
                client=api,
                options=RunOptions(concurrency=2, poll_min=0.01, poll_max=0.05),
                progress=seen.append,
            )
            result = await runner.run()
    assert result.counts == {"done": 6}
    assert emu.stats()["max_running"]["test-key"] <= 2
    assert seen[-1].counts.get("done") == 6 and seen[-1].credits_committed == 6000
    assert all(p.credits_committed <= 6000 for p in seen)
