"""The emulator's billing: charges, balance, refunds and the credits usage ledger."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest

from batchkling.emulator.usage import format_time
from tests.emulator_fixtures import START, TEST_KEY, FakeClock, kling_body

pytestmark = pytest.mark.anyio

CREATE = "/api/un-api/create_tool_task"
QUERY = "/api/un-api/query_tool_task_status"
ACCOUNT = "/api/un-api/query_account_status"
USAGE = "/api/un-api/query_credits_usage"
TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def create(client: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = (await client.post(CREATE, json=kling_body(**fields))).json()
    return body


async def usage(client: httpx.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get(USAGE, params=params)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def balance(client: httpx.AsyncClient) -> float:
    value: float = (await client.get(ACCOUNT)).json()["data"]["balances"]
    return value


async def test_create_charges_duration_times_rate(emulator_factory: Any) -> None:
    """A create takes duration x 200 (standard) or x 300 (pro) from the balance at once."""
    emu = emulator_factory(balance=10_000)
    async with emu.client() as client:
        await create(client, duration=5)
        assert await balance(client) == 9_000
        await create(client, duration=10, model_mode="pro")
        assert await balance(client) == 6_000
    assert emu.stats()["credits_charged"][TEST_KEY] == 4_000


async def test_insufficient_balance_is_error_100_and_creates_nothing(emulator_factory: Any) -> None:
    """A create the balance cannot cover: error 100, no task, no record, balance unchanged."""
    emu = emulator_factory(balance=1_500)
    async with emu.client() as client:
        assert (await create(client, duration=5))["success"] is True
        refused = await create(client, duration=5)
        assert (refused["success"], refused["error_code"]) == (False, 100)
        assert "balance" in refused["errorMsg"]
        assert "data" not in refused
        assert await balance(client) == 500
        assert len((await usage(client))["data"]["records"]) == 1
    assert emu.stats()["tasks_created"] == 1


async def test_balances_are_per_key(emulator_factory: Any) -> None:
    """--balance applies to each key separately."""
    emu = emulator_factory(balance=1_000)
    async with emu.client("a") as a, emu.client("b") as b:
        assert (await create(a))["success"] is True
        assert (await create(b))["success"] is True
        assert (await create(a))["error_code"] == 100


async def test_unlimited_balance_is_a_large_number_that_goes_down(emulator_factory: Any) -> None:
    """Without --balance the account shows a large number, less what was charged."""
    emu = emulator_factory()
    async with emu.client() as client:
        before = await balance(client)
        await create(client, duration=3)
        assert await balance(client) == before - 600
    assert before >= 1_000_000


@pytest.mark.parametrize("refund", [False, True])
async def test_failed_tasks_are_refunded_only_with_refund_failed(
    emulator_factory: Any, refund: bool
) -> None:
    """--refund-failed adds a negative record for the same task when it fails; else none."""
    clock = FakeClock()
    emu = emulator_factory(
        clock=clock, balance=5_000, fail_rate=1.0, refund_failed=refund, gen_seconds=(3, 3)
    )
    async with emu.client() as client:
        task_id = (await create(client))["data"]["task_id"]
        clock.advance(3)
        assert (await client.post(QUERY, json={"task_id": task_id})).json()["data"]["status"] == -1
        records = (await usage(client))["data"]["records"]
        after = await balance(client)
    costs = [(r["task_id"], r["cost_credits"]) for r in records]
    if refund:
        assert costs == [(task_id, -1000), (task_id, 1000)]
        assert records[0]["create_time"] == format_time(int((START + 3) * 1000))
        assert after == 5_000
        assert emu.stats()["credits_refunded"][TEST_KEY] == 1000
    else:
        assert costs == [(task_id, 1000)]
        assert after == 4_000


async def test_refund_appears_even_if_nobody_queries_the_task(emulator_factory: Any) -> None:
    """A refund is due when the task finishes, not when a client looks at the task."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, fail_rate=1.0, refund_failed=True, gen_seconds=(2, 2))
    async with emu.client() as client:
        await create(client)
        clock.advance(10)
        records = (await usage(client))["data"]["records"]
    assert [r["cost_credits"] for r in records] == [-1000, 1000]


