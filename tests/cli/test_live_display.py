"""The live display of `batchkling run`, read off a real pseudo-terminal as a screen.

Each test runs the real command under ``pexpect`` (a pty of 24 x 160) against an
emulator served on loopback, and renders what it draws with ``pyte``, a terminal
emulator, so that the assertions read the screen a user would see.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pyte
import pytest

from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import ROOT, write_manifest

Factory = Callable[..., LiveEmulator]

pytestmark = pytest.mark.slow

COLS, ROWS = 160, 24
OPTS = ["--rate", "100/s", "--poll-interval", "0.1,0.5"]
BAR = re.compile(r"(\d+)/(\d+) done \|.*?\| elapsed ([^·]+?) · ([^·]+?) ·")
SETTLE = re.compile(r"waiting \d+ s for the credits usage to settle \(\d+ in doubt\)")
CREDITS = re.compile(r"credits \d{1,3}(?:,\d{3})+ / 60,000")
PLAIN = re.compile(
    r"^batchkling: \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ elapsed [\d.]+ s: \d+/\d+ done, "
    r"running \d+.*, credits [\d,]+( / [\d,]+)?, (ETA .+|finished)",
    re.M,
)


def _env(emu: LiveEmulator, **extra: str) -> dict[str, str]:
    env = {**os.environ, "SJINN_API_KEY": "test-key", "SJINN_API_BASE": emu.base_url}
    env.pop("COLUMNS", None)
    env.pop("LINES", None)
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


class Tty:
    """``batchkling run ARGS`` on a pseudo-terminal; ``frames`` is every screen it showed."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.child = pexpect.spawn(
            sys.executable,
            ["-m", "batchkling", "run", *args],
            env=env,
            cwd=str(ROOT),
            dimensions=(ROWS, COLS),
            encoding="utf-8",
        )
        self.screen = pyte.Screen(COLS, ROWS)
        self.stream = pyte.Stream(self.screen)
        self.frames: list[str] = []
        self.times: list[float] = []  # when each frame was first seen (monotonic)
        self.raw = ""

    def text(self) -> str:
        return "\n".join(line.rstrip() for line in self.screen.display).rstrip()

    def watch(self, until: Callable[[str], bool] | None = None, timeout: float = 30) -> str:
        """Read until ``until(screen)`` holds or the command ends; the last screen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                data = self.child.read_nonblocking(65536, timeout=0.1)
            except pexpect.TIMEOUT:
                continue
            except pexpect.EOF:
                return self.text()
            self.raw += data
            self.stream.feed(data)
            screen = self.text()
            if not self.frames or self.frames[-1] != screen:
                self.frames.append(screen)
                self.times.append(time.monotonic())
            if until is not None and until(screen):
                return screen
        raise AssertionError(f"timed out; the screen was:\n{self.text()}")

    def finish(self, timeout: float = 30) -> int:
        """Read to the end; the exit status."""
        self.watch(timeout=timeout)
        self.child.close()
        status = self.child.exitstatus
        return -1 if status is None else status

    def kill(self) -> None:
        self.child.terminate(force=True)


def bars(frames: list[str]) -> list[re.Match[str]]:
    """The bar line of each frame that shows one."""
    found = (BAR.search(frame) for frame in frames)
    return [m for m in found if m is not None]


def unknown_for(tty: Tty) -> float:
    """Seconds from the first bar to the first ETA that is a time (asserting one came)."""
    shown = [(t, m) for t, f in zip(tty.times, tty.frames, strict=True) if (m := BAR.search(f))]
    known = [t for t, m in shown if m.group(4).startswith("ETA ") and m.group(4) != "ETA unknown"]
    assert known, tty.frames[-1]
    # Once there is a basis, it stays: no "ETA unknown" after the first time shown.
    assert all(m.group(4) != "ETA unknown" for t, m in shown if t >= known[0])
    return known[0] - shown[0][0]


def test_the_clock_moves_while_nothing_happens(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """With long generation and no event, the elapsed field still takes a new value each second."""
    emu = live_emulator_factory(gen_seconds=(60, 60))
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    tty = Tty([str(manifest), *OPTS], _env(emu))
    try:
        tty.watch(lambda s: "running 2" in s)
        start = len(tty.frames)
        _read_for(tty, 3.2)
        elapsed = {m.group(3) for m in bars(tty.frames[start:])}
        assert len(elapsed) >= 3, elapsed
        assert "waiting for 2 tasks" in tty.text()
        assert "ETA unknown" in tty.text()  # no task of this run has finished
    finally:
        tty.kill()


def _read_for(tty: Tty, seconds: float) -> None:
    end = time.monotonic() + seconds
    tty.watch(lambda _s: time.monotonic() >= end, timeout=seconds + 5)


def test_a_settle_wait_is_told(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """Every answer lost: the display says it waits for the usage to settle, counting down."""
    emu = live_emulator_factory(lost_response_rate=1.0, gen_seconds=(0.2, 0.4))
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    tty = Tty([str(manifest), *OPTS, "--usage-settle", "3"], _env(emu))
    tty.watch(lambda s: SETTLE.search(s) is not None)
    waits = {m.group(0) for f in tty.frames if (m := SETTLE.search(f))}
    _read_for(tty, 1.5)
    waits |= {m.group(0) for f in tty.frames if (m := SETTLE.search(f))}
    assert len(waits) >= 2, waits  # the seconds count down
    assert re.search(r"in doubt [12]\b", tty.text())
    assert tty.finish() in (0, 1)  # settled or not, the run ends on its own
    assert "Traceback" not in tty.raw


def test_a_slow_create_is_sending_never_in_doubt(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """With 2.5 s of latency on every answer and no answer lost, nothing is ever in doubt."""
    emu = live_emulator_factory(latency=(2.5, 2.5), gen_seconds=(30, 30))
    manifest = tmp_path / "two.yaml"  # two prices: their creates go out together
    manifest.write_text(
        "version: 1\n"
        f"image_base_url: {emu.base_url}/__emulator/frames/\n"
        "shots:\n"
        "  - {id: a, prompt: a door opens, image: a.png, duration: 5}\n"
        "  - {id: b, prompt: a bird lands, image: b.png, duration: 10}\n"
    )
    tty = Tty([str(manifest), *OPTS, "--skip-preflight"], _env(emu))
    try:
        tty.watch(lambda s: "running 2" in s)
    finally:
        tty.kill()
    assert any("sending 2" in f for f in tty.frames)
    assert any("waiting for the answer to 2 creates" in f for f in tty.frames)
    assert not any("in doubt" in f for f in tty.frames)


def test_the_eta_comes_from_this_runs_own_completions(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """ETA unknown until a job of this run finishes, then a time; a resume starts unknown again."""
    emu = live_emulator_factory(gen_seconds=(0.8, 1.2))
    write_manifest(tmp_path, emu.base_url, 3, budget=60000)
    first = Tty([str(tmp_path / "board.yaml"), *OPTS, "--concurrency", "2"], _env(emu))
    assert first.finish() == 0
    shown = bars(first.frames)
    assert shown[0].group(4) == "ETA unknown" and shown[0].group(1) == "0"
    assert unknown_for(first) >= 0.5  # no task generates faster than 0.8 s
    assert CREDITS.search(first.text()), first.text()

    write_manifest(tmp_path, emu.base_url, 6, budget=60000)  # three more shots, same run dir
    again = Tty([str(tmp_path / "board.yaml"), *OPTS, "--concurrency", "2"], _env(emu))
    assert again.finish() == 0
    shown = bars(again.frames)
    assert shown[0].group(1) == "3" and shown[0].group(4) == "ETA unknown"  # 3 done earlier
    assert unknown_for(again) >= 0.5  # the jobs done earlier were no basis
    assert shown[-1].group(1) == "6" and CREDITS.search(again.text())


def test_quiet_draws_nothing(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """`--quiet` on a terminal: no bar, no status line, only the summary."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    tty = Tty([str(manifest), *OPTS, "--quiet"], _env(emu))
    assert tty.finish() == 0
    assert "done |" not in tty.raw and "running" not in tty.raw and "ETA" not in tty.raw
    assert "2 jobs: done 2" in tty.raw


