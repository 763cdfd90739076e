"""``run_manifest`` as a library call: the whole sequence of a run, without the command line."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

from batchkling import BudgetError, InsufficientBalanceError, load_manifest, run_manifest
from batchkling.api.client import SjinnClient, make_http_client
from batchkling.api.gate import RequestGate
from batchkling.model import JobState
from batchkling.run.events import Checked, Opened, Planned, RunEvent, Started
from batchkling.run.options import Progress, RunOptions
from batchkling.run.session import EXIT_INTERRUPTED, LEDGER_FORMAT
from batchkling.schedule import Rate
from tests.emulator_fixtures import InProcessEmulator
from tests.runner_helpers import write_manifest

pytestmark = pytest.mark.anyio

Factory = Callable[..., InProcessEmulator]
FAST = RunOptions(poll_min=0.01, poll_max=0.05, usage_settle=0.3)


@asynccontextmanager
async def connected(emu: InProcessEmulator) -> AsyncIterator[tuple[SjinnClient, Any]]:
    """A client of the in-process emulator, and the HTTP client that fetches its images."""
    async with make_http_client(transport=emu.transport) as http:
        gate = RequestGate(Rate(500, 1.0))
        yield SjinnClient(http, base_url=emu.base_url, api_key="test-key", gate=gate), http


def ledger(run_dir: Path) -> list[dict[str, Any]]:
    """Every line of the run directory's ledger."""
    text = (run_dir / "ledger.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


async def test_a_manifest_runs_to_the_end_without_the_cli(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """Every job is done, the events arrive in order, and the ledger opens and closes the run."""
    emu = emulator_factory(gen_seconds=(0.02, 0.05))
    manifest = load_manifest(write_manifest(tmp_path, emu.base_url, 3))
    run_dir = tmp_path / "board.run"
    seen: list[RunEvent] = []
    async with connected(emu) as (client, http):
        result = await run_manifest(
            manifest, run_dir, client=client, http=http, options=FAST, progress=seen.append
        )
    assert result.exit_status == 0 and result.counts == {"done": 3}
    assert set(result.states.values()) == {JobState.DONE}
    kinds = [type(e) for e in seen if not isinstance(e, Progress)]
    assert kinds == [Opened, Planned, Checked, Started]
    lines = ledger(run_dir)
    assert lines[0]["event"] == "header" and lines[0]["format"] == LEDGER_FORMAT
    assert lines[1]["event"] == "run_started"
    assert lines[-1]["event"] == "run_ended" and lines[-1]["exit_status"] == 0
    assert lines[-1]["api_calls"] == result.api_calls > 0
    assert emu.stats()["tasks_created"] == 3


async def test_a_refusal_in_preflight_is_raised_and_recorded(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """A balance that cannot pay raises before any create, and run_ended records its status."""
    emu = emulator_factory(balance=500)
    manifest = load_manifest(write_manifest(tmp_path, emu.base_url, 2))
    run_dir = tmp_path / "board.run"
    async with connected(emu) as (client, http):
        with pytest.raises(InsufficientBalanceError):
            await run_manifest(manifest, run_dir, client=client, http=http, options=FAST)
    last = ledger(run_dir)[-1]
    assert last["event"] == "run_ended" and last["exit_status"] == 4
    assert emu.stats()["tasks_created"] == 0


async def test_a_run_over_budget_is_refused_before_it_starts(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """Over budget, nothing but the header is written and nothing is sent."""
    emu = emulator_factory()
    manifest = load_manifest(write_manifest(tmp_path, emu.base_url, 3, budget=2500))
    run_dir = tmp_path / "board.run"
    async with connected(emu) as (client, http):
        with pytest.raises(BudgetError):
            await run_manifest(manifest, run_dir, client=client, http=http, options=FAST)
    assert [line["event"] for line in ledger(run_dir)] == ["header"]
    assert emu.stats()["requests"] == {}


async def test_setting_stop_ends_the_run_cleanly(emulator_factory: Factory, tmp_path: Path) -> None:
    """Stopped once a task runs: no new creates, nothing in doubt, exit status 130."""
    emu = emulator_factory(gen_seconds=(30.0, 30.0))
    manifest = load_manifest(write_manifest(tmp_path, emu.base_url, 4))
    run_dir = tmp_path / "board.run"
    stop = anyio.Event()

    def on_event(event: RunEvent) -> None:
        if isinstance(event, Progress) and event.counts.get("running"):
            stop.set()

    options = RunOptions(concurrency=1, poll_min=0.01, poll_max=0.05, usage_settle=None)
    async with connected(emu) as (client, http):
        with anyio.fail_after(10):
            result = await run_manifest(
                manifest,
                run_dir,
                client=client,
                http=http,
                options=options,
                progress=on_event,
                preflight=False,
                stop=stop,
            )
    assert result.interrupted and result.exit_status == EXIT_INTERRUPTED
    assert result.counts == {"running": 1, "pending": 3}
    assert ledger(run_dir)[-1]["exit_status"] == EXIT_INTERRUPTED
    assert emu.stats()["tasks_created"] == 1
