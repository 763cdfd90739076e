"""The account journal: creates across run directories, and the price lock across processes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import anyio
import pytest

from batchkling.journal import AccountJournal, account_id

KEY = "sk-secret-key-123456"
BASE = "https://sjinn.ai"


def test_the_journal_is_named_by_account_without_the_key(tmp_path: Path) -> None:
    """One file per API base and key; its name and content never show the key."""
    j = AccountJournal.open(tmp_path, BASE, KEY)
    try:
        j.append("intent", run_dir="/r/a", job="s01", fingerprint="f1", credits=1000)
        j.append("created", run_dir="/r/a", job="s01", fingerprint="f1", task_id="t1")
    finally:
        j.close()
    assert j.path == tmp_path / "accounts" / f"{account_id(BASE, KEY)}.jsonl"
    assert account_id(BASE, KEY) != account_id(BASE + "/other", KEY)
    assert account_id(BASE, KEY) == account_id(BASE + "/", KEY)
    text = j.path.read_text()
    assert KEY not in text and KEY not in j.path.name
    assert [json.loads(x)["event"] for x in text.splitlines()] == ["intent", "created"]


def test_tasks_of_other_run_directories_are_foreign_and_block_duplicates(tmp_path: Path) -> None:
    """Another run directory's task is foreign here, and its request is running elsewhere."""
    a, b = tmp_path / "a.run", tmp_path / "b.run"
    ja = AccountJournal.open(tmp_path, BASE, KEY)
    jb = AccountJournal.open(tmp_path, BASE, KEY)
    try:
        ja.append("created", run_dir=str(a), job="s01", fingerprint="f1", task_id="t1")
        assert jb.foreign_tasks(b) == {"t1"}  # written by another open journal: read as it comes
        assert jb.foreign_tasks(a) == frozenset()
        other = jb.elsewhere(b, "f1")
        assert other is not None and (other.run_dir, other.job, other.task_id) == (
            str(a),
            "s01",
            "t1",
        )
        assert jb.elsewhere(a, "f1") is None and jb.elsewhere(b, "f2") is None
        ja.append("failed", run_dir=str(a), job="s01", fingerprint="f1", task_id="t1")
        assert jb.elsewhere(b, "f1") is None  # a failed task no longer blocks a new one
    finally:
        ja.close()
        jb.close()


def test_a_torn_line_from_a_crash_elsewhere_is_skipped(tmp_path: Path) -> None:
    """A half-written line of another process neither crashes nor hides the lines around it."""
    j = AccountJournal.open(tmp_path, BASE, KEY)
    try:
        with open(j.path, "ab") as fh:
            fh.write(b'{"event":"created","run_dir":"/x","task_id":"t0"\n')  # torn: no closing
        j.append("created", run_dir="/r/a", job="s01", fingerprint="f1", task_id="t1")
        assert j.foreign_tasks(Path("/r/b")) == {"t1"}
    finally:
        j.close()


_HOLDER = textwrap.dedent(
    """
    import sys, time, anyio
    from pathlib import Path
    from batchkling.journal import AccountJournal

    async def main() -> None:
        j = AccountJournal.open(Path(sys.argv[1]), sys.argv[2], sys.argv[3])
        async with j.price_lock(1000):
            print("held", flush=True)
            time.sleep(1.0)
        print("released", flush=True)

    anyio.run(main)
    """
)


def _hold(state_dir: Path) -> subprocess.Popen[str]:
    """A process that holds the price 1000 for one second, once it prints "held"."""
    return subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(state_dir), BASE, KEY],
        stdout=subprocess.PIPE,
        text=True,
    )


@pytest.mark.anyio
async def test_the_price_lock_holds_across_processes(tmp_path: Path) -> None:
    """While another process holds a price, this one waits for it; other prices do not wait."""
    with _hold(tmp_path) as proc:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "held"
        j = AccountJournal.open(tmp_path, BASE, KEY)
        try:
            t0 = time.monotonic()
            async with j.price_lock(1500):
                other_price = time.monotonic() - t0
            async with j.price_lock(1000):
                same_price = time.monotonic() - t0
        finally:
            j.close()
        assert other_price < 0.5
        assert same_price > 0.5
        assert proc.wait(timeout=10) == 0


@pytest.mark.anyio
async def test_a_cancelled_wait_for_a_price_leaves_no_lock_behind(tmp_path: Path) -> None:
    """Giving up on a held price, then trying again once free, succeeds at once."""
    a = AccountJournal.open(tmp_path, BASE, KEY)
    try:
        with _hold(tmp_path) as proc:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == "held"
            with anyio.move_on_after(0.1) as scope:
                async with a.price_lock(1000):
                    pass
            assert scope.cancelled_caught
            assert proc.wait(timeout=10) == 0
        with anyio.fail_after(1):
            async with a.price_lock(1000):
                pass
    finally:
        a.close()