async def test_usage_records_have_the_documented_fields(emulator_factory: Any) -> None:
    """Each record: UUID id, tool_ task type, task id, null chat_id, credits, RFC 3339 ms time."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock)
    async with emu.client() as client:
        task_id = (await create(client))["data"]["task_id"]
        body = await usage(client)
    (record,) = body["data"]["records"]
    assert body["success"] is True
    assert set(record) == {"id", "task_type", "task_id", "chat_id", "cost_credits", "create_time"}
    assert uuid.UUID(record["id"])
    assert record["task_type"] == "tool_kling3-image-to-video-api"
    assert record["task_id"] == task_id
    assert record["chat_id"] is None
    assert record["cost_credits"] == 1000
    assert TIME.match(record["create_time"])
    assert record["create_time"] == format_time(int(START * 1000))
    assert body["data"]["next_cursor"] is None


async def make_records(emu: Any, clock: FakeClock, n: int, key: str = TEST_KEY) -> list[str]:
    """Create n tasks one second apart; their ids, oldest first."""
    ids = []
    async with emu.client(key) as client:
        for _ in range(n):
            ids.append((await create(client))["data"]["task_id"])
            clock.advance(1)
    return ids


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_pages_walk_every_record_newest_first(emulator_factory: Any, method: str) -> None:
    """limit 3 over 7 records: pages of 3, 3, 1, newest first, then a null cursor."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock)
    ids = await make_records(emu, clock, 7)
    seen: list[str] = []
    cursors = []
    async with emu.client() as client:
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 3}
            if cursor:
                params["cursor"] = cursor
            if method == "GET":
                body = (await client.get(USAGE, params=params)).json()
            else:
                body = (await client.post(USAGE, json=params)).json()
            seen += [r["task_id"] for r in body["data"]["records"]]
            cursor = body["data"]["next_cursor"]
            cursors.append(cursor)
            if cursor is None:
                break
    assert seen == ids[::-1]
    assert len(cursors) == 3 and cursors[-1] is None


async def test_new_records_do_not_shift_a_page_being_walked(emulator_factory: Any) -> None:
    """Records added between two pages appear on neither: the cursor is a position."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock)
    ids = await make_records(emu, clock, 4)
    async with emu.client() as client:
        first = (await usage(client, limit=2))["data"]
        await create(client)
        second = (await usage(client, limit=2, cursor=first["next_cursor"]))["data"]
    assert [r["task_id"] for r in second["records"]] == [ids[1], ids[0]]


@pytest.mark.parametrize("field", ["nextCursor", "cursor"])
async def test_cursor_field_name_is_switchable(emulator_factory: Any, field: str) -> None:
    """--cursor-field names the next-page cursor; the default name is then absent."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, cursor_field=field)
    await make_records(emu, clock, 3)
    async with emu.client() as client:
        data = (await usage(client, limit=2))["data"]
        rest = (await usage(client, limit=2, cursor=data[field]))["data"]
    assert "next_cursor" not in data
    assert isinstance(data[field], str)
    assert len(rest["records"]) == 1 and rest[field] is None


