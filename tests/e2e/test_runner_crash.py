"""Crashes and interruptions of real `batchkling run` processes lose nothing and never pay twice."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchkling.ledger import LEDGER_NAME, fold_ledger
from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import creates_per_prompt, ledger_lines, spawn_run, write_manifest

Factory = Callable[..., LiveEmulator]

pytestmark = pytest.mark.slow


def _wait_for(path: Path, event: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and f'"event":"{event}"' in path.read_text():
            return
        time.sleep(0.02)
    raise AssertionError(f"no {event} event in {path} after {timeout} s")


def test_sigkill_at_random_points_never_pays_twice(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """SIGKILL at random instants, many times: every job ends done, each created exactly once."""
    # Slow answers widen the window between an intent and its answer, where a kill
    # leaves the create in doubt for reconciliation to settle.
    emu = live_emulator_factory(gen_seconds=(0.3, 1.2), latency=(0.05, 0.15), seed=5)
    manifest = write_manifest(tmp_path, emu.base_url, 24, prompt="frame {i} drifts")
    ledger = tmp_path / "board.run" / LEDGER_NAME
    rng = random.Random(20261124)
    kills = 0
    for _ in range(14):
        proc = spawn_run(manifest, emu.base_url, "--concurrency", "3")
        time.sleep(rng.uniform(0.3, 1.6))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.communicate()
        fold_ledger(ledger)  # whatever the instant, the ledger reads back
    assert kills >= 8
    final = spawn_run(manifest, emu.base_url, "--concurrency", "3")
    out, err = final.communicate(timeout=90)
    assert final.returncode == 0, out + err
    stats = emu.stats()
    assert set(creates_per_prompt(stats).values()) == {1}
    assert stats["tasks_created"] == 24
    st = fold_ledger(ledger).state
    assert {r.state.value for r in st.jobs.values()} == {"done"}
    assert st.credits_committed == stats["credits_charged"]["test-key"]
    ledger_lines(tmp_path / "board.run")


def test_sigint_stops_cleanly_and_resumes(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """First SIGINT: sent creates are recorded, exit 130, resume hint; the next run finishes."""
    emu = live_emulator_factory(gen_seconds=(1.0, 2.0), latency=(0.05, 0.1))
    manifest = write_manifest(tmp_path, emu.base_url, 8)
    ledger = tmp_path / "board.run" / LEDGER_NAME
    proc = spawn_run(manifest, emu.base_url, "--concurrency", "2")
    _wait_for(ledger, "created")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 130, out + err
    assert "run the same command again" in out.lower()
    st = fold_ledger(ledger).state
    # No create was left without its answer: nothing is in doubt after a clean stop.
    assert all(r.state.value != "in_doubt" for r in st.jobs.values())
    created_before = emu.stats()["tasks_created"]
    assert 0 < created_before < 8
    assert ledger_lines(tmp_path / "board.run")[-1]["event"] == "run_ended"
    final = spawn_run(manifest, emu.base_url, "--concurrency", "4")
    out, err = final.communicate(timeout=90)
    assert final.returncode == 0, out + err
    assert set(creates_per_prompt(emu.stats()).values()) == {1}


def test_second_sigint_exits_at_once(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """A second signal leaves at once; the ledger still reads back and the next run finishes."""
    emu = live_emulator_factory(gen_seconds=(1.0, 2.0), latency=(0.2, 0.3))
    manifest = write_manifest(tmp_path, emu.base_url, 6)
    ledger = tmp_path / "board.run" / LEDGER_NAME
    proc = spawn_run(manifest, emu.base_url, "--concurrency", "3")
    _wait_for(ledger, "intent")
    proc.send_signal(signal.SIGINT)
    time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=20)
    assert proc.returncode == 130
    fold_ledger(ledger)
    final = spawn_run(manifest, emu.base_url, "--concurrency", "3")
    out, err = final.communicate(timeout=90)
    assert final.returncode == 0, out + err
    assert set(creates_per_prompt(emu.stats()).values()) == {1}


def test_emulator_restart_while_running(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """The server restarts (keeping its --state) under a running run: the run rides it out."""
    state = tmp_path / "emulator-state.jsonl"
    emu = live_emulator_factory(state_file=str(state), gen_seconds=(0.5, 1.0))
    manifest = write_manifest(tmp_path, emu.base_url, 8)
    ledger = tmp_path / "board.run" / LEDGER_NAME
    proc = spawn_run(manifest, emu.base_url, "--concurrency", "3")
    _wait_for(ledger, "created")
    emu.stop()
    time.sleep(0.5)  # requests meanwhile are refused: provably not sent, retried
    emu.start()
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, out + err
    assert set(creates_per_prompt(emu.stats()).values()) == {1}
    assert emu.stats()["tasks_created"] == 8


def test_sigkill_with_lost_answers_and_a_lagging_usage_never_pays_twice(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """Lost answers, a usage list behind its charges and SIGKILL at random: never paid twice."""
    emu = live_emulator_factory(
        gen_seconds=(0.2, 0.6),
        latency=(0.03, 0.1),
        lost_response_rate=0.3,
        usage_lag=0.6,
        seed=9,
    )
    manifest = write_manifest(tmp_path, emu.base_url, 16, prompt="drift {i} mixes")
    ledger = tmp_path / "board.run" / LEDGER_NAME
    rng = random.Random(20261125)
    kills = 0
    for _ in range(12):
        proc = spawn_run(manifest, emu.base_url, "--concurrency", "3")
        time.sleep(rng.uniform(0.2, 1.4))
        if proc.poll() is None:
            proc.kill()
            kills += 1
        out, err = proc.communicate()
        assert "Traceback" not in out + err, out + err
        fold_ledger(ledger)  # whatever the instant, the ledger reads back
        assert max(creates_per_prompt(emu.stats()).values(), default=0) <= 1
    assert kills >= 6
    final = spawn_run(manifest, emu.base_url, "--concurrency", "3", "--usage-settle", "1")
    out, err = final.communicate(timeout=60)
    assert final.returncode in (0, 1) and "Traceback" not in out + err, out + err
    stats = emu.stats()
    assert stats["requests"]["create_tool_task"].get("lost", 0) > 0
    assert max(creates_per_prompt(stats).values()) == 1
    st = fold_ledger(ledger).state
    assert stats["credits_charged"]["test-key"] <= st.credits_committed
    states = [r.state.value for r in st.jobs.values()]
    assert set(states) <= {"done", "in_doubt"} and states.count("done") >= 12
    ledger_lines(tmp_path / "board.run")
