"""The README's walkthrough against the emulator works when pasted, as written."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
HEADING = "Try it by hand against the emulator"
PORT = "8765"
COMMANDS = ("mock-server", "validate", "plan", "check", "run", "status", "report")
# The walkthrough renders 30 jobs of 2 to 6 s each, eight at a time: about half a minute.
SCRIPT_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0


def walkthrough(text: str) -> str:
    """The first ```sh block under the walkthrough's heading, before any other heading."""
    heading = re.search(rf"^#+ {re.escape(HEADING)}\s*$", text, re.M)
    assert heading is not None, f"README.md has no heading {HEADING!r}"
    block = re.compile(r"^```sh\n(.*?)^```\s*$", re.M | re.S).search(text, heading.end())
    assert block is not None, f"no ```sh block under {HEADING!r}"
    assert not re.search(r"^#+ ", text[heading.end() : block.start()], re.M), (
        f"the first ```sh block after {HEADING!r} is under another heading"
    )
    return block.group(1)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _alive_in_group(pgid: int) -> list[str]:
    """Processes of process group ``pgid`` that are still running (zombies are not)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            text = stat.read_text()
            # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
            state, _ppid, pgrp = text[text.rindex(")") + 2 :].split()[:3]
            if int(pgrp) == pgid and state != "Z":
                alive.append(f"{stat.parent.name} {text[: text.rindex(')') + 1]}")
    return alive


def _run_script(script: str, cwd: Path, log: Path) -> tuple[int, int, str]:
    """Run ``script`` with bash -e in its own process group; return its status, pgid and output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SJINN_")}
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", "-e", "-x", "-c", script],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            status = proc.wait(SCRIPT_TIMEOUT)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            status = -1
    return status, proc.pid, log.read_text(errors="replace")


def _wait_stopped(pgid: int) -> list[str]:
    deadline = time.monotonic() + STOP_TIMEOUT
    while (alive := _alive_in_group(pgid)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return alive


def _json_of(cmd: list[str], cwd: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-m", "batchkling", *cmd], cwd=cwd, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, object] = json.loads(out.stdout)
    return result


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_readme_walkthrough_runs_as_pasted(tmp_path: Path) -> None:
    """The README's emulator walkthrough, pasted into bash -e, renders every job and stops."""
    block = walkthrough(README.read_text(encoding="utf-8"))
    for name in COMMANDS:
        assert re.search(rf"^batchkling {name}\b", block, re.M), f"the walkthrough lacks {name}"
    assert f"--port {PORT}" in block
    port = _free_port()
    script = "trap 'echo \"walkthrough: exit $? from: $BASH_COMMAND\" >&2' ERR\n"
    script += block.replace(PORT, str(port))
    # The commands name manifests/ relatively: run them in a copy, never in the repository.
    shutil.copytree(
        ROOT / "manifests", tmp_path / "manifests", ignore=shutil.ignore_patterns("*.run")
    )
    status, pgid, output = _run_script(script, tmp_path, tmp_path / "walkthrough.log")
    try:
        alive = _wait_stopped(pgid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
    assert status == 0, f"the walkthrough exited {status}:\n{output[-6000:]}"
    assert not alive, "left running after the walkthrough: " + "; ".join(alive)
    for name in COMMANDS:
        assert re.search(rf"^\+ batchkling {name}\b", output, re.M), f"{name} never ran"

    frames = f"http://127.0.0.1:{port}/__emulator/frames/"
    manifest = ["manifests/storyboard.yaml", "--image-base-url", frames]
    planned = _json_of(["plan", *manifest, "--json"], tmp_path)["jobs"]
    state = _json_of(["status", *manifest, "--json"], tmp_path)
    assert isinstance(planned, list) and isinstance(state["jobs"], list)
    assert {job["job"] for job in state["jobs"]} == {job["job"] for job in planned}
    assert {job["state"] for job in state["jobs"]} == {"done"}, state["counts"]
    run_dir = tmp_path / "manifests" / "storyboard.run"
    assert len(list((run_dir / "videos").glob("*.mp4"))) == len(planned)
    assert (run_dir / "report.html").is_file()
