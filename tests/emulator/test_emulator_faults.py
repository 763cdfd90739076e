"""The emulator's limits, injected faults and admin endpoints, in-process."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from tests.emulator_fixtures import TEST_KEY, FakeClock, kling_body

pytestmark = pytest.mark.anyio

CREATE = "/api/un-api/create_tool_task"
QUERY = "/api/un-api/query_tool_task_status"
ACCOUNT = "/api/un-api/query_account_status"
USAGE = "/api/un-api/query_credits_usage"


async def post_create(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post(CREATE, json=kling_body())


async def test_error_rate_answers_5xx_before_doing_anything(emulator_factory: Any) -> None:
    """--error-rate 1: every answer is 500, 502 or 503, and no task is created or charged."""
    emu = emulator_factory(error_rate=1.0, balance=100_000)
    async with emu.client() as client:
        statuses = {(await post_create(client)).status_code for _ in range(40)}
        html = [r for r in [await client.get(ACCOUNT) for _ in range(20)] if r.status_code != 500]
    assert statuses == {500, 502, 503}
    assert all(r.headers["content-type"].startswith("text/html") for r in html)
    stats = emu.stats()
    assert stats["tasks_created"] == 0
    assert stats["faults"]["server_error"] == 60
    assert sum(stats["requests"]["create_tool_task"].values()) == 40


async def test_a_lost_response_still_created_and_charged_the_task(emulator_factory: Any) -> None:
    """--lost-response-rate 1: the client gets RemoteProtocolError, yet the task exists and cost."""
    emu = emulator_factory(lost_response_rate=1.0, balance=5_000)
    async with emu.client() as client:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            await post_create(client)
        emu.set_config(lost_response_rate=0.0)
        records = (await client.get(USAGE)).json()["data"]["records"]
        balance = (await client.get(ACCOUNT)).json()["data"]["balances"]
    stats = emu.stats()
    (task,) = stats["tasks"]
    assert [r["task_id"] for r in records] == [task["task_id"]]
    assert balance == 4_000
    assert stats["requests"]["create_tool_task"] == {"lost": 1}
    assert stats["faults"]["lost_response"] == 1


async def test_rate_limit_answers_429_with_retry_after(emulator_factory: Any) -> None:
    """--rate-limit 3: the 4th request in a second is 429 with Retry-After; later ones pass."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, rate_limit=3)
    async with emu.client() as client:
        ok = [(await client.get(ACCOUNT)).status_code for _ in range(3)]
        limited = await client.get(ACCOUNT)
        other_key = await client.get(ACCOUNT, headers={"Authorization": "Bearer other"})
        clock.advance(0.5)
        still = await client.get(ACCOUNT)
        clock.advance(0.5)
        again = await client.get(ACCOUNT)
    assert ok == [200, 200, 200]
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    assert limited.json()["success"] is False
    assert other_key.status_code == 200
    assert still.status_code == 429
    assert again.status_code == 200
    assert emu.stats()["faults"]["rate_limited"] == 2


async def test_429_without_retry_after_when_asked(emulator_factory: Any) -> None:
    """retry_after off: 429 answers carry no Retry-After, as some proxies do."""
    emu = emulator_factory(clock=FakeClock(), rate_limit=1, retry_after=False)
    async with emu.client() as client:
        await client.get(ACCOUNT)
        limited = await client.get(ACCOUNT)
    assert limited.status_code == 429
    assert "retry-after" not in limited.headers


async def test_max_running_refuses_with_429_until_a_task_finishes(emulator_factory: Any) -> None:
    """--max-running 2: a third create is 429 (nothing charged) until one of the two finishes."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, max_running=2, gen_seconds=(10, 10), balance=10_000)
    async with emu.client() as client:
        assert (await post_create(client)).status_code == 200
        clock.advance(3)
        assert (await post_create(client)).status_code == 200
        refused = await post_create(client)
        clock.advance(7)
        accepted = await post_create(client)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "7"
    assert refused.json()["success"] is False
    assert accepted.json()["success"] is True
    stats = emu.stats()
    assert stats["tasks_created"] == 3
    assert stats["credits_charged"][TEST_KEY] == 3_000
    assert stats["max_running"][TEST_KEY] == 2
    assert stats["faults"]["max_running"] == 1


@pytest.mark.parametrize(("as_http", "status"), [(False, 200), (True, 429)])
async def test_max_running_can_answer_a_functional_error_code(
    emulator_factory: Any, as_http: bool, status: int
) -> None:
    """--max-running-code N: success false with error_code N (HTTP 429 with --errors-as-http)."""
    emu = emulator_factory(max_running=1, max_running_code=102, errors_as_http=as_http)
    async with emu.client() as client:
        await post_create(client)
        refused = await post_create(client)
    assert refused.status_code == status
    assert (refused.json()["success"], refused.json()["error_code"]) == (False, 102)


async def test_high_water_mark_counts_finishes_before_each_create(emulator_factory: Any) -> None:
    """Tasks finishing before a create do not count: the mark is the true peak, per key."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, gen_seconds=(1, 1))
    async with emu.client("a") as a, emu.client("b") as b:
        await post_create(a)  # a: [0, 1)
        clock.advance(0.5)
        await post_create(a)  # a: [0.5, 1.5) -> 2 at once
        await post_create(b)
        clock.advance(0.7)
        await post_create(a)  # t=1.2: first finished, so still 2
        clock.advance(0.1)
        running_now = emu.stats()["running"]
    stats = emu.stats()
    assert stats["max_running"] == {"a": 2, "b": 1}
    assert running_now == {"a": 2, "b": 1}


