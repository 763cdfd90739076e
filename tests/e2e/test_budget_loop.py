"""With every create answer lost, the budget never passes through a loop of resubmissions."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.emulator_fixtures import MockServerProcess
from tests.runner_helpers import creates_per_prompt, spawn_run

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("defect", [None, "empty"])
def test_every_answer_lost_pays_a_fractional_job_once_within_the_budget(
    tmp_path: Path, mock_server_process: Callable[..., MockServerProcess], defect: str | None
) -> None:
    """7.5 s (billed 1,500, reserved 1,600), budget 1,600, every answer lost: paid once at most."""
    flags = ["--lost-response-rate", "1", "--gen-seconds", "0.05,0.1", "--seed", "2"]
    server = mock_server_process(*flags, *(["--usage-defect", defect] if defect else []))
    manifest = tmp_path / "frac.yaml"
    manifest.write_text(
        "version: 1\n"
        f"image_base_url: {server.url}/__emulator/frames/\n"
        "budget: 1600\n"
        "shots:\n"
        "  - {id: s01, prompt: a fractional shot, image: s01.png, duration: 7.5}\n",
        encoding="utf-8",
    )
    outs = []
    for _ in range(3):  # run after run, however long it goes
        proc = spawn_run(manifest, server.url, "--usage-settle", "0.2", "--skip-preflight")
        out, err = proc.communicate(timeout=30)
        assert proc.returncode in (0, 1) and "Traceback" not in out + err, out + err
        outs.append(out)
    stats = httpx.get(server.url + "/__emulator/stats").json()
    assert stats["tasks_created"] == 1 and set(creates_per_prompt(stats).values()) == {1}
    assert stats["credits_charged"]["test-key"] <= 1600
    if defect is None:
        assert "audit: clean" in outs[-1]  # adopted: the charge is in the ledger
    else:  # the usage shows nothing: never "never created" without proof, and says why
        assert "s01: still in doubt: " in outs[-1]
