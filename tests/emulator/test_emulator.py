"""The emulator's API, in-process: endpoints, answer shapes, validation, files."""

from __future__ import annotations

import re
import struct
import uuid
from typing import Any

import httpx
import pytest

from batchkling.emulator.assets import sample_video
from batchkling.emulator.usage import parse_time
from tests.emulator_fixtures import TEST_KEY, FakeClock, kling_body

pytestmark = pytest.mark.anyio

CREATE = "/api/un-api/create_tool_task"
QUERY = "/api/un-api/query_tool_task_status"
ACCOUNT = "/api/un-api/query_account_status"
USAGE = "/api/un-api/query_credits_usage"


async def create(client: httpx.AsyncClient, **fields: Any) -> str:
    response = await client.post(CREATE, json=kling_body(**fields))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True, body
    task_id: str = body["data"]["task_id"]
    return task_id


async def query(client: httpx.AsyncClient, task_id: str) -> dict[str, Any]:
    response = await client.post(QUERY, json={"task_id": task_id})
    assert response.status_code == 200
    result: dict[str, Any] = response.json()
    return result


async def test_create_answers_the_documented_wrapper_with_a_uuid4(emulator_factory: Any) -> None:
    """A valid create answers success, empty errorMsg, error_code 0 and a UUID4 task_id."""
    emu = emulator_factory()
    async with emu.client() as client:
        response = await client.post(CREATE, json=kling_body())
    body = response.json()
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert set(body) == {"success", "errorMsg", "error_code", "data"}
    assert (body["success"], body["errorMsg"], body["error_code"]) == (True, "", 0)
    assert uuid.UUID(body["data"]["task_id"]).version == 4


