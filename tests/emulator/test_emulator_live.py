"""The emulator served by uvicorn on loopback: real sockets, dropped connections, restarts."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchkling.emulator.assets import sample_video
from tests.emulator_fixtures import TEST_KEY, FakeClock, kling_body

CREATE = "/api/un-api/create_tool_task"
QUERY = "/api/un-api/query_tool_task_status"
USAGE = "/api/un-api/query_credits_usage"
ACCOUNT = "/api/un-api/query_account_status"


def client(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {TEST_KEY}"})


def create(c: httpx.Client) -> str:
    body = c.post(CREATE, json=kling_body()).json()
    assert body["success"] is True, body
    task_id: str = body["data"]["task_id"]
    return task_id


def test_uvicorn_serves_the_whole_round_trip_on_loopback(live_emulator_factory: Any) -> None:
    """Create, query until done, download: over a real socket, URLs point at the server."""
    live = live_emulator_factory(gen_seconds=(0, 0))
    assert live.base_url.startswith("http://127.0.0.1:")
    with client(live.base_url) as c:
        task_id = create(c)
        data = c.post(QUERY, json={"task_id": task_id}).json()["data"]
        assert data["output_urls"] == [f"{live.base_url}/files/{task_id}.mp4"]
        video = c.get(data["output_urls"][0])
    assert video.content == sample_video()
    assert video.headers["content-length"] == str(len(sample_video()))
    assert live.stats()["requests"]["create_tool_task"] == {"200": 1}


def test_a_lost_response_over_loopback_is_a_transport_error_after_charging(
    live_emulator_factory: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    """The connection closes with no HTTP answer at all, and the task was created and charged."""
    live = live_emulator_factory(lost_response_rate=1.0, balance=5_000)
    with client(live.base_url) as c:
        with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
            c.post(CREATE, json=kling_body())
        live.set_config(lost_response_rate=0.0)
        # The same client goes on working on a new connection.
        records = c.get(USAGE).json()["data"]["records"]
        balance = c.get(ACCOUNT).json()["data"]["balances"]
    stats = live.stats()
    assert stats["tasks_created"] == 1
    assert [r["task_id"] for r in records] == [stats["tasks"][0]["task_id"]]
    assert balance == 4_000
    assert stats["requests"]["create_tool_task"] == {"lost": 1}
    # uvicorn neither answered 500 nor logged the dropped request as an app error.
    assert "ASGI callable" not in capfd.readouterr().err


def test_a_cut_download_over_loopback_is_an_incomplete_body(live_emulator_factory: Any) -> None:
    """Headers promise the full length, half the body arrives, then the socket closes."""
    live = live_emulator_factory(gen_seconds=(0, 0), download_fail_rate=1.0)
    size = len(sample_video())
    with client(live.base_url) as c:
        url = c.post(QUERY, json={"task_id": create(c)}).json()["data"]["output_urls"][0]
        with c.stream("GET", url) as response:
            assert response.status_code == 200
            assert response.headers["content-length"] == str(size)
            with pytest.raises(httpx.RemoteProtocolError, match="complete message body"):
                response.read()
    assert live.stats()["requests"]["files"] == {"cut": 1}


def test_a_restart_with_state_keeps_tasks_records_and_balance(
    live_emulator_factory: Any, tmp_path: Path
) -> None:
    """With --state, tasks, usage records and balances survive a restart on the same port."""
    live = live_emulator_factory(
        gen_seconds=(0, 0), balance=5_000, state_file=str(tmp_path / "state.jsonl")
    )
    with client(live.base_url) as c:
        task_id = create(c)
        before = c.get(USAGE).json()["data"]["records"]
    port = live.port
    live.restart()
    assert live.port == port
    with client(live.base_url) as c:
        data = c.post(QUERY, json={"task_id": task_id}).json()["data"]
        after = c.get(USAGE).json()["data"]["records"]
        balance = c.get(ACCOUNT).json()["data"]["balances"]
        video = c.get(data["output_urls"][0])
    assert data["status"] == 1
    assert after == before
    assert balance == 4_000
    assert video.content == sample_video()


def test_a_restart_without_state_forgets_every_task(live_emulator_factory: Any) -> None:
    """Without --state, a restarted emulator answers "task not found" for old ids."""
    live = live_emulator_factory()
    with client(live.base_url) as c:
        task_id = create(c)
    live.restart()
    with client(live.base_url) as c:
        answer = c.post(QUERY, json={"task_id": task_id}).json()
    assert answer["success"] is False
    assert "not found" in answer["errorMsg"]


def test_set_config_over_http_changes_a_running_server(live_emulator_factory: Any) -> None:
    """LiveEmulator.set_config posts to /__emulator/config; the next answer obeys it."""
    live = live_emulator_factory()
    with client(live.base_url) as c:
        assert c.get(ACCOUNT).status_code == 200
        assert live.set_config(errors_as_http=True)["errors_as_http"] is True
        response = c.post(CREATE, json=kling_body(prompt=""))
    assert response.status_code == 400


def test_a_task_running_across_a_restart_finishes_and_is_refunded_once(
    live_emulator_factory: Any, tmp_path: Path
) -> None:
    """A task still generating at restart finishes on time afterwards; its refund comes once."""
    clock = FakeClock()
    live = live_emulator_factory(
        clock=clock,
        gen_seconds=(10, 10),
        fail_rate=1.0,
        refund_failed=True,
        state_file=str(tmp_path / "state.jsonl"),
    )
    with client(live.base_url) as c:
        task_id = create(c)
        clock.advance(5)
    live.restart()
    with client(live.base_url) as c:
        assert c.post(QUERY, json={"task_id": task_id}).json()["data"]["status"] == 0
        assert live.stats()["running"] == {TEST_KEY: 1}
        clock.advance(5)
        assert c.post(QUERY, json={"task_id": task_id}).json()["data"]["status"] == -1
    live.restart()
    with client(live.base_url) as c:
        costs = [r["cost_credits"] for r in c.get(USAGE).json()["data"]["records"]]
    assert costs == [-1000, 1000]
    assert live.stats()["running"] == {TEST_KEY: 0}


PLAY = """(url) => new Promise((resolve) => {
    const v = document.createElement('video');
    v.muted = true;
    v.src = url;
    v.onended = () => resolve(['ended', v.videoWidth, v.videoHeight, v.duration]);
    v.onerror = () => resolve(['error', v.error.code, v.error.message]);
    document.body.appendChild(v);
    v.play().catch((e) => resolve(['play failed', String(e)]));
    setTimeout(() => resolve(['timeout', v.readyState, v.networkState]), 8000);
})"""


@pytest.mark.browser
def test_chromium_plays_the_video_to_the_end(live_emulator_factory: Any) -> None:
    """The served clip is a real H.264 video of the length asked: Chromium plays all of it."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.skip("needs Debian's chromium (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    live = live_emulator_factory(gen_seconds=(0, 0))
    with client(live.base_url) as c:
        url = c.post(QUERY, json={"task_id": create(c)}).json()["data"]["output_urls"][0]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium)
        try:
            page = browser.new_page()
            page.goto(live.base_url + "/__emulator/frames/s01.png")
            result = page.evaluate(PLAY, url)
        finally:
            browser.close()
    assert result == ["ended", 160, 90, 5]  # a 5 s task
    # Browsers fetch media with Range requests.
    assert "206" in live.stats()["requests"]["files"]