async def test_latency_holds_every_api_answer_back(emulator_factory: Any) -> None:
    """--latency 0.15,0.15 adds that much to an answer."""
    emu = emulator_factory(latency=(0.15, 0.15))
    async with emu.client() as client:
        start = time.perf_counter()
        response = await client.get(ACCOUNT)
        elapsed = time.perf_counter() - start
    assert response.status_code == 200
    assert elapsed >= 0.15


async def test_a_cut_download_is_an_incomplete_body_error(emulator_factory: Any) -> None:
    """--download-fail-rate 1: the client sees RemoteProtocolError for the truncated body."""
    emu = emulator_factory(gen_seconds=(0, 0), download_fail_rate=1.0)
    async with emu.client() as client:
        task_id = (await post_create(client)).json()["data"]["task_id"]
        url = (await client.post(QUERY, json={"task_id": task_id})).json()["data"]["output_urls"][0]
        with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
            await client.get(url)
        emu.set_config(download_fail_rate=0.0)
        assert (await client.get(url)).status_code == 200
    assert emu.stats()["requests"]["files"] == {"cut": 1, "200": 1}


async def test_admin_config_changes_settings_mid_run(emulator_factory: Any) -> None:
    """POST /__emulator/config applies at once and answers the settings now in force."""
    emu = emulator_factory()
    async with emu.client() as client:
        assert (await client.get(ACCOUNT)).status_code == 200
        changed = await client.post(
            "/__emulator/config", json={"error_rate": 1.0, "latency": "0,0.01", "rate_limit": 5}
        )
        failing = await client.get(ACCOUNT)
        shown = await client.get("/__emulator/config")
    assert changed.status_code == 200
    assert changed.json()["error_rate"] == 1.0
    assert changed.json()["latency"] == [0.0, 0.01]
    assert shown.json()["rate_limit"] == 5
    assert failing.status_code in (500, 502, 503)


@pytest.mark.parametrize(
    "change",
    [{"no_such_flag": 1}, {"error_rate": 2}, {"seed": 3}, {"latency": "5,1"}, {"rate_limit": "x"}],
)
async def test_admin_config_rejects_bad_changes(
    emulator_factory: Any, change: dict[str, Any]
) -> None:
    """Unknown fields, out-of-range values and start-only settings are a 400; nothing changes."""
    emu = emulator_factory()
    before = emu.app.emulator.config
    async with emu.client() as client:
        response = await client.post("/__emulator/config", json=change)
    assert response.status_code == 400
    assert response.json()["error"]
    assert emu.app.emulator.config == before


async def test_stats_report_requests_tasks_and_request_times(emulator_factory: Any) -> None:
    """Stats count requests per endpoint and status, keep inputs, times and per-key credits."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, balance=1_000)
    async with emu.client() as client:
        await post_create(client)
        clock.advance(0.3)
        await post_create(client)  # no balance left: error 100
        clock.advance(0.3)
        await client.post(QUERY, json={"task_id": "missing"})
        clock.advance(2)
        await client.get(ACCOUNT)
        stats = (await client.get("/__emulator/stats")).json()
    assert stats["requests"]["create_tool_task"] == {"200": 2}
    assert stats["error_codes"]["create_tool_task"] == {"100": 1}
    assert stats["error_codes"]["query_tool_task_status"] == {"404": 1}
    assert stats["request_times"][TEST_KEY] == pytest.approx(
        [clock.now - 2.6, clock.now - 2.3, clock.now - 2.0, clock.now]
    )
    assert stats["max_requests_per_second"][TEST_KEY] == 3
    assert stats["tasks_created"] == 1
    assert stats["tasks"][0]["input"] == kling_body()["input"]
    assert stats["credits_charged"] == {TEST_KEY: 1000}
    assert stats["balances"] == {TEST_KEY: 0}
    assert "/__emulator" not in str(stats["requests"])


async def test_reset_forgets_tasks_and_counters(emulator_factory: Any) -> None:
    """POST /__emulator/reset empties tasks, records and counters; settings stay."""
    emu = emulator_factory(balance=5_000)
    async with emu.client() as client:
        task_id = (await post_create(client)).json()["data"]["task_id"]
        assert (await client.post("/__emulator/reset")).json() == {"ok": True}
        gone = (await client.post(QUERY, json={"task_id": task_id})).json()
        balance = (await client.get(ACCOUNT)).json()["data"]["balances"]
    assert "not found" in gone["errorMsg"]
    assert balance == 5_000
    stats = emu.stats()
    assert stats["tasks_created"] == 0
    assert stats["requests"] == {
        "query_tool_task_status": {"200": 1},
        "query_account_status": {"200": 1},
    }
