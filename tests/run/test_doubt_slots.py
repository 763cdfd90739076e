"""A create in doubt keeps its concurrency slot until it is settled."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batchkling import load_manifest, run_manifest
from batchkling.api.client import SjinnClient, make_http_client
from batchkling.api.gate import RequestGate
from batchkling.run.options import RunOptions
from batchkling.schedule import Rate
from tests.emulator_fixtures import InProcessEmulator
from tests.runner_helpers import creates_per_prompt, write_manifest

pytestmark = pytest.mark.anyio

Factory = Callable[..., InProcessEmulator]


async def test_lost_answers_never_let_more_tasks_generate_than_the_concurrency(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """Concurrency 2 with half the answers lost: never more than 2 tasks generate at once."""
    emu = emulator_factory(lost_response_rate=0.5, gen_seconds=(0.3, 0.5), seed=4)
    manifest = load_manifest(write_manifest(tmp_path, emu.base_url, 8, prompt="slot {i}"))
    # No pause between same-price creates: a slot given up by a lost create would be
    # taken again at once, while the lost create's task is still generating.
    options = RunOptions(
        concurrency=2, poll_min=0.02, poll_max=0.1, usage_settle=0.2, doubt_gap=0.0
    )
    async with make_http_client(transport=emu.transport) as http:
        client = SjinnClient(
            http, base_url=emu.base_url, api_key="test-key", gate=RequestGate(Rate(500, 1.0))
        )
        result = await run_manifest(
            manifest, tmp_path / "board.run", client=client, options=options, preflight=False
        )
    stats = emu.stats()
    assert stats["requests"]["create_tool_task"].get("lost", 0) >= 2
    assert stats["max_running"]["test-key"] <= 2
    assert set(creates_per_prompt(stats).values()) == {1}
    assert stats["credits_charged"]["test-key"] <= result.credits_committed
    assert result.counts.get("done", 0) + result.counts.get("in_doubt", 0) == 8


async def test_creates_that_cannot_be_settled_keep_their_slots_and_the_rest_waits(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """Without reconciliation, lost creates keep their slots: the other jobs are not sent."""
    emu = emulator_factory(lost_response_rate=1.0)
    manifest = load_manifest(write_manifest(tmp_path, emu.base_url, 5, prompt="held {i}"))
    options = RunOptions(
        concurrency=2, poll_min=0.02, poll_max=0.1, usage_settle=None, doubt_gap=0.0
    )
    async with make_http_client(transport=emu.transport) as http:
        client = SjinnClient(
            http, base_url=emu.base_url, api_key="test-key", gate=RequestGate(Rate(500, 1.0))
        )
        result = await run_manifest(
            manifest, tmp_path / "board.run", client=client, options=options, preflight=False
        )
    assert result.counts == {"in_doubt": 2, "pending": 3} and result.exit_status == 1
    assert result.held_back == ["s03", "s04", "s05"]
    stats = emu.stats()
    assert stats["tasks_created"] == 2 and stats["max_running"]["test-key"] <= 2
