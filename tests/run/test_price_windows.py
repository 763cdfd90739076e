"""Creates of one price overlap while nothing is in doubt, and go one at a time after a loss."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

from batchkling import load_manifest, run_manifest
from batchkling.api.client import SjinnClient, make_http_client, make_transport
from batchkling.api.gate import RequestGate
from batchkling.journal import AccountJournal
from batchkling.run.options import RunOptions
from batchkling.run.submit import overlap_width
from batchkling.schedule import Rate
from tests.emulator_fixtures import InProcessEmulator, LiveEmulator
from tests.run.units import job, units
from tests.runner_helpers import creates_per_prompt, ledger_lines, write_manifest

pytestmark = pytest.mark.anyio

Factory = Callable[..., InProcessEmulator]
BASE, KEY = "https://sjinn.ai", "sk-windows"


def _windows_overlap(events: list[str]) -> bool:
    """Whether a second intent was written before the answer of the first."""
    open_ = 0
    for event in events:
        if event == "intent":
            if open_:
                return True
            open_ += 1
        elif event in ("created", "in_doubt", "create_failed"):
            open_ -= 1
    return False


async def test_same_price_creates_overlap_once_answers_have_come(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """The first creates go alone; after four answers, three of one price share the wire."""
    emu = emulator_factory(latency=(0.2, 0.2))
    js = [job(f"s{i}", prompt=f"shot {i}") for i in range(7)]
    async with units(emu, tmp_path, js) as u:
        async with anyio.create_task_group() as tg:
            for j in js[:2]:
                tg.start_soon(u.submitter.submit, j, "new")
        assert not _windows_overlap(u.events())  # nothing answered yet: one at a time
        for j in js[2:4]:
            await u.submitter.submit(j, "new")
        t0 = time.monotonic()
        async with anyio.create_task_group() as tg:
            for j in js[4:]:
                tg.start_soon(u.submitter.submit, j, "new")
        took = time.monotonic() - t0
        assert u.events()[8:11] == ["intent"] * 3
        assert took < 0.5  # one at a time would take 0.6 s at least
        assert not u.submitter.serial(js[0].credits)


def test_the_overlap_is_earned_by_answers_and_lost_to_losses() -> None:
    """One at a time at first and where answers are often lost; wider as answers keep coming."""
    assert overlap_width(0, 0) == 1
    assert overlap_width(2, 0) == 2
    assert overlap_width(100, 0) == 51
    assert overlap_width(100, 1) == 26
    assert overlap_width(4, 4) == 1  # half the answers lost: one at a time
    assert overlap_width(40, 10) == 2


async def test_a_lost_answer_makes_its_price_one_at_a_time(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """After a create in doubt, the next creates of that price never overlap; other prices do."""
    emu = emulator_factory(latency=(0.05, 0.05), lost_response_rate=1.0)
    first = job("s0", prompt="lost")
    same = [job(f"s{i}", prompt=f"shot {i}") for i in range(1, 4)]
    async with units(emu, tmp_path, [first, *same], doubt_gap=0.1) as u:
        await u.submitter.submit(first, "new")
        assert u.events() == ["intent", "in_doubt"]
        assert u.submitter.serial(first.credits)
        emu.set_config(lost_response_rate=0.0)
        async with anyio.create_task_group() as tg:
            for j in same:
                tg.start_soon(u.submitter.submit, j, "new")
        later = u.events()[2:]
        assert later == ["intent", "created"] * 3
        assert not _windows_overlap(later)


async def test_a_price_stays_one_at_a_time_until_its_doubt_is_settled(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """With a settle delay of 0, the price is one-at-a-time exactly while its job is in doubt."""
    emu = emulator_factory(lost_response_rate=1.0)
    j = job("s0")
    async with units(emu, tmp_path, [j], usage_settle=0.0) as u:
        await u.submitter.submit(j, "new")
        assert u.submitter.serial(j.credits)
        await u.writer.record("not_created", j.key)  # what the settler writes once it proved it
        assert not u.submitter.serial(j.credits)


async def test_serial_creates_keep_every_price_one_at_a_time(
    emulator_factory: Factory, tmp_path: Path
) -> None:
    """``serial_creates``: the windows of one price never overlap, as before any doubt."""
    emu = emulator_factory(latency=(0.05, 0.05))
    js = [job(f"s{i}", prompt=f"shot {i}") for i in range(3)]
    async with units(emu, tmp_path, js, serial_creates=True) as u:
        async with anyio.create_task_group() as tg:
            for j in js:
                tg.start_soon(u.submitter.submit, j, "new")
        assert not _windows_overlap(u.events())


def test_an_in_doubt_line_in_the_journal_makes_its_price_doubtful(tmp_path: Path) -> None:
    """Another run directory's lost create makes its price one-at-a-time here, for a while."""
    journal = AccountJournal.open(tmp_path, BASE, KEY)
    other = AccountJournal.open(tmp_path, BASE, KEY)
    try:
        assert not journal.doubtful(1000, within=60)
        other.append("in_doubt", run_dir="/r/b.run", job="s1", fingerprint="f", credits=1000)
        assert journal.doubtful(1000, within=60)
        assert not journal.doubtful(1500, within=60)
        assert not journal.doubtful(1000, within=0)
    finally:
        journal.close()
        other.close()


