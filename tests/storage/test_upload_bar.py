"""On a terminal, `batchkling run` shows a bar of the images it uploads, as `upload` does."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pexpect

from tests.runner_helpers import ROOT
from tests.storage.conftest import S3Server, write_frames


def test_run_on_a_terminal_shows_the_upload_bar(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """The bar names the uploads and counts images; the run then renders every shot."""
    write_frames(tmp_path / "frames", ["a", "b", "c"])
    manifest = tmp_path / "board.yaml"
    manifest.write_text(
        "version: 1\nupload_to: s3://frames/ep01/\nshots:\n"
        + "".join(
            f"  - id: s{i}\n    prompt: shot {i} turns\n    image: frames/{name}.png\n"
            for i, name in enumerate("abc", start=1)
        ),
        encoding="utf-8",
    )
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=(0.05, 0.2))
    env = {**os.environ, "SJINN_API_KEY": "test-key", "SJINN_API_BASE": emulator.base_url}
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "batchkling",
            "run",
            str(manifest),
            "--poll-interval",
            "0.05,0.3",
            "--rate",
            "100/s",
            "--usage-settle",
            "0.3",
        ],
        env=env,
        cwd=str(ROOT),
        dimensions=(24, 160),
        encoding="utf-8",
        timeout=60,
    )
    child.expect(pexpect.EOF)
    child.close()
    screen = child.before or ""
    assert child.exitstatus == 0, screen
    assert "uploading" in screen and "image" in screen  # the bar: "uploading: ... 3/3 ... image"
    assert "3/3" in screen
    assert s3.count("PUT") == 3
