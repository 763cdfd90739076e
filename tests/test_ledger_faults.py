"""The ledger under a full disk, a file size limit, a file changed under it, and a torn intent."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from batchkling.errors import RunDirWriteError
from batchkling.ledger import LEDGER_NAME, Ledger, fold_ledger, torn_intent
from batchkling.model import JobState

FP = "ab" * 32


def _intent_line(job: str, credits: int = 1000) -> str:
    ev = {
        "ts": "2026-11-24T03:20:57.123456Z",
        "event": "intent",
        "job": job,
        "credits": credits,
        "fingerprint": FP,
        "mode": "standard",
        "duration": 5,
        "reason": "new",
    }
    return json.dumps(ev, separators=(",", ":"))


def _header(run_dir: Path) -> None:
    with Ledger.open(run_dir) as ledger:
        ledger.append_sync("header", None, version="t", format=1, manifest="m", manifest_sha256=FP)


# A child process writes intents under RLIMIT_FSIZE until the ledger refuses; it
# prints how many whole writes succeeded and the error it got.
_CHILD = textwrap.dedent(
    """
    import json, resource, signal, sys
    from pathlib import Path
    from batchkling.errors import RunDirWriteError
    from batchkling.ledger import Ledger
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed
    run_dir = Path(sys.argv[1])
    ledger = Ledger.open(run_dir)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), resource.RLIM_INFINITY))
    ok = 0
    try:
        for i in range(10_000):
            ledger.write("intent", f"s{i:04d}", credits=1000, fingerprint="ab" * 32)
            ledger.sync()
            ok += 1
    except RunDirWriteError as exc:
        first = str(exc)
        try:
            ledger.write("created", "s0000", task_id="t")
            again = "accepted"
        except RunDirWriteError as exc2:
            again = str(exc2)
        print(json.dumps({"ok": ok, "error": first, "again": again}))
    """
)


def _fill(run_dir: Path, limit: int) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(run_dir), str(limit)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("slack", [0, 1, 57, 130])
def test_file_size_limit_leaves_only_whole_lines_and_refuses_later_writes(
    tmp_path: Path, slack: int
) -> None:
    """A write cut short by the size limit is cut back; the ledger then refuses to write."""
    _header(tmp_path)
    size = (tmp_path / LEDGER_NAME).stat().st_size
    result = _fill(tmp_path, size + 3 * 120 + slack)
    assert "the run directory" in str(result["error"]) and str(tmp_path) in str(result["error"])
    assert "file size limit" in str(result["error"])
    assert result["again"] != "accepted"
    raw = (tmp_path / LEDGER_NAME).read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.splitlines()
    assert all(json.loads(line) for line in lines)  # nothing torn, nothing glued
    fold = fold_ledger(tmp_path / LEDGER_NAME)
    assert fold.torn_tail is None
    assert fold.state.events == 1 + int(str(result["ok"]))


def test_a_full_filesystem_stops_the_ledger_with_whole_lines(tmp_path: Path) -> None:
    """On a real filesystem that fills up, the ledger keeps whole lines and says so."""
    mount = tmp_path / "small"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if made.returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        run_dir = mount / "run"
        _header(run_dir)
        with contextlib.suppress(OSError), open(mount / "filler", "wb") as fh:
            while True:
                fh.write(b"x" * 512)
                fh.flush()
        with Ledger.open(run_dir) as ledger:
            with pytest.raises(RunDirWriteError, match="the disk is full"):
                for i in range(1000):
                    ledger.write("intent", f"s{i:04d}", credits=1000, fingerprint=FP)
            with pytest.raises(RunDirWriteError):
                ledger.write("created", "s0000", task_id="t")
        (mount / "filler").unlink()  # space comes back at once
        with Ledger.open(run_dir) as ledger:
            assert not ledger.warnings  # no torn tail: the failed write was cut back
            ledger.append_sync("run_started", None, pid=1)
        lines = (run_dir / LEDGER_NAME).read_bytes().splitlines()
        assert all(json.loads(line) for line in lines)
    finally:
        subprocess.run(["umount", str(mount)], check=False)


@pytest.mark.parametrize("change", ["unlink", "replace", "truncate", "append"])
def test_a_ledger_changed_under_the_run_stops_every_write(tmp_path: Path, change: str) -> None:
    """Removed, replaced, cut or grown by another program: the next write refuses, naming it."""
    _header(tmp_path)
    path = tmp_path / LEDGER_NAME
    with Ledger.open(tmp_path) as ledger:
        ledger.append_sync("run_started", None, pid=1)
        if change == "unlink":
            path.unlink()
        elif change == "replace":
            other = tmp_path / "other.jsonl"
            other.write_bytes(path.read_bytes())
            os.replace(other, path)
        elif change == "truncate":
            os.truncate(path, 10)
        else:
            with open(path, "ab") as fh:
                fh.write(
                    b'{"ts":"2026-11-24T03:20:57Z","event":"run_started","job":null,"pid":2}\n'
                )
        with pytest.raises(RunDirWriteError, match="by another program"):
            ledger.write("intent", "s01", credits=1000, fingerprint=FP)
        assert ledger.state.state_of("s01") is JobState.PENDING  # the fold never saw it
        with pytest.raises(RunDirWriteError):
            ledger.append_sync("run_ended", None, exit_status=5, api_calls=0)


def test_a_torn_intent_is_recovered_in_doubt_not_cut(tmp_path: Path) -> None:
    """A torn last line that began an intent becomes a whole intent plus in_doubt."""
    _header(tmp_path)
    line = _intent_line("s01", credits=1500)
    cut = line.index('"mode"') + 3  # credits and fingerprint whole, the rest torn
    with open(tmp_path / LEDGER_NAME, "ab") as fh:
        fh.write(line[:cut].encode())
    with Ledger.open(tmp_path) as ledger:
        rec = ledger.state.record("s01")
        assert rec.state is JobState.IN_DOUBT
        assert rec.attempts[-1].credits == 1500
        assert rec.attempts[-1].fingerprint == FP
        assert rec.attempts[-1].intent_ts == "2026-11-24T03:20:57.123456Z"
        assert ledger.state.credits_committed == 1500
        assert any("intent of s01" in w for w in ledger.warnings)
    lines = [json.loads(x) for x in (tmp_path / LEDGER_NAME).read_text().splitlines()]
    assert [x["event"] for x in lines[-2:]] == ["intent", "in_doubt"]
    assert lines[-2]["recovered"] is True


def test_a_torn_intent_without_its_credits_reserves_the_highest_price(tmp_path: Path) -> None:
    """When the price was torn off, the job is in doubt at the most a job can cost."""
    _header(tmp_path)
    line = _intent_line("s02", credits=1000)
    cut = line.index('"credits"') + len('"credits":1')  # "1" of 1000: not a whole number
    with open(tmp_path / LEDGER_NAME, "ab") as fh:
        fh.write(line[:cut].encode())
    with Ledger.open(tmp_path) as ledger:
        assert ledger.state.state_of("s02") is JobState.IN_DOUBT
        assert ledger.state.credits_committed == 4500


def test_torn_lines_that_are_not_intents_are_cut() -> None:
    """Only an intent whose job name and time are whole is recovered."""
    line = _intent_line("s03")
    assert torn_intent(line[: line.index('"job"') + 8].encode()) is None  # job name torn
    created = b'{"ts":"2026-11-24T03:20:57Z","event":"created","job":"s03","task_id":"ab'
    assert torn_intent(created) is None
    whole = torn_intent(line[:-5].encode())
    assert whole is not None and whole["job"] == "s03" and whole["credits"] == 1000
