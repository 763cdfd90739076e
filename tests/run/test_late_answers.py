"""An answer is never thrown away: a create is waited for while its connection lives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from batchkling.model import JobState
from batchkling.run.options import CREATE_ANSWER_TIMEOUT, RunOptions
from batchkling.run.submit import SubmitVerdict
from tests.emulator_fixtures import InProcessEmulator
from tests.run.units import job, units

pytestmark = pytest.mark.anyio

Factory = Callable[..., InProcessEmulator]

# The test runs 50 times faster than life: the old bound of 30 s is 0.6 s here, the
# new one of 600 s is 12 s, and the server takes 0.8 s to answer (40 s in life: a
# laptop asleep through the create, a server stalled).
SCALE = 50.0
OLD_BOUND = 30.0


def test_a_create_is_waited_for_ten_minutes() -> None:
    """A run waits up to 600 s for the answer of a create it sent, by default."""
    assert CREATE_ANSWER_TIMEOUT == RunOptions().create_answer_timeout == 600.0


async def test_an_answer_later_than_the_old_bound_is_recorded(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """A create answered after the old 30 s bound (scaled) is created, not in doubt; paid once."""
    emu = emulator_factory(latency=(40.0 / SCALE, 40.0 / SCALE))
    j = job()
    scaled = RunOptions().create_answer_timeout / SCALE
    async with units(emu, tmp_path / "new", [j], create_answer_timeout=scaled) as u:
        done = await u.submitter.submit(j, "new")
        assert done.verdict is SubmitVerdict.CREATED
        assert u.events(j.key) == ["intent", "created"]
        assert u.ledger.state.state_of(j.key) is JobState.RUNNING
    old = job("s2", prompt="the old bound")
    async with units(emu, tmp_path / "old", [old], create_answer_timeout=OLD_BOUND / SCALE) as u:
        assert (await u.submitter.submit(old, "new")).verdict is SubmitVerdict.IN_DOUBT
    stats = emu.stats()
    assert stats["tasks_created"] == 2 and stats["credits_charged"]["test-key"] == 2000