async def test_a_task_runs_then_completes_with_an_mp4_url_on_the_emulator(
    emulator_factory: Any,
) -> None:
    """Status 0 with no URLs while generating, then 1 with a .mp4 URL served by the emulator."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, gen_seconds=(10, 10))
    async with emu.client() as client:
        task_id = await create(client)
        running = await query(client, task_id)
        assert running["success"] is True
        assert running["data"] == {
            "task_id": task_id,
            "status": 0,
            "task_type": "kling3-image-to-video-api",
            "output_urls": [],
        }
        clock.advance(10)
        done = (await query(client, task_id))["data"]
        assert done["status"] == 1
        assert done["output_urls"] == [f"http://testserver/files/{task_id}.mp4"]
        video = await client.get(done["output_urls"][0])
    assert video.content == sample_video()


async def test_query_also_accepts_get_with_a_query_parameter(emulator_factory: Any) -> None:
    """One public client queries with GET ?task_id=; the emulator answers it the same."""
    emu = emulator_factory()
    async with emu.client() as client:
        task_id = await create(client)
        response = await client.get(QUERY, params={"task_id": task_id})
    assert response.json()["data"]["task_id"] == task_id


async def test_unknown_task_is_http_200_not_found_without_data(emulator_factory: Any) -> None:
    """An unknown task id: HTTP 200, success false, "not found" in errorMsg, no data."""
    emu = emulator_factory()
    async with emu.client() as client:
        response = await client.post(QUERY, json={"task_id": str(uuid.uuid4())})
    body = response.json()
    assert response.status_code == 200
    assert body["success"] is False
    assert "not found" in body["errorMsg"]
    assert "data" not in body


async def test_another_accounts_task_is_not_found(emulator_factory: Any) -> None:
    """A task is visible only to the key that created it."""
    emu = emulator_factory()
    async with emu.client("alice") as alice, emu.client("bob") as bob:
        task_id = await create(alice)
        assert (await query(alice, task_id))["success"] is True
        assert "not found" in (await query(bob, task_id))["errorMsg"]


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_account_status_shows_balance_and_subscription(
    emulator_factory: Any, method: str
) -> None:
    """GET and POST both answer email, name, a numeric balance and a subscription."""
    emu = emulator_factory(balance=5000)
    async with emu.client() as client:
        data = (await client.request(method, ACCOUNT)).json()["data"]
    assert data["balances"] == 5000
    assert isinstance(data["email"], str)
    assert isinstance(data["name"], str)
    sub = data["subscription"]
    assert set(sub) == {"tier", "status", "current_period_start", "current_period_end"}
    assert sub["status"] == "active"


async def test_without_membership_creates_answer_101_and_subscription_is_null(
    emulator_factory: Any,
) -> None:
    """--no-membership: every create is error 101, nothing is created, subscription null."""
    emu = emulator_factory(no_membership=True)
    async with emu.client() as client:
        body = (await client.post(CREATE, json=kling_body())).json()
        account = (await client.get(ACCOUNT)).json()["data"]
    assert (body["success"], body["error_code"]) == (False, 101)
    assert "data" not in body
    assert account["subscription"] is None
    assert emu.stats()["tasks_created"] == 0


@pytest.mark.parametrize("header", [None, "Bearer ", "Basic dGVzdDp0ZXN0", "Bearer wrong"])
async def test_missing_or_wrong_key_is_error_401(emulator_factory: Any, header: str | None) -> None:
    """Without a key, with another scheme or a key not in --api-key: error_code 401."""
    emu = emulator_factory(api_keys=("right",))
    headers = {} if header is None else {"Authorization": header}
    async with emu.client(None, headers=headers) as client:
        response = await client.post(CREATE, json=kling_body())
    body = response.json()
    assert response.status_code == 200
    assert (body["success"], body["error_code"]) == (False, 401)
    assert body["errorMsg"]
    assert emu.stats()["tasks_created"] == 0


async def test_configured_keys_are_accepted_and_any_key_without_configuration(
    emulator_factory: Any,
) -> None:
    """A key in --api-key works; with no --api-key any non-empty key works."""
    restricted = emulator_factory(api_keys=("k1", "k2"))
    async with restricted.client("k2") as client:
        assert (await client.get(ACCOUNT)).json()["success"] is True
    open_emu = emulator_factory()
    async with open_emu.client("anything-at-all") as client:
        assert (await client.get(ACCOUNT)).json()["success"] is True


INVALID = [
    (kling_body(prompt=None), "prompt"),
    (kling_body(prompt=""), "prompt"),
    (kling_body(prompt="   "), "prompt"),
    (kling_body(image=None), "image"),
    (kling_body(image=""), "image"),
    (kling_body(image="uploads/character.jpg"), "image"),
    (kling_body(image="ftp://cdn.example.com/a.jpg"), "image"),
    (kling_body(image="https://"), "image"),
    (kling_body(duration="five"), "duration"),
    (kling_body(duration=True), "duration"),
    (kling_body(duration="nan"), "duration"),
    (kling_body(model_mode="turbo"), "model_mode"),
    (kling_body(multi_shot="yes"), "multi_shot"),
    (kling_body(tail_image_url="end.jpg"), "tail_image_url"),
    ({"tool_type": "other-tool", "input": kling_body()["input"]}, "tool_type"),
    ({"input": kling_body()["input"]}, "tool_type"),
    ({"tool_type": "kling3-image-to-video-api"}, "input"),
    ([1, 2], "body"),
]


@pytest.mark.parametrize(("body", "field"), INVALID)
async def test_invalid_input_is_error_400_naming_the_field(
    emulator_factory: Any, body: Any, field: str
) -> None:
    """Each broken rule answers error_code 400 with errorMsg naming the field; nothing is made."""
    emu = emulator_factory(balance=10_000)
    async with emu.client() as client:
        response = await client.post(CREATE, json=body)
    answer = response.json()
    assert response.status_code == 200
    assert (answer["success"], answer["error_code"]) == (False, 400)
    assert field in answer["errorMsg"]
    assert emu.stats()["tasks_created"] == 0
    assert emu.stats()["balances"][TEST_KEY] == 10_000


async def test_a_body_that_is_not_json_is_error_400(emulator_factory: Any) -> None:
    """A create whose body is not JSON at all is an invalid-input error, not a crash."""
    emu = emulator_factory()
    async with emu.client() as client:
        response = await client.post(CREATE, content=b"{not json")
    assert response.json()["error_code"] == 400


@pytest.mark.parametrize(
    ("duration", "mode", "clamped", "cost"),
    [
        (5, "standard", 5, 1000),
        ("7", "standard", 7, 1400),
        (" 10 ", "pro", 10, 3000),
        (1, "standard", 3, 600),
        (20, "pro", 15, 4500),
        (None, "standard", 5, 1000),
        (4.5, "pro", 4.5, 1350),
    ],
)
async def test_duration_is_parsed_clamped_and_billed(
    emulator_factory: Any, duration: Any, mode: str, clamped: float, cost: int
) -> None:
    """Strings are parsed, 3..15 is enforced by clamping, and the clamped duration is billed."""
    emu = emulator_factory()
    async with emu.client() as client:
        await create(client, duration=duration, model_mode=mode)
        records = (await client.get(USAGE)).json()["data"]["records"]
    task = emu.stats()["tasks"][0]
    assert task["duration"] == clamped
    assert records[0]["cost_credits"] == cost


async def test_the_input_is_recorded_as_sent(emulator_factory: Any) -> None:
    """The admin stats keep each task's input exactly as the client sent it."""
    emu = emulator_factory()
    body = kling_body(tail_image_url="https://cdn.example.com/end.jpg", multi_shot=False)
    async with emu.client() as client:
        assert (await client.post(CREATE, json=body)).json()["success"] is True
    (task,) = emu.stats()["tasks"]
    assert task["input"] == body["input"]
    assert task["key"] == TEST_KEY
    assert task["id"] == task["task_id"]
    assert task["status"] == 0


