"""`python -m batchkling.demo` end to end: the run, the report, and nothing left running."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from batchkling.demo import STORYBOARD
from batchkling.manifest.load import load_manifest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# Short enough that 30 jobs take seconds; odd enough to tell this test's emulator apart.
FAST = "0.05,0.21"
# Long enough that the run is still rendering when it is interrupted.
SLOW = "20,30"
EMULATOR_LINE = re.compile(r"^demo: emulator \(pid (\d+)\) listening on http://127\.0\.0\.1:(\d+)$")


@dataclass
class Demo:
    """What a finished demo printed, and the emulator it said it started."""

    status: int
    out: str
    err: str
    server_pid: int
    port: int


def _demo_cmd(run_dir: Path, gen: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "batchkling.demo",
        "--run-dir",
        str(run_dir),
        "--gen-seconds",
        gen,
    ]


def _finished(proc: subprocess.Popen[str], timeout: float) -> Demo:
    out, err = proc.communicate(timeout=timeout)
    found = [m for m in map(EMULATOR_LINE.match, out.splitlines()) if m]
    assert len(found) == 1, (out, err)
    return Demo(proc.returncode, out, err, int(found[0][1]), int(found[0][2]))


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie nobody has reaped yet does not count."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _processes_mentioning(*needles: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains every one of ``needles``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        line = " ".join(a.decode(errors="replace") for a in args)
        if all(n in line for n in needles) and _alive(int(entry.name)):
            found.append((int(entry.name), line))
    return found


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def _assert_nothing_left(demo: Demo, run_dir: Path, gen: str, *, wait: float = 0.0) -> None:
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and _alive(demo.server_pid):
        time.sleep(0.05)
    assert not _alive(demo.server_pid)
    assert not _accepts(demo.port)
    assert _processes_mentioning("mock-server", gen) == []
    assert _processes_mentioning(str(run_dir)) == []


@pytest.fixture
def run_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh run directory; at teardown, whatever a failing demo left running is killed."""
    before = {pid for pid, _ in _processes_mentioning("mock-server")}
    path = tmp_path / "demo.run"
    yield path
    strays = _processes_mentioning(str(path))
    strays += [
        (pid, line)
        for pid, line in _processes_mentioning("mock-server", FAST)
        + _processes_mentioning("mock-server", SLOW)
        if pid not in before
    ]
    for pid, _ in strays:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _wait_for_creates(run_dir: Path, count: int, proc: subprocess.Popen[str]) -> None:
    ledger = run_dir / "ledger.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if ledger.exists() and ledger.read_text().count('"event":"created"') >= count:
            return
        time.sleep(0.05)
    proc.kill()
    pytest.fail(f"the demo sent no creates: {proc.communicate()}")


def test_demo_renders_the_storyboard_reports_it_and_stops_the_emulator(
    tmp_path: Path, run_dir: Path
) -> None:
    """Every job of the storyboard is rendered and reported, and no process survives."""
    proc = subprocess.Popen(
        _demo_cmd(run_dir, FAST),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    demo = _finished(proc, timeout=100)
    assert demo.status == 0, (demo.out, demo.err)
    assert not _alive(demo.server_pid)
    with pytest.raises(ProcessLookupError):  # reaped by the demo, not left to init
        os.kill(demo.server_pid, 0)
    _assert_nothing_left(demo, run_dir, FAST)

    manifest = load_manifest(STORYBOARD)
    jobs, shots = len(manifest.jobs), len(manifest.shots)
    assert shots == 24
    report = run_dir / "report.html"
    assert f"demo: report: {report}" in demo.out.splitlines()
    html = report.read_text(encoding="utf-8")
    assert all(job.key in html for job in manifest.jobs)
    assert len(list((run_dir / "videos").glob("*.mp4"))) == jobs
    # Thumbnails come from the local copies pre-flight kept, not the manifest's CDN.
    assert "cdn.example.com" not in html
    summary = [line for line in demo.out.splitlines() if " jobs done for " in line]
    assert len(summary) == 1
    # Credits against the budget (48,000 / 60,000), the time as a span (25 s, 1 min 4 s).
    budget = f"{manifest.budget:,}"
    assert re.fullmatch(
        rf"demo: {jobs}/{jobs} jobs done for {shots} shots, [1-9][\d,]* / {budget} credits "
        r"committed \(emulated\), (\d+\.\d s|\d+ s|\d+ min( \d+ s)?)",
        summary[0],
    ), summary


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_demo_still_stops_the_emulator(
    tmp_path: Path, run_dir: Path, sig: signal.Signals
) -> None:
    """Ctrl-C or SIGTERM mid-run: the run stops, the emulator stops, exit status 130."""
    proc = subprocess.Popen(
        _demo_cmd(run_dir, SLOW),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_creates(run_dir, 1, proc)
    proc.send_signal(sig)
    demo = _finished(proc, timeout=60)
    assert demo.status == 130, (demo.out, demo.err)
    assert "demo: interrupted; stopping the emulator. The next demo starts afresh." in demo.out
    # The run was told to stop once, so it stopped cleanly: its ledger says so.
    assert '"event":"run_ended"' in (run_dir / "ledger.jsonl").read_text()
    with pytest.raises(ProcessLookupError):
        os.kill(demo.server_pid, 0)
    _assert_nothing_left(demo, run_dir, SLOW)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="parent-death signal is Linux")
def test_a_killed_demo_takes_its_children_with_it(tmp_path: Path, run_dir: Path) -> None:
    """Even SIGKILL, which the demo cannot catch, leaves no emulator or run behind."""
    proc = subprocess.Popen(
        _demo_cmd(run_dir, SLOW),
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _wait_for_creates(run_dir, 1, proc)
    proc.kill()
    # Orphans would hold the demo's pipes open: reading to the end waits for them.
    demo = _finished(proc, timeout=30)
    assert demo.status == -signal.SIGKILL
    _assert_nothing_left(demo, run_dir, SLOW, wait=15)


def test_a_used_run_directory_is_refused_before_anything_starts(tmp_path: Path) -> None:
    """The demo never resumes an earlier run: a non-empty --run-dir is refused."""
    run_dir = tmp_path / "old.run"
    run_dir.mkdir()
    (run_dir / "ledger.jsonl").write_text("")
    result = subprocess.run(
        _demo_cmd(run_dir, FAST), cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert result.stdout == f"demo: --run-dir {run_dir} is not empty; choose a new directory.\n"
    assert "emulator" not in result.stdout
    assert sorted(p.name for p in run_dir.iterdir()) == ["ledger.jsonl"]