def test_not_a_terminal_gives_timestamped_lines(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """stderr to a pipe: a plain line every BATCHKLING_PROGRESS_EVERY seconds, no bar, no \\r."""
    emu = live_emulator_factory(gen_seconds=(1.5, 2.0))
    manifest = write_manifest(tmp_path, emu.base_url, 2, budget=60000)
    env = _env(emu, BATCHKLING_PROGRESS_EVERY="0.5")
    proc = subprocess.run(
        [sys.executable, "-m", "batchkling", "run", str(manifest), *OPTS],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    lines = PLAIN.findall(proc.stderr)
    assert len(lines) >= 3, proc.stderr
    assert "\r" not in proc.stderr and "|" not in proc.stderr and "█" not in proc.stderr
    assert re.search(r"credits \d{1,3}(,\d{3})* / 60,000", proc.stderr)
    assert "ETA unknown" in proc.stderr and "waiting for 2 tasks" in proc.stderr


def test_a_pause_for_429_is_told(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """The API answers 429 with Retry-After: the log says every request is paused, and why."""
    emu = live_emulator_factory(rate_limit=3, gen_seconds=(0.5, 1.0))
    manifest = write_manifest(tmp_path, emu.base_url, 4)
    env = _env(emu, BATCHKLING_PROGRESS_EVERY="0.2")
    proc = subprocess.run(
        [sys.executable, "-m", "batchkling", "run", str(manifest), *OPTS, "--skip-preflight"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"; paused [\d.]+ s: the API asked to slow down \(429\)", proc.stderr), (
        proc.stderr
    )