@pytest.mark.parametrize(
    ("config", "body", "status"),
    [
        ({}, kling_body(prompt=""), 400),
        ({"balance": 10}, kling_body(), 402),
        ({"no_membership": True}, kling_body(), 403),
    ],
)
async def test_errors_as_http_answers_the_matching_status(
    emulator_factory: Any, config: dict[str, Any], body: Any, status: int
) -> None:
    """--errors-as-http: the same JSON error, with the matching HTTP status instead of 200."""
    emu = emulator_factory(errors_as_http=True, **config)
    async with emu.client() as client:
        response = await client.post(CREATE, json=body)
        missing = await client.post(QUERY, json={"task_id": "nope"})
    assert response.status_code == status
    assert response.json()["success"] is False
    assert missing.status_code == 404
    assert "not found" in missing.json()["errorMsg"]


async def test_errors_as_http_answers_401_for_a_bad_key(emulator_factory: Any) -> None:
    """--errors-as-http: a missing key is HTTP 401 with the JSON error body."""
    emu = emulator_factory(errors_as_http=True)
    async with emu.client(None) as client:
        response = await client.get(ACCOUNT)
    assert response.status_code == 401
    assert response.json()["error_code"] == 401


@pytest.mark.parametrize("failed_status", [-1, 2])
async def test_a_failed_task_has_the_failure_status_and_a_reason(
    emulator_factory: Any, failed_status: int
) -> None:
    """--fail-rate 1: status is --failed-status, data.error says why, no output URLs."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, fail_rate=1.0, failed_status=failed_status)
    async with emu.client() as client:
        task_id = await create(client)
        assert "error" not in (await query(client, task_id))["data"]
        clock.advance(1)
        data = (await query(client, task_id))["data"]
    assert data["status"] == failed_status
    assert data["output_urls"] == []
    assert data["error"].startswith("generation failed")


@pytest.mark.parametrize("field", ["error_msg", "errorMsg"])
async def test_the_failure_reason_can_move_to_another_field(
    emulator_factory: Any, field: str
) -> None:
    """--failure-field: the reason is in data.error_msg, or in the wrapper's errorMsg."""
    emu = emulator_factory(gen_seconds=(0, 0), fail_rate=1.0, failure_field=field)
    async with emu.client() as client:
        body = await query(client, await create(client))
    assert "error" not in body["data"]
    holder = body if field == "errorMsg" else body["data"]
    assert holder[field].startswith("generation failed")
    assert (body["success"], body["data"]["status"]) == (True, -1)


