"""``--fetch-images``: the emulator fetches a create's images as the provider would."""

from __future__ import annotations

from typing import Any

import httpx

from batchkling.cli import _parse
from batchkling.cli.mock_server import config_from_args
from tests.emulator_fixtures import TEST_KEY, kling_body

CREATE = "/api/un-api/create_tool_task"


def _create(base_url: str, **fields: Any) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    answer = httpx.post(base_url + CREATE, json=kling_body(**fields), headers=headers, timeout=30)
    assert answer.status_code == 200
    body: dict[str, Any] = answer.json()
    return body


def test_a_fetchable_image_is_created(live_emulator_factory: Any) -> None:
    """Start and tail images that answer with a PNG: the create succeeds and is charged."""
    live = live_emulator_factory(fetch_images=True, gen_seconds=(0.05, 0.1))
    frame = live.base_url + "/__emulator/frames/"
    body = _create(live.base_url, image=frame + "a.png", tail_image_url=frame + "b.png")
    assert body["success"] is True, body
    assert live.stats()["tasks_created"] == 1


def test_an_image_that_is_not_there_or_not_an_image_is_error_400(
    live_emulator_factory: Any,
) -> None:
    """A 404, a JSON page or a refused connection: error 400 naming the field; nothing charged."""
    live = live_emulator_factory(fetch_images=True, gen_seconds=(0.05, 0.1))
    frame = live.base_url + "/__emulator/frames/a.png"
    cases = {
        "image": (live.base_url + "/files/nope.mp4", "the URL answered HTTP 404"),
        "tail_image_url": (live.base_url + "/__emulator/stats", "not answer with a JPEG"),
    }
    for field, (url, reason) in cases.items():
        body = _create(live.base_url, **{"image": frame, field: url})
        assert body["success"] is False and body["error_code"] == 400, body
        assert (
            body["errorMsg"].startswith(f"{field} could not be fetched: ")
            and reason in body["errorMsg"]
        )
    down = _create(live.base_url, image="http://127.0.0.1:9/a.png")
    assert down["error_code"] == 400 and "did not answer" in down["errorMsg"]
    stats = live.stats()
    assert stats["tasks_created"] == 0 and stats["faults"]["image_unfetchable"] == 3
    assert stats["credits_charged"].get(TEST_KEY, 0) == 0


def test_without_the_setting_images_are_not_fetched(live_emulator_factory: Any) -> None:
    """By default a URL nobody answers is taken as it is, as before."""
    live = live_emulator_factory(gen_seconds=(0.05, 0.1))
    assert _create(live.base_url, image="http://127.0.0.1:9/a.png")["success"] is True


def test_the_flag_sets_the_setting() -> None:
    """``mock-server --fetch-images`` turns the setting on; it is off by default."""
    assert config_from_args(_parse(["mock-server", "--fetch-images"])).fetch_images
    assert not config_from_args(_parse(["mock-server"])).fetch_images
