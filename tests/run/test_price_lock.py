"""A create takes its price lock only once the gate lets it go; one price never overlaps."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from batchkling.model import Job
from batchkling.run.submit import Submitted, SubmitVerdict
from tests.emulator_fixtures import InProcessEmulator
from tests.run.units import job, units

pytestmark = pytest.mark.anyio

Factory = Callable[..., InProcessEmulator]


async def test_a_create_held_at_the_gate_does_not_hold_its_price_lock(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """While the gate is paused, two creates of one price wait there and neither holds the lock."""
    emu = emulator_factory(latency=(0.05, 0.05))
    a, b = job("s1", "a cat turns"), job("s2", "a dog turns")
    assert a.credits == b.credits
    async with units(emu, tmp_path, [a, b]) as u:
        gate = u.client.gate
        assert gate is not None
        gate.pushed_back(0.4)  # the server said: wait 0.4 s
        done: dict[str, Submitted] = {}

        async def submit(j: Job) -> None:
            done[j.key] = await u.submitter.submit(j, "new")

        async with anyio.create_task_group() as tg:
            tg.start_soon(submit, a)
            tg.start_soon(submit, b)
            await anyio.sleep(0.2)
            assert gate.waiting == 2  # both wait for their turn...
            lock = u.submitter._price_locks.get(a.credits)
            assert lock is None or not lock.locked()  # ...and neither holds the price's lock
        assert {k: v.verdict for k, v in done.items()} == {
            "s1": SubmitVerdict.CREATED,
            "s2": SubmitVerdict.CREATED,
        }
    # One at a time all the same: the second intent comes after the first answer.
    lines = [json.loads(x) for x in (tmp_path / "ledger.jsonl").read_text().splitlines()]
    order = [(e["event"], e["job"]) for e in lines if e["event"] in ("intent", "created")]
    first = order[0][1]
    assert order[:2] == [("intent", first), ("created", first)], order
