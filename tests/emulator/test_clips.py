"""The emulator's videos: a real clip of the length asked, and three ways to send it wrong."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchkling.emulator import EmulatorConfig
from batchkling.emulator.assets import sample_video
from batchkling.emulator.clips import CLIP_FPS, clip, clip_frames
from batchkling.emulator.media import Answer, gzipped, no_length, short_length
from batchkling.video.verify import inspect_video
from tests.emulator_fixtures import TEST_KEY, LiveEmulator, kling_body

CREATE = "/api/un-api/create_tool_task"
QUERY = "/api/un-api/query_tool_task_status"


def test_a_clip_lasts_what_was_asked_to_the_nearest_frame(tmp_path: Path) -> None:
    """3, 7.5 and 15 s long, as FFmpeg reads them; never shorter than one frame."""
    for seconds in (3, 7.5, 15):
        path = tmp_path / f"{seconds}.mp4"
        path.write_bytes(clip(seconds))
        assert inspect_video(path).info.duration == pytest.approx(seconds)
    assert clip_frames(7.5) == 60 and clip_frames(0) == 1 and CLIP_FPS == 8


def test_a_clip_is_made_once_per_length() -> None:
    """The same bytes object every time; the sample clip is the 5 s one."""
    assert clip(5) is clip(5.01) is sample_video()
    assert clip(3) != clip(5)


def test_the_video_setting_is_checked() -> None:
    """An offset that is not a number of seconds is refused when the settings are made."""
    with pytest.raises(ValueError, match="video_duration_offset"):
        EmulatorConfig(video_duration_offset=float("nan"))
    changed = EmulatorConfig().with_changes({"video_duration_offset": -2, "download_gzip": True})
    assert (changed.video_duration_offset, changed.download_gzip) == (-2.0, True)


def test_the_spoiled_answers_are_what_their_names_say() -> None:
    """Short length: two thirds, framed; no length: half, chunked; gzip: the body compressed."""
    whole = Answer(200, {"content-type": "video/mp4"}, b"0123456789" * 3)
    short = short_length(whole)
    assert short.body == whole.body[:20] and short.headers["content-length"] == "20"
    cut = no_length(whole)
    assert cut.body == whole.body[:15] and cut.chunked and "content-length" not in cut.headers
    packed = gzipped(whole)
    assert gzip.decompress(packed.body) == whole.body
    assert packed.headers["content-encoding"] == "gzip"


def _finished(live: LiveEmulator, duration: int = 5) -> str:
    """The video URL of a task of ``duration`` seconds."""
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    with httpx.Client(base_url=live.base_url, headers=headers) as c:
        task_id = c.post(CREATE, json=kling_body(duration=duration)).json()["data"]["task_id"]
        url: str = c.post(QUERY, json={"task_id": task_id}).json()["data"]["output_urls"][0]
    return url


def test_a_task_serves_the_clip_of_its_own_length(live_emulator_factory: Any) -> None:
    """A 3 s task serves the 3 s clip; with an offset of 4 s, the 7 s one."""
    live = live_emulator_factory(gen_seconds=(0, 0))
    assert httpx.get(_finished(live, 3)).content == clip(3)
    live.set_config(video_duration_offset=4)
    assert httpx.get(_finished(live, 3)).content == clip(7)


@pytest.mark.parametrize(
    ("setting", "length", "body", "encoding"),
    [
        ("download_short_length", "two thirds", "two thirds", None),
        ("download_no_length", None, "half", None),
        ("download_gzip", "compressed", "compressed", "gzip"),
    ],
)
def test_a_spoiled_video_over_real_http(
    live_emulator_factory: Any, setting: str, length: str | None, body: str, encoding: str | None
) -> None:
    """What arrives on the wire, Accept-Encoding: identity or not; HEAD is left alone."""
    live = live_emulator_factory(gen_seconds=(0, 0), **{setting: True})
    url = _finished(live)
    data = clip(5)
    expected = {
        "two thirds": data[: len(data) * 2 // 3],
        "half": data[: len(data) // 2],
        "compressed": gzip.compress(data, mtime=0),
    }
    with httpx.Client() as c, c.stream("GET", url, headers={"Accept-Encoding": "identity"}) as r:
        raw = b"".join(r.iter_raw())
        headers = r.headers
    assert raw == expected[body]
    if length is None:
        assert "content-length" not in headers and headers["transfer-encoding"] == "chunked"
    else:
        assert headers["content-length"] == str(len(expected[length]))
    assert headers.get("content-encoding") == encoding
    head = httpx.head(url)
    assert head.headers["content-length"] == str(len(data))
    assert live.stats()["faults"][setting] == 1