async def test_limit_defaults_to_50_and_caps_at_200(emulator_factory: Any) -> None:
    """No limit gives 50 records; a limit over 200 gives 200."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock)
    for i in range(205):
        emu.app.emulator.state.add_charge(TEST_KEY, 1, None, int(START * 1000) + i, "tool_x")
    async with emu.client() as client:
        default = (await usage(client))["data"]
        capped = (await usage(client, limit=1000))["data"]
    assert len(default["records"]) == 50
    assert len(capped["records"]) == 200
    assert capped["next_cursor"] is not None


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": "many"},
        {"cursor": "not-a-cursor"},
        {"start_time": "yesterday"},
        {"end_time": "2026-13-45T00:00:00Z"},
    ],
)
async def test_bad_usage_parameters_are_error_400(
    emulator_factory: Any, params: dict[str, Any]
) -> None:
    """A bad limit, cursor or time answers error 400 naming the parameter."""
    emu = emulator_factory()
    async with emu.client() as client:
        body = (await client.get(USAGE, params=params)).json()
    assert (body["success"], body["error_code"]) == (False, 400)
    assert next(iter(params)) in body["errorMsg"]


async def test_time_bounds_are_inclusive_and_task_type_is_exact(emulator_factory: Any) -> None:
    """start_time/end_time include records at exactly those times; task_type filters exactly."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock)
    ids = await make_records(emu, clock, 5)
    emu.app.emulator.state.add_charge(TEST_KEY, 7, "chat-1", int((START + 2) * 1000), "chat_x")
    async with emu.client() as client:
        all_records = (await usage(client))["data"]["records"]
        times = {r["task_id"]: r["create_time"] for r in all_records}
        window = await usage(
            client,
            start_time=times[ids[1]],
            end_time=times[ids[3]],
            task_type="tool_kling3-image-to-video-api",
        )
        chats = await usage(client, task_type="chat_x")
        offset = await usage(client, start_time="2026-09-21T16:13:22+02:00")
    assert [r["task_id"] for r in window["data"]["records"]] == [ids[3], ids[2], ids[1]]
    assert [r["task_id"] for r in chats["data"]["records"]] == ["chat-1"]
    # START is 2026-09-21T14:13:20Z: +02:00 16:13:22 is START + 2 s, so ids[2:] and the chat.
    assert len(offset["data"]["records"]) == 4


async def test_usage_lag_hides_new_records_for_a_while(emulator_factory: Any) -> None:
    """usage_lag: a charge shows in the usage only that many seconds after it was made."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, usage_lag=30)
    async with emu.client() as client:
        await create(client)
        assert (await usage(client))["data"]["records"] == []
        clock.advance(29)
        assert (await usage(client))["data"]["records"] == []
        clock.advance(1)
        assert len((await usage(client))["data"]["records"]) == 1
    emu.set_config(usage_lag=0)


async def test_an_orphan_charge_appears_in_the_usage_and_the_balance(
    emulator_factory: Any,
) -> None:
    """POST /__emulator/usage records a charge for a task the client never saw."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, balance=10_000, api_keys=(TEST_KEY,))
    orphan_id = str(uuid.uuid4())
    async with emu.client() as client:
        added = await client.post(
            "/__emulator/usage", json={"task_id": orphan_id, "cost_credits": 1500}
        )
        records = (await usage(client))["data"]["records"]
        assert await balance(client) == 8_500
        bad = await client.post("/__emulator/usage", json={"cost_credits": "lots"})
    assert added.status_code == 200
    assert added.json()["key"] == TEST_KEY
    assert [(r["task_id"], r["cost_credits"]) for r in records] == [(orphan_id, 1500)]
    assert records[0]["create_time"] == format_time(int(START * 1000))
    assert bad.status_code == 400


async def test_an_orphan_can_be_dated_and_needs_a_key_when_several_exist(
    emulator_factory: Any,
) -> None:
    """create_time places the orphan in the past; with several keys, key is required."""
    emu = emulator_factory(api_keys=("a", "b"))
    async with emu.client("a") as client:
        missing_key = await client.post("/__emulator/usage", json={"cost_credits": 1})
        dated = await client.post(
            "/__emulator/usage",
            json={"key": "a", "cost_credits": 600, "create_time": "2026-01-02T03:04:05.678Z"},
        )
        records = (await usage(client))["data"]["records"]
    assert missing_key.status_code == 400
    assert dated.json()["create_time"] == "2026-01-02T03:04:05.678Z"
    assert records[0]["create_time"] == "2026-01-02T03:04:05.678Z"
    assert uuid.UUID(records[0]["task_id"])


async def test_admin_can_set_a_balance_mid_run(emulator_factory: Any) -> None:
    """POST /__emulator/balance sets one key's balance; the next create is checked against it."""
    emu = emulator_factory()
    async with emu.client() as client:
        assert (await create(client))["success"] is True
        response = await client.post("/__emulator/balance", json={"key": TEST_KEY, "balance": 10})
        assert response.json() == {"key": TEST_KEY, "balance": 10}
        assert (await create(client))["error_code"] == 100
        assert await balance(client) == 10
