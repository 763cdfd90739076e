"""Adaptive concurrency against an account limit, versus the limit set by hand.

Run with `make bench BENCH=concurrency`. The emulator allows 3 tasks at once; a run
with `--concurrency 8` finds that limit (AIMD) and is compared, pair by pair in one
process, with a run told `--concurrency 3`. Prints each makespan, the refusals the
server counted, and the ratio. Nothing here asserts a time.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from pathlib import Path

from batchkling.emulator.config import EmulatorConfig
from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import FAST, run_cli, write_manifest

JOBS = 24
LIMIT = 3


def _once(concurrency: int, seed: int) -> tuple[float, int]:
    os.environ["SJINN_API_KEY"] = "bench"
    os.environ["XDG_STATE_HOME"] = tempfile.mkdtemp()
    config = EmulatorConfig(gen_seconds=(0.5, 1.0), seed=seed, max_running=LIMIT)
    emu = LiveEmulator(config).start()
    try:
        manifest = write_manifest(Path(tempfile.mkdtemp()), emu.base_url, JOBS)
        t0 = time.perf_counter()
        res = run_cli(
            "run", str(manifest), "--api-base", emu.base_url, *FAST,
            "--concurrency", str(concurrency), "--no-download",
        )  # fmt: skip
        wall = time.perf_counter() - t0
        assert res.code == 0, res.out + res.err
        creates = emu.stats()["requests"].get("create_tool_task", {})
        return wall, int(creates.get("429", 0))
    finally:
        emu.stop()


def main() -> None:
    ratios = []
    for seed in range(3):
        adaptive, refused = _once(8, seed)
        by_hand, _ = _once(LIMIT, seed)
        ratios.append(adaptive / by_hand)
        print(
            f"seed {seed}: adaptive (--concurrency 8) {adaptive:.2f} s, {refused} refusals; "
            f"by hand (--concurrency {LIMIT}) {by_hand:.2f} s; ratio {adaptive / by_hand:.2f}"
        )
    print(f"median ratio adaptive / by hand: {statistics.median(ratios):.2f} (target <= 1.10)")
