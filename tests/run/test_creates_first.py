"""With many polls waiting at the gate, a create for a slot that came free is sent first."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import ledger_lines, run_cli, write_manifest


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.timeout(60)
def test_a_create_overtakes_the_polls_waiting_at_the_gate(
    live_emulator_factory: Callable[..., LiveEmulator],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Eleven tasks poll as fast as the rate allows; each refill is sent within two requests."""
    monkeypatch.setenv("SJINN_API_KEY", "test-key")
    emu = live_emulator_factory(gen_seconds=(1.0, 2.0), seed=3)
    manifest = write_manifest(tmp_path, emu.base_url, 24, prompt="refill {i}")
    res = run_cli(
        "run", str(manifest), "--api-base", emu.base_url, "--skip-preflight", "--quiet",
        "--concurrency", "12", "--rate", "20/s", "--poll-interval", "0.02,0.02",
        "--usage-settle", "0.3", "--no-download",
    )  # fmt: skip
    assert res.code == 0, res.out + res.err
    stats = emu.stats()
    arrivals = sorted(stats["request_times"]["test-key"])
    created = sorted(_ts(t["created_at"]) for t in stats["tasks"])
    lines = ledger_lines(tmp_path / "board.run")
    completed = sorted(_ts(e["ts"]) for e in lines if e["event"] == "completed")
    # The slots of the first wave free up one by one while eleven other tasks keep
    # polling: the gate holds about eleven polls whenever a create comes in. Jobs
    # take the slots in turn, so the k-th completion frees the slot of the k-th
    # job of the second wave. Count the requests the server received between a
    # slot coming free and the create that refilled it.
    overtaken = []
    for freed, at in zip(completed[:12], created[12:], strict=True):
        between = bisect.bisect_left(arrivals, at) - bisect.bisect_right(arrivals, freed)
        overtaken.append(between)
    assert len(overtaken) == 12
    assert max(overtaken) <= 2, overtaken  # in line behind the polls, about eleven each
    # The gate was saturated: requests arrived at the rate, all the way.
    span = arrivals[-1] - arrivals[0]
    assert len(arrivals) >= 0.9 * 20 / 1.02 * span
