"""Following one task against the in-process emulator until it ends, one way or another."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchkling.model import JobState
from batchkling.run.follow import FollowVerdict
from batchkling.run.submit import SubmitVerdict
from tests.emulator_fixtures import InProcessEmulator
from tests.run.units import Units, job, units

pytestmark = pytest.mark.anyio

Factory = Callable[..., InProcessEmulator]


async def created(u: Units, key: str = "s1") -> None:
    """Create the job's task through the submitter, as a run does."""
    done = await u.submitter.submit(job(key), "new")
    assert done.verdict is SubmitVerdict.CREATED


async def test_a_task_is_polled_until_it_completes(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """A finished task is recorded completed with its video URLs, the polls counted."""
    emu = emulator_factory(gen_seconds=(0.05, 0.1))
    j = job()
    async with units(emu, tmp_path, [j]) as u:
        await created(u)
        followed = await u.follower.follow(j, created_at=time.monotonic())
        assert followed.verdict is FollowVerdict.COMPLETED
        assert followed.output_urls and followed.output_urls[0].startswith("http")
        assert u.ledger.state.state_of(j.key) is JobState.COMPLETED
        assert u.follower.stats.polls[j.key] >= 1
        assert len(u.follower.stats.detection_gaps) == 1


async def test_a_failed_task_is_recorded_failed(emulator_factory: Factory, tmp_path: Path) -> None:
    """A task the server reports failed ends the follow, recorded failed with its error."""
    emu = emulator_factory(fail_rate=1.0, gen_seconds=(0.02, 0.05))
    j = job()
    async with units(emu, tmp_path, [j]) as u:
        await created(u)
        followed = await u.follower.follow(j)
        assert followed.verdict is FollowVerdict.FAILED
        assert u.ledger.state.state_of(j.key) is JobState.FAILED


async def test_a_slow_task_times_out_still_running(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """Past the task timeout the follow ends; the task stays running for a later run."""
    emu = emulator_factory(gen_seconds=(30.0, 30.0))
    j = job()
    async with units(emu, tmp_path, [j], task_timeout=0.2) as u:
        await created(u)
        followed = await u.follower.follow(j)
        assert followed.verdict is FollowVerdict.TIMED_OUT
        assert u.ledger.state.state_of(j.key) is JobState.RUNNING


async def test_an_undocumented_status_is_reported_once_never_success(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """A status outside the reference is noted once and treated as running until the timeout."""
    emu = emulator_factory(fail_rate=1.0, failed_status=2, gen_seconds=(0.01, 0.02))
    j = job()
    async with units(emu, tmp_path, [j], task_timeout=0.3) as u:
        await created(u)
        followed = await u.follower.follow(j)
        assert followed.verdict is FollowVerdict.TIMED_OUT
        assert u.follower.stats.unknown_status == {j.key: 2}
        assert [m for m in u.messages() if "undocumented" in m] == [
            "s1: undocumented status 2; still waiting."
        ]


async def test_no_wait_leaves_a_fresh_task_unpolled_and_polls_an_older_one_once(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """With no_wait a task created just now is not polled; one from before is polled once."""
    emu = emulator_factory(gen_seconds=(30.0, 30.0))
    j = job()
    async with units(emu, tmp_path, [j], no_wait=True) as u:
        await created(u)
        fresh = await u.follower.follow(j, created_at=time.monotonic())
        assert fresh.verdict is FollowVerdict.LEFT_RUNNING and not u.follower.stats.polls
        older = await u.follower.follow(j)
        assert older.verdict is FollowVerdict.LEFT_RUNNING
        assert u.follower.stats.polls == {j.key: 1}


async def test_a_job_without_a_task_is_not_polled(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """A job the ledger knows no task of returns at once, without a request."""
    emu = emulator_factory()
    j = job()
    async with units(emu, tmp_path, [j]) as u:
        followed = await u.follower.follow(j)
        assert followed.verdict is FollowVerdict.NO_TASK
    assert emu.stats()["requests"] == {}
