"""``python -m batchkling.demo``: render the example storyboard offline, against the emulator.

    python -m batchkling.demo [--run-dir DIR] [--gen-seconds MIN,MAX]

Starts ``batchkling mock-server`` on a free loopback port, runs ``batchkling run
manifests/storyboard.yaml`` against it with the sample frames the emulator draws
itself as the shots' images (so pre-flight passes with no network), writes the
HTML report, stops the emulator, and prints the report's path and a summary.
Nothing is left running, whether the run ends, fails or is interrupted.

It needs a clone of the repository (for ``manifests/``) and the ``mock`` extra;
``make demo`` provides both. Every child runs with this interpreter, so the
virtual environment that runs the demo is the one that renders.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TextIO

from batchkling._util import of_budget, plural, span, thousands
from batchkling.cli.mock_server import READY_PREFIX
from batchkling.emulator.config import parse_range
from batchkling.ledger import LEDGER_NAME, fold_ledger
from batchkling.manifest.load import load_manifest
from batchkling.model import JobState

__all__ = [
    "DEFAULT_RUN_DIR",
    "DEMO_GEN_SECONDS",
    "DEMO_RUN_OPTIONS",
    "REPO_ROOT",
    "STORYBOARD",
    "main",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
STORYBOARD = REPO_ROOT / "manifests" / "storyboard.yaml"
# Under the repository, in a name `.gitignore` already ignores (`*.run/`).
DEFAULT_RUN_DIR = REPO_ROOT / "demo.run"
DEMO_GEN_SECONDS = (2.0, 6.0)
# 30 jobs of 2-6 s each, eight at a time, polled often: the run takes about 25 s.
DEMO_RUN_OPTIONS = ("--concurrency", "8", "--rate", "20/s", "--poll-interval", "0.5,3")
_DEMO_API_KEY = "demo"  # the emulator accepts any non-empty key
_SERVER_START_TIMEOUT = 30.0
_SERVER_STOP_TIMEOUT = 10.0
# The run waits at most 30 s for creates already sent once it is told to stop.
_RUN_STOP_TIMEOUT = 40.0
_EXIT_USAGE, _EXIT_INTERRUPTED = 2, 130


class _DemoError(Exception):
    """A reason the demo cannot go on, said in one line."""


def _say(text: str, out: TextIO) -> None:
    # Flushed at once: the children write to the same streams in between.
    print(f"demo: {text}", file=out, flush=True)


def _gen_seconds(text: str) -> tuple[float, float]:
    try:
        return parse_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m batchkling.demo",
        description="Render the example storyboard against the bundled emulator, write its "
        "HTML report, and stop the emulator.",
    )
    p.add_argument(
        "--run-dir",
        type=Path,
        metavar="DIR",
        help=f"a new or empty run directory (default: {DEFAULT_RUN_DIR.name}/ in the "
        "repository, replacing the previous demo's)",
    )
    lo, hi = DEMO_GEN_SECONDS
    p.add_argument(
        "--gen-seconds",
        type=_gen_seconds,
        default=DEMO_GEN_SECONDS,
        metavar="MIN,MAX",
        help=f"how long the emulator takes to generate each video (default {lo:g},{hi:g})",
    )
    return p


def _prepare_run_dir(chosen: Path | None, out: TextIO) -> Path:
    """A run directory with nothing in it, so the demo never resumes an earlier one."""
    if chosen is not None:
        run_dir = chosen.absolute()
        if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
            raise _DemoError(f"--run-dir {run_dir} is not empty; choose a new directory.")
        return run_dir
    run_dir = DEFAULT_RUN_DIR
    if run_dir.exists():
        # Only ever delete what an earlier demo made: a run directory with its ledger.
        if not (run_dir / LEDGER_NAME).is_file() and any(run_dir.iterdir()):
            raise _DemoError(
                f"{run_dir} exists but holds no ledger; move it away or pass --run-dir DIR."
            )
        _say(f"replacing the previous demo run in {run_dir}", out)
        shutil.rmtree(run_dir)
    return run_dir


def _die_with_parent() -> None:
    # Children sit in their own sessions, out of reach of the terminal's Ctrl-C;
    # should the demo itself be killed outright, Linux still stops them.
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None).prctl(pr_set_pdeathsig, int(signal.SIGTERM))


def _start_server(gen: tuple[float, float]) -> tuple[subprocess.Popen[str], str]:
    """Start the emulator on a free loopback port; return it and its base URL."""
    cmd = [
        sys.executable,
        "-m",
        "batchkling",
        "mock-server",
        "--port",
        "0",
        "--gen-seconds",
        f"{gen[0]:g},{gen[1]:g}",
        "--seed",
        "1",
    ]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(_SERVER_START_TIMEOUT)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith(READY_PREFIX):
        _stop(proc, signal.SIGTERM, _SERVER_STOP_TIMEOUT)
        raise _DemoError(
            f"the emulator did not start (exit status {proc.returncode}); its error is above."
        )
    return proc, line[len(READY_PREFIX) :].strip()


def _signal(proc: subprocess.Popen[str], sig: int) -> None:
    if proc.poll() is not None:
        return
    # The whole group: the child leads its own session, and anything it started
    # goes with it.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def _stop(proc: subprocess.Popen[str], sig: int, timeout: float) -> int:
    """Send ``sig``, wait up to ``timeout`` s, then kill; return the exit status."""
    _signal(proc, sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        _signal(proc, signal.SIGKILL)
        proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()
    return proc.returncode


def _wait_run(proc: subprocess.Popen[str]) -> int:
    """Wait for the run; on Ctrl-C pass each interrupt on, as a terminal would."""
    try:
        return proc.wait()
    except KeyboardInterrupt:
        pass
    # First interrupt: the run stops sending creates and waits for those in flight.
    # A second one makes it quit at once, as it does when run by hand.
    _signal(proc, signal.SIGINT)
    deadline = time.monotonic() + _RUN_STOP_TIMEOUT
    while True:
        try:
            proc.wait(max(0.0, deadline - time.monotonic()))
            break
        except KeyboardInterrupt:
            _signal(proc, signal.SIGINT)
        except subprocess.TimeoutExpired:
            _signal(proc, signal.SIGKILL)
            proc.wait()
            break
    raise KeyboardInterrupt


def _child(args: Sequence[str], *, capture: bool = False) -> subprocess.Popen[str]:
    """``batchkling ARGS`` with the demo's key, its stdout captured or shown."""
    return subprocess.Popen(
        [sys.executable, "-m", "batchkling", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else None,
        text=True,
        env={**os.environ, "SJINN_API_KEY": _DEMO_API_KEY},
        # Out of the terminal's process group: a Ctrl-C reaches the demo alone,
        # which passes it on once (see _wait_run) instead of twice.
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def _summary(run_dir: Path, frames: str, elapsed: float) -> str:
    manifest = load_manifest(STORYBOARD, image_base_url=frames)
    st = fold_ledger(run_dir / LEDGER_NAME).state
    done = sum(1 for job in manifest.jobs if st.state_of(job.key) is JobState.DONE)
    return (
        f"{thousands(done)}/{plural(len(manifest.jobs), 'job')} done for "
        f"{plural(len(manifest.shots), 'shot')}, "
        f"{of_budget(st.credits_committed, manifest.budget)} credits committed (emulated), "
        f"{span(elapsed)}"
    )


def _demo(
    args: argparse.Namespace, out: TextIO, register: Callable[[subprocess.Popen[str]], None]
) -> int:
    started = time.monotonic()
    run_dir = _prepare_run_dir(args.run_dir, out)
    server, url = _start_server(args.gen_seconds)
    register(server)
    frames = f"{url}/__emulator/frames/"
    _say(f"emulator (pid {server.pid}) listening on {url}", out)
    _say(f"rendering {STORYBOARD.relative_to(REPO_ROOT)} into {run_dir}", out)
    source = ["--image-base-url", frames, "--run-dir", str(run_dir)]
    run = _child(["run", str(STORYBOARD), "--api-base", url, *source, *DEMO_RUN_OPTIONS])
    register(run)
    run_status = _wait_run(run)
    if not (run_dir / LEDGER_NAME).is_file():
        _say(f"the run stopped before writing anything (exit status {run_status}).", out)
        return run_status or 1
    report = _child(["report", str(STORYBOARD), *source], capture=True)
    register(report)
    written, _ = report.communicate()
    if report.returncode != 0:
        _say(f"the report could not be written (exit status {report.returncode}).", out)
        return run_status or report.returncode
    _stop(server, signal.SIGTERM, _SERVER_STOP_TIMEOUT)
    _say(f"report: {written.strip()}", out)
    _say(_summary(run_dir, frames, time.monotonic() - started), out)
    return run_status


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the demo and return its exit status: the run's, or 2 if it cannot start."""
    out = out or sys.stdout
    args = _parser().parse_args(argv)
    if not STORYBOARD.is_file():
        _say(f"no {STORYBOARD}: the demo runs from a clone of the repository.", out)
        return _EXIT_USAGE
    children: list[subprocess.Popen[str]] = []
    # SIGTERM (from `make`, a CI runner or kill) takes the same way out as Ctrl-C.
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _demo(args, out, children.append)
    except _DemoError as exc:
        _say(str(exc), out)
        return _EXIT_USAGE
    except KeyboardInterrupt:
        _say("interrupted; stopping the emulator. The next demo starts afresh.", out)
        return _EXIT_INTERRUPTED
    finally:
        # The emulator last: a run still in flight needs it to stop cleanly.
        for proc in reversed(children):
            try:
                _stop(proc, signal.SIGTERM, _SERVER_STOP_TIMEOUT)
            except KeyboardInterrupt:
                # Impatience while stopping: stop harder, but do stop.
                _stop(proc, signal.SIGKILL, _SERVER_STOP_TIMEOUT)
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
