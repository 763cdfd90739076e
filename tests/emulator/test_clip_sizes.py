"""The emulator's clip sizes: one size for every clip, or sizes taken in turn by task."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchkling.cli.mock_server import config_from_args, register
from batchkling.emulator import EmulatorConfig
from batchkling.emulator.assets import sample_video
from batchkling.emulator.clips import CLIP_SIZE, clip, parse_size
from batchkling.emulator.config import parse_sizes
from batchkling.errors import UsageError
from batchkling.video.verify import inspect_video
from tests.emulator_fixtures import TEST_KEY, LiveEmulator, kling_body

CREATE = "/api/un-api/create_tool_task"
QUERY = "/api/un-api/query_tool_task_status"


def _size_of(tmp_path: Path, body: bytes, name: str = "v.mp4") -> tuple[int, int]:
    path = tmp_path / name
    path.write_bytes(body)
    info = inspect_video(path).info
    return (info.width, info.height)


def _mock_server_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return parser.parse_args(["mock-server", *argv])


def test_a_clip_of_another_size_is_a_real_video_of_that_size(tmp_path: Path) -> None:
    """320x180 as FFmpeg reads it, the same length; the default stays 160x90 and shared."""
    assert _size_of(tmp_path, clip(3, (320, 180))) == (320, 180)
    assert inspect_video(tmp_path / "v.mp4").info.duration == pytest.approx(3)
    assert _size_of(tmp_path, clip(3), "d.mp4") == CLIP_SIZE == (160, 90)
    assert clip(5) is clip(5, (160, 90)) is sample_video()


def test_sizes_are_read_and_checked() -> None:
    """WxH with even sides; a list of them; anything else is refused with a reason."""
    assert parse_size("320x180") == (320, 180) and parse_size(" 64X36 ") == (64, 36)
    assert parse_sizes("160x90,320x180") == ((160, 90), (320, 180))
    for bad in ("320", "axb", "321x180", "0x0", "9000x90"):
        with pytest.raises(ValueError, match="size"):
            parse_size(bad)
    with pytest.raises(ValueError, match="even sides"):
        EmulatorConfig(clip_size=(161, 90))


def test_the_settings_take_sizes_in_turn_and_change_at_run_time() -> None:
    """clip_sizes cycles by creation order; JSON values as POST /__emulator/config sends them."""
    config = EmulatorConfig(clip_sizes=((160, 90), (320, 180)))
    assert [config.clip_size_of(n) for n in range(3)] == [(160, 90), (320, 180), (160, 90)]
    assert EmulatorConfig().clip_size_of(7) == (160, 90)
    changed = EmulatorConfig().with_changes({"clip_size": "64x36", "clip_sizes": [[96, 54]]})
    assert changed.clip_size == (64, 36) and changed.clip_sizes == ((96, 54),)
    assert changed.to_json()["clip_sizes"] == [[96, 54]]
    with pytest.raises(ValueError, match="clip_size"):
        EmulatorConfig().with_changes({"clip_size": 3})


def test_the_mock_server_flags() -> None:
    """--clip-size and --clip-sizes reach the settings; the default is unchanged; bad is exit 2."""
    assert config_from_args(_mock_server_args()).clip_size == (160, 90)
    assert config_from_args(_mock_server_args()).clip_sizes == ()
    config = config_from_args(
        _mock_server_args("--clip-size", "320x180", "--clip-sizes", "64x36,96x54")
    )
    assert config.clip_size == (320, 180) and config.clip_sizes == ((64, 36), (96, 54))
    with pytest.raises(SystemExit):
        _mock_server_args("--clip-size", "31x9")
    args = _mock_server_args()
    args.clip_size = (3, 3)
    with pytest.raises(UsageError, match="even sides"):
        config_from_args(args)


def _download(live: LiveEmulator, client: httpx.Client) -> bytes:
    task_id = client.post(CREATE, json=kling_body(duration=3)).json()["data"]["task_id"]
    url: str = client.post(QUERY, json={"task_id": task_id}).json()["data"]["output_urls"][0]
    return httpx.get(url).content


def test_tasks_served_over_http_take_the_sizes_in_turn(
    live_emulator_factory: Any, tmp_path: Path
) -> None:
    """Three tasks with --clip-sizes 160x90,320x180 serve 160x90, 320x180, 160x90."""
    live = live_emulator_factory(gen_seconds=(0, 0), clip_sizes=((160, 90), (320, 180)))
    headers = {"Authorization": f"Bearer {TEST_KEY}"}
    with httpx.Client(base_url=live.base_url, headers=headers) as c:
        sizes = [_size_of(tmp_path, _download(live, c), f"{n}.mp4") for n in range(3)]
        assert sizes == [(160, 90), (320, 180), (160, 90)]
        live.set_config(clip_sizes=[], clip_size="64x36")
        assert _size_of(tmp_path, _download(live, c), "last.mp4") == (64, 36)