async def test_cover_url_lists_a_png_before_the_video(emulator_factory: Any) -> None:
    """--cover-url: output_urls is [cover .png, video .mp4], and both can be fetched."""
    emu = emulator_factory(gen_seconds=(0, 0), cover_url=True)
    async with emu.client() as client:
        task_id = await create(client)
        urls = (await query(client, task_id))["data"]["output_urls"]
        cover, video = [await client.get(u) for u in urls]
    assert urls == [
        f"http://testserver/__emulator/frames/{task_id}.png",
        f"http://testserver/files/{task_id}.mp4",
    ]
    assert cover.headers["content-type"] == "image/png"
    assert video.content == sample_video()


async def test_extra_status_shows_in_the_second_half_of_generation(emulator_factory: Any) -> None:
    """--extra-status 5: status 0, then 5 from halfway, then 1."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, gen_seconds=(4, 4), extra_status=5)
    async with emu.client() as client:
        task_id = await create(client)
        seen = []
        for _ in range(3):
            seen.append((await query(client, task_id))["data"]["status"])
            clock.advance(2.5)
    assert seen == [0, 5, 1]


async def test_generation_times_follow_the_seed(emulator_factory: Any) -> None:
    """The same --seed gives the same generation times; they stay within --gen-seconds."""

    async def gen_times(seed: int) -> list[float]:
        emu = emulator_factory(clock=FakeClock(), gen_seconds=(2, 6), seed=seed)
        async with emu.client() as client:
            for _ in range(5):
                await create(client)
        tasks = emu.stats()["tasks"]
        return [(parse_time(t["finish_at"]) - parse_time(t["created_at"])) / 1000 for t in tasks]

    first, again, other = await gen_times(3), await gen_times(3), await gen_times(4)
    assert first == again
    assert first != other
    assert all(2 <= t <= 6 for t in first + other)


async def test_video_download_is_stable_and_needs_no_key(emulator_factory: Any) -> None:
    """The video: video/mp4, exact Content-Length and bytes, HEAD, Range, If-None-Match."""
    emu = emulator_factory(gen_seconds=(0, 0))
    data = sample_video()
    async with emu.client() as client:
        url = (await query(client, await create(client)))["data"]["output_urls"][0]
    async with httpx.AsyncClient(transport=emu.transport) as anonymous:
        full = await anonymous.get(url)
        head = await anonymous.head(url)
        part = await anonymous.get(url, headers={"Range": "bytes=0-99"})
        tail = await anonymous.get(url, headers={"Range": "bytes=-10"})
        cached = await anonymous.get(url, headers={"If-None-Match": full.headers["etag"]})
        beyond = await anonymous.get(url, headers={"Range": f"bytes={len(data)}-"})
    assert full.status_code == 200
    assert full.headers["content-type"] == "video/mp4"
    assert int(full.headers["content-length"]) == len(data)
    assert full.content == data
    assert data[4:8] == b"ftyp"
    assert head.status_code == 200 and head.content == b""
    assert head.headers["content-length"] == str(len(data))
    assert (part.status_code, part.content) == (206, data[:100])
    assert part.headers["content-range"] == f"bytes 0-99/{len(data)}"
    assert (tail.status_code, tail.content) == (206, data[-10:])
    assert cached.status_code == 304
    assert beyond.status_code == 416


async def test_download_content_type_can_be_octet_stream(emulator_factory: Any) -> None:
    """--download-content-type application/octet-stream, as some CDNs answer."""
    emu = emulator_factory(gen_seconds=(0, 0), download_content_type="application/octet-stream")
    async with emu.client() as client:
        url = (await query(client, await create(client)))["data"]["output_urls"][0]
        response = await client.get(url)
    assert response.headers["content-type"] == "application/octet-stream"
    assert response.content == sample_video()


async def test_no_video_before_completion_or_for_unknown_tasks(emulator_factory: Any) -> None:
    """A running task's or an unknown task's file is 404."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, gen_seconds=(5, 5))
    async with emu.client() as client:
        task_id = await create(client)
        early = await client.get(f"/files/{task_id}.mp4")
        unknown = await client.get(f"/files/{uuid.uuid4()}.mp4")
        clock.advance(5)
        later = await client.get(f"/files/{task_id}.mp4")
    assert (early.status_code, unknown.status_code, later.status_code) == (404, 404, 200)