_HOLDER = textwrap.dedent(
    """
    import sys, time, anyio
    from pathlib import Path
    from batchkling.journal import AccountJournal

    async def main() -> None:
        j = AccountJournal.open(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
        async with j.price_lock(1000).hold(exclusive=sys.argv[4] == "exclusive"):
            print("held", flush=True)
            time.sleep(1.0)
        print("released", flush=True)

    anyio.run(main)
    """
)


async def _hold_elsewhere(state: Path, mode: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(state), BASE, KEY, mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.mark.parametrize(
    ("theirs", "ours", "waits"),
    [
        ("shared", False, False),  # windows of two run directories may overlap
        ("shared", True, True),  # a one-at-a-time create waits for every other window
        ("exclusive", False, True),  # and no window opens beside a one-at-a-time one
    ],
)
async def test_the_price_window_holds_across_processes(
    tmp_path: Path, theirs: str, ours: bool, waits: bool
) -> None:
    """Shared windows overlap across processes; an exclusive one overlaps none."""
    proc = await _hold_elsewhere(tmp_path, theirs)
    journal = AccountJournal.open(tmp_path, BASE, KEY)
    try:
        t0 = time.monotonic()
        async with journal.price_lock(1000).hold(exclusive=ours):
            took = time.monotonic() - t0
        assert (took > 0.5) is waits
        assert journal.price_lock(1500).try_hold(exclusive=True)  # other prices never wait
    finally:
        journal.close()
        with proc:
            assert proc.wait(timeout=10) == 0


async def test_an_exclusive_waiter_keeps_new_shared_holders_out() -> None:
    """Once a create waits to go alone, later creates of the price wait behind it."""
    journal_free = AccountJournal(Path("/nonexistent"))  # no file: the lock of one process
    lock = journal_free.price_lock(1000)
    lock._fd = None
    order: list[str] = []

    async def hold(name: str, exclusive: bool, seconds: float) -> None:
        async with lock.hold(exclusive=exclusive):
            order.append(name)
            await anyio.sleep(seconds)

    async with anyio.create_task_group() as tg:
        tg.start_soon(hold, "shared1", False, 0.1)
        await anyio.sleep(0.01)
        tg.start_soon(hold, "exclusive", True, 0.05)
        await anyio.sleep(0.01)
        tg.start_soon(hold, "shared2", False, 0.0)
    assert order == ["shared1", "exclusive", "shared2"]


async def _lost_answers_run(
    live: Callable[..., LiveEmulator], tmp: Path, seed: int, *, serial: bool
) -> tuple[int, int, bool]:
    """40 same-price jobs, a tenth of the create answers lost; (in doubt, settled, overlap)."""
    emu = live(gen_seconds=(0.2, 0.5), seed=seed, lost_response_rate=0.1, latency=(0.02, 0.05))
    manifest = load_manifest(write_manifest(tmp, emu.base_url, 40, prompt="lost {i}"))
    options = RunOptions(
        concurrency=10,
        poll_min=0.05,
        poll_max=0.2,
        usage_settle=0.3,
        serial_creates=serial,
        no_download=True,
    )
    journal = AccountJournal.open(tmp / "state", emu.base_url, "test-key")
    try:
        async with make_transport() as pool, make_http_client() as http:
            client = SjinnClient(
                http,
                base_url=emu.base_url,
                api_key="test-key",
                gate=RequestGate(Rate(200, 1.0)),  # creates of one price overlap at this rate
                transport=pool,
            )
            await run_manifest(
                manifest,
                tmp / "board.run",
                client=client,
                options=options,
                preflight=False,
                journal=journal,
            )
    finally:
        journal.close()
    stats = emu.stats()
    assert set(creates_per_prompt(stats).values()) == {1}  # never paid twice
    events = [e["event"] for e in ledger_lines(tmp / "board.run")]
    settled = events.count("reconciled") + events.count("not_created")
    return events.count("in_doubt"), settled, _windows_overlap(events)


@pytest.mark.timeout(120)
async def test_lost_answers_are_settled_as_often_as_with_serial_creates(
    live_emulator_factory: Callable[..., LiveEmulator], tmp_path: Path
) -> None:
    """On the same seeds, every create in doubt is settled, with overlapping windows or without."""
    overlapped = False
    total = 0
    for seed in (11, 12, 13):
        for serial in (True, False):
            tmp = tmp_path / f"{seed}-{serial}"
            tmp.mkdir()
            doubts, settled, overlap = await _lost_answers_run(
                live_emulator_factory, tmp, seed, serial=serial
            )
            assert settled == doubts, (seed, serial, doubts, settled)
            total += doubts
            assert not (serial and overlap)
            overlapped = overlapped or overlap
    assert total >= 12  # about four lost answers a run
    assert overlapped  # the windows of one price did overlap, lost answers among them
