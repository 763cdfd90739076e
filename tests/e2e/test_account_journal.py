"""Two run directories of one account creating at the same time, as two real processes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batchkling.ledger import LEDGER_NAME, fold_ledger
from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import creates_per_prompt, spawn_run, write_manifest

Factory = Callable[..., LiveEmulator]

pytestmark = pytest.mark.slow


def test_two_run_directories_at_once_never_adopt_each_others_tasks(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """Same-price creates from two processes, answers lost or failed: each adopts only its own."""
    # A 5xx before processing leaves a create in doubt that was never charged: its
    # window is then open for the other run directory's charges to fall into.
    emu = live_emulator_factory(
        error_rate=0.12, lost_response_rate=0.3, latency=(0.05, 0.25), gen_seconds=(0.1, 0.3)
    )
    runs: dict[str, Path] = {}
    for name in ("left", "right"):
        folder = tmp_path / name
        folder.mkdir()
        runs[name] = write_manifest(folder, emu.base_url, 6, prompt=name + " shot {i}")
    procs = [spawn_run(m, emu.base_url, "--concurrency", "3") for m in runs.values()]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, 1) and "Traceback" not in out + err, out + err
    stats = emu.stats()
    assert max(creates_per_prompt(stats).values()) == 1
    prompt_of = {t["id"]: t["input"]["prompt"] for t in stats["tasks"]}
    adopted = committed = 0
    for name, manifest in runs.items():
        st = fold_ledger(manifest.parent / "board.run" / LEDGER_NAME).state
        committed += st.credits_committed
        for key, rec in st.jobs.items():
            if rec.task_id is not None:  # the job's task renders the job's own prompt
                assert prompt_of[rec.task_id] == f"{name} shot {int(key[1:])}", (name, key)
        lines = (manifest.parent / "board.run" / LEDGER_NAME).read_text()
        adopted += lines.count('"event":"reconciled"')
    assert adopted > 0  # lost answers were settled by adoption, not only left in doubt
    assert stats["credits_charged"]["test-key"] <= committed  # every charge is in a ledger
