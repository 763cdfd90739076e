"""The JSONL ledger file: lock, torn tail, appends, schema."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import anyio
import jsonschema
import pytest

from batchkling.errors import LedgerError, LockedError
from batchkling.ledger import LEDGER_NAME, Ledger, read_ledger
from batchkling.model import JobState

SCHEMA = json.loads((Path(__file__).parent.parent / "schemas" / "ledger.schema.json").read_text())


def test_append_then_reopen_folds_the_same(tmp_path: Path) -> None:
    """Events written are read back and folded to the same state."""
    with Ledger.open(tmp_path) as led:
        led.append_sync("intent", "a", credits=1000, fingerprint="f" * 64)
        led.append_sync("created", "a", task_id="t1")
    with Ledger.open(tmp_path) as led:
        assert led.state.state_of("a") is JobState.RUNNING
        assert led.state.credits_committed == 1000


def test_async_appends_are_fsynced_and_ordered(tmp_path: Path) -> None:
    """Concurrent async appends all land, one line each, in the file."""

    async def main() -> None:
        with Ledger.open(tmp_path) as led:
            async with anyio.create_task_group() as tg:
                for i in range(50):
                    tg.start_soon(led.append, "skipped", f"j{i}")

    anyio.run(main)
    lines = (tmp_path / LEDGER_NAME).read_text().splitlines()
    assert len(lines) == 50
    assert {json.loads(x)["job"] for x in lines} == {f"j{i}" for i in range(50)}


def test_second_open_is_refused_with_pid(tmp_path: Path) -> None:
    """A second runner on one directory is refused at once, naming the holder's pid."""
    with Ledger.open(tmp_path), pytest.raises(LockedError) as err:
        Ledger.open(tmp_path)
    assert err.value.pid == os.getpid()
    assert str(os.getpid()) in str(err.value)


def test_lock_held_by_another_process(tmp_path: Path) -> None:
    """The lock works across processes and is released when its holder dies."""
    code = (
        "import sys, time; from pathlib import Path; from batchkling.ledger import Ledger;"
        "led = Ledger.open(Path(sys.argv[1])); print('locked', flush=True); time.sleep(30)"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
        with pytest.raises(LockedError) as err:
            Ledger.open(tmp_path)
        assert err.value.pid == proc.pid
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    with Ledger.open(tmp_path):  # released by the kernel when the holder died
        pass


def test_torn_last_line_is_cut_with_a_warning(tmp_path: Path) -> None:
    """A final half-written line is reported and cut off before anything is appended."""
    good = json.dumps({"ts": "2026-11-24T00:00:00Z", "event": "skipped", "job": "a"})
    (tmp_path / LEDGER_NAME).write_text(good + "\n" + '{"ts": "2026-11-24T0')
    with Ledger.open(tmp_path) as led:
        assert any("torn" in w for w in led.warnings)
        led.append_sync("skipped", "b")
    lines = (tmp_path / LEDGER_NAME).read_text().splitlines()
    assert [json.loads(x)["job"] for x in lines] == ["a", "b"]


def test_whole_last_object_without_newline_is_kept(tmp_path: Path) -> None:
    """A last line whose JSON is complete but lacks its newline is kept, not cut."""
    good = json.dumps({"ts": "2026-11-24T00:00:00Z", "event": "skipped", "job": "a"})
    (tmp_path / LEDGER_NAME).write_text(good)
    with Ledger.open(tmp_path) as led:
        assert led.warnings == []
        led.append_sync("skipped", "b")
    lines = (tmp_path / LEDGER_NAME).read_text().splitlines()
    assert [json.loads(x)["job"] for x in lines] == ["a", "b"]


def test_bad_middle_line_is_an_error_and_nothing_changes(tmp_path: Path) -> None:
    """Damage before the last line is an error naming the line; the file is not touched."""
    good = json.dumps({"ts": "2026-11-24T00:00:00Z", "event": "skipped", "job": "a"})
    body = good + "\nnot json\n" + good + "\n"
    (tmp_path / LEDGER_NAME).write_text(body)
    with pytest.raises(LedgerError) as err:
        Ledger.open(tmp_path)
    assert err.value.line == 2 and ":2:" in str(err.value)
    assert (tmp_path / LEDGER_NAME).read_text() == body
    with Ledger.open(tmp_path.parent / "other"):  # and the lock was released on the error
        pass
    Ledger.open(tmp_path / "x").close()


def test_read_without_lock_does_not_repair(tmp_path: Path) -> None:
    """Reading for status leaves a torn tail in place for the next run to cut."""
    good = json.dumps({"ts": "2026-11-24T00:00:00Z", "event": "skipped", "job": "a"})
    (tmp_path / LEDGER_NAME).write_text(good + "\n{")
    read = read_ledger(tmp_path / LEDGER_NAME)
    assert read.torn_tail == b"{" and len(read.events) == 1
    assert (tmp_path / LEDGER_NAME).read_text().endswith("{")


def test_written_lines_match_the_schema(tmp_path: Path) -> None:
    """Every kind of event the ledger writes validates against schemas/ledger.schema.json."""
    sha = "a" * 64
    with Ledger.open(tmp_path) as led:
        led.append_sync(
            "header", None, version="0.1.0", format=1, manifest="/m.yaml", manifest_sha256=sha
        )
        led.append_sync("run_started", None, pid=1)
        led.append_sync("intent", "a", credits=1000, fingerprint=sha, mode="pro", duration=5)
        led.append_sync("created", "a", task_id="t")
        led.append_sync("completed", "a", task_id="t", output_urls=["http://x/a.mp4"])
        led.append_sync("downloaded", "a", task_id="t", path="videos/a.mp4", bytes=3, sha256=sha)
        led.append_sync("run_ended", None, exit_status=0, api_calls=3)
    validator = jsonschema.Draft202012Validator(SCHEMA)
    for line in (tmp_path / LEDGER_NAME).read_text().splitlines():
        validator.validate(json.loads(line))
    with pytest.raises(jsonschema.ValidationError):
        validator.validate({"ts": "2026-11-24T00:00:00Z", "event": "created", "job": "a"})
