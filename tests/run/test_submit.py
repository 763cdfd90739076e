"""Submitting one job against the in-process emulator: what is written, sent and returned."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from batchkling.errors import AuthError
from batchkling.model import JobState
from batchkling.run.submit import SubmitVerdict
from tests.emulator_fixtures import InProcessEmulator
from tests.run.units import job, units

pytestmark = pytest.mark.anyio

Factory = Callable[..., InProcessEmulator]


def creates(emu: InProcessEmulator) -> int:
    """How many create requests reached the emulator, whatever it answered."""
    return sum(emu.stats()["requests"].get("create_tool_task", {}).values())


async def test_a_created_task_is_recorded_after_its_intent(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """The intent is on disk before the create; the task id is recorded after it."""
    emu = emulator_factory()
    j = job()
    async with units(emu, tmp_path, [j]) as u:
        done = await u.submitter.submit(j, "new")
        assert done.verdict is SubmitVerdict.CREATED
        assert done.task_id == emu.stats()["tasks"][0]["task_id"]
        assert u.events(j.key) == ["intent", "created"]
        assert u.ledger.state.state_of(j.key) is JobState.RUNNING


async def test_a_lost_answer_is_in_doubt_and_sent_once(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """A create whose answer is lost is in doubt, charged, and not retried."""
    emu = emulator_factory(lost_response_rate=1.0)
    j = job()
    async with units(emu, tmp_path, [j]) as u:
        done = await u.submitter.submit(j, "new")
        assert done.verdict is SubmitVerdict.IN_DOUBT
        assert u.events(j.key) == ["intent", "in_doubt"]
        assert u.ledger.state.credits_committed == 1000
    assert emu.stats()["tasks_created"] == 1 and creates(emu) == 1


async def test_an_unanswered_create_is_in_doubt_after_the_answer_timeout(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """A create that takes longer than ``create_answer_timeout`` to answer is in doubt."""
    emu = emulator_factory(latency=(1.0, 1.0))
    j = job()
    async with units(emu, tmp_path, [j], create_answer_timeout=0.1) as u:
        with anyio.fail_after(0.8):
            done = await u.submitter.submit(j, "new")
        assert done.verdict is SubmitVerdict.IN_DOUBT
        assert "no answer in time" in (u.ledger.state.record(j.key).error or "")


async def test_creates_turned_away_unprocessed_are_retried_then_left_pending(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """Nothing listening: each attempt is recorded uncharged; after the last the job is pending."""
    emu = emulator_factory()
    j = job()
    async with units(emu, tmp_path, [j], base_url="http://127.0.0.1:9", create_attempts=3) as u:
        done = await u.submitter.submit(j, "new")
        assert done.verdict is SubmitVerdict.GAVE_UP
        assert u.events(j.key) == ["intent", "create_failed"] * 3
        assert u.ledger.state.state_of(j.key) is JobState.PENDING
        assert u.ledger.state.credits_committed == 0


async def test_no_create_leaves_when_the_budget_is_used_up(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """A job that would overshoot the budget is skipped without an intent or a request."""
    emu = emulator_factory()
    j = job()
    async with units(emu, tmp_path, [j], budget=999) as u:
        done = await u.submitter.submit(j, "new")
        assert done.verdict is SubmitVerdict.OVER_BUDGET
        assert u.events(j.key) == ["skipped"]
    assert creates(emu) == 0


async def test_a_stopping_run_writes_and_sends_nothing(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """Once the run may not create, a submission returns STOPPED and leaves no trace."""
    emu = emulator_factory()
    j = job()
    async with units(emu, tmp_path, [j]) as u:
        u.allowed[0] = False
        done = await u.submitter.submit(j, "new")
        assert done.verdict is SubmitVerdict.STOPPED
        assert u.events() == []
    assert creates(emu) == 0


async def test_a_refused_key_is_an_account_refusal(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """A refused key is recorded as an uncharged failure and returned for the run to stop on."""
    emu = emulator_factory(api_keys=("another-key",))
    j = job()
    async with units(emu, tmp_path, [j]) as u:
        done = await u.submitter.submit(j, "new")
        assert done.verdict is SubmitVerdict.ACCOUNT_REFUSED
        assert isinstance(done.account_error, AuthError)
        assert u.events(j.key) == ["intent", "create_failed"]
        assert u.ledger.state.state_of(j.key) is JobState.PENDING


async def test_a_cancelled_submission_still_records_the_answer_of_a_sent_create(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """Cancelled while its create is on the wire, the submission waits for and records the id."""
    emu = emulator_factory(latency=(0.3, 0.3))
    j = job()
    async with units(emu, tmp_path, [j]) as u:
        with anyio.move_on_after(0.1) as scope:
            await u.submitter.submit(j, "new")
        assert scope.cancel_called
        assert u.events(j.key) == ["intent", "created"]
        assert u.ledger.state.record(j.key).task_id == emu.stats()["tasks"][0]["task_id"]


async def test_creates_of_one_price_never_overlap(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """Submitted together, same-price creates go out one after another, each window apart."""
    emu = emulator_factory(latency=(0.05, 0.05))
    js = [job(f"s{i}", prompt=f"shot {i}") for i in range(3)]
    async with units(emu, tmp_path, js) as u:
        async with anyio.create_task_group() as tg:
            for j in js:
                tg.start_soon(u.submitter.submit, j, "new")
        # Each create's answer is written before the next create's intent.
        assert u.events() == ["intent", "created"] * 3