async def test_output_urls_expire_and_a_fresh_query_gives_a_working_one(
    emulator_factory: Any,
) -> None:
    """--output-url-ttl: an old URL is refused (403), a new query gives a new URL that works."""
    clock = FakeClock()
    emu = emulator_factory(clock=clock, gen_seconds=(0, 0), output_url_ttl=60)
    async with emu.client() as client:
        task_id = await create(client)
        first = (await query(client, task_id))["data"]["output_urls"][0]
        assert re.search(r"\.mp4\?exp=\d+&sig=[0-9a-f]+$", first)
        assert (await client.get(first)).status_code == 200
        clock.advance(61)
        expired = await client.get(first)
        fresh = (await query(client, task_id))["data"]["output_urls"][0]
        tampered = await client.get(re.sub(r"exp=\d+", "exp=99999999999999", fresh))
        unsigned = await client.get(f"/files/{task_id}.mp4")
        works = await client.get(fresh)
    assert expired.status_code == 403
    assert "expired" in expired.text
    assert fresh != first
    assert tampered.status_code == 403
    assert unsigned.status_code == 403
    assert works.content == sample_video()


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


async def test_frames_are_pngs_with_cache_validators_and_ranges(emulator_factory: Any) -> None:
    """/__emulator/frames/NAME.png: a PNG, stable per name, with ETag, HEAD, Range and 304."""
    emu = emulator_factory()
    async with httpx.AsyncClient(transport=emu.transport, base_url=emu.base_url) as client:
        first = await client.get("/__emulator/frames/s01.png")
        again = await client.get("/__emulator/frames/s01.png")
        end = await client.get("/__emulator/frames/s01-end.png")
        head = await client.head("/__emulator/frames/s01.png")
        part = await client.get("/__emulator/frames/s01.png", headers={"Range": "bytes=0-7"})
        cached = await client.get(
            "/__emulator/frames/s01.png", headers={"If-None-Match": first.headers["etag"]}
        )
        bad = await client.get("/__emulator/frames/..%2Fetc.png")
        not_png = await client.get("/__emulator/frames/s01.jpg")
    assert first.status_code == 200
    assert first.headers["content-type"] == "image/png"
    assert "last-modified" in first.headers
    assert _png_size(first.content) == (640, 360)
    assert first.content == again.content
    assert first.headers["etag"] == again.headers["etag"]
    assert end.content != first.content
    assert head.headers["content-length"] == str(len(first.content))
    assert (part.status_code, part.content) == (206, first.content[:8])
    assert cached.status_code == 304
    assert (bad.status_code, not_png.status_code) == (404, 404)
    # The "../" name never reaches the handler: the router answers 404 itself.
    assert emu.stats()["requests"]["frames"] == {"200": 4, "206": 1, "304": 1, "404": 1}
