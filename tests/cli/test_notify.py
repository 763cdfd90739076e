"""`run --notify CMD` and `--notify-url URL`: the verdict reaches a real shell and a real server."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from batchkling.run.notify import Verdict, child_environment, environment, payload
from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import FAST, Result, run_cli, write_manifest

Live = Callable[..., LiveEmulator]
KEY = "sk-notify-secret-7f3a9c"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", KEY)


class _Hook:
    """A loopback HTTP server that records every POST body and answers ``status``."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                size = int(self.headers.get("Content-Length", "0"))
                hook.bodies.append(json.loads(self.rfile.read(size)))
                hook.headers.append(dict(self.headers))
                self.send_response(hook.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/services/T000/B000/secret-path"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Callable[..., _Hook]]:
    made: list[_Hook] = []

    def make(status: int = 200) -> _Hook:
        made.append(_Hook(status))
        return made[-1]

    yield make
    for h in made:
        h.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(tmp_path: Path, emu: LiveEmulator, n: int, *extra: str) -> tuple[Result, Path]:
    manifest = write_manifest(tmp_path, emu.base_url, n)
    run_dir = tmp_path / "rd"
    res = run_cli(
        "run", str(manifest), "--api-base", emu.base_url, "--run-dir", str(run_dir), *FAST, *extra
    )
    assert "Traceback" not in res.out + res.err
    return res, run_dir


def _env_file(path: Path) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
    return {k: v for k, v in pairs}


def test_notify_runs_a_shell_command_with_the_verdict(
    tmp_path: Path, live_emulator_factory: Live, capfd: pytest.CaptureFixture[str]
) -> None:
    """The command sees BATCHKLING_* and no key; what it prints goes to stderr, not stdout."""
    emu = live_emulator_factory(gen_seconds=(0.2, 0.4))
    out = tmp_path / "env.txt"
    command = f"env > {out}; echo notifier-was-here"
    res, run_dir = _run(tmp_path, emu, 2, "--notify", command)
    assert res.code == 0, res.out + res.err
    env = _env_file(out)
    assert env["BATCHKLING_EXIT"] == "0"
    assert (env["BATCHKLING_DONE"], env["BATCHKLING_FAILED"], env["BATCHKLING_IN_DOUBT"]) == (
        "2",
        "0",
        "0",
    )
    assert env["BATCHKLING_CREDITS"] == "2000" and env["BATCHKLING_TOTAL"] == "2"
    assert env["BATCHKLING_REPORT"] == str(run_dir / "report.html")
    assert Path(env["BATCHKLING_REPORT"]).is_file()
    assert env["BATCHKLING_RUN_DIR"] == str(run_dir)
    assert "SJINN_API_KEY" not in env and KEY not in out.read_text()
    captured = capfd.readouterr()
    assert "notifier-was-here" in captured.err and "notifier-was-here" not in res.out
    assert "notifier-was-here" not in captured.out


def test_notify_hears_of_failed_jobs_and_the_exit_status(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """A run whose jobs all fail: the command gets exit 1 and the count of failed jobs."""
    emu = live_emulator_factory(fail_rate=1.0)
    out = tmp_path / "env.txt"
    res, _ = _run(tmp_path, emu, 2, "--notify", f"env > {out}")
    assert res.code == 1
    env = _env_file(out)
    assert (env["BATCHKLING_EXIT"], env["BATCHKLING_FAILED"], env["BATCHKLING_DONE"]) == (
        "1",
        "2",
        "0",
    )
    assert "2 failed" in env["BATCHKLING_SUMMARY"]


def test_a_failing_or_missing_command_is_one_warning(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """A command not found or exiting 3 is one warning line; the exit status stays 0."""
    emu = live_emulator_factory()
    res, _ = _run(tmp_path, emu, 1, "--notify", "no-such-command-batchkling-test")
    assert res.code == 0
    warnings = [x for x in res.err.splitlines() if "--notify" in x]
    assert len(warnings) == 1 and "could not find the command" in warnings[0]
    res, _ = _run(tmp_path, emu, 1, "--notify", "exit 3")
    assert res.code == 0 and "--notify exited with status 3" in res.err


def test_a_hung_notifier_is_cut_off(tmp_path: Path, live_emulator_factory: Live) -> None:
    """A command that never ends is stopped at --notify-timeout, with what it started."""
    emu = live_emulator_factory()
    marker = tmp_path / "late.txt"
    started = time.monotonic()
    res, _ = _run(
        tmp_path,
        emu,
        1,
        "--notify",
        f"(sleep 3; echo late > {marker}) & sleep 30",
        "--notify-timeout",
        "0.5",
    )
    took = time.monotonic() - started
    assert res.code == 0 and took < 10, took
    assert "did not finish within 0.5 s" in res.err
    time.sleep(3.5)
    assert not marker.exists()  # its child was stopped too


def test_notify_url_posts_the_verdict_as_json(
    tmp_path: Path, live_emulator_factory: Live, hook: Callable[..., _Hook]
) -> None:
    """One POST with every field and a ``text`` line; no key anywhere in it."""
    emu = live_emulator_factory()
    server = hook()
    res, run_dir = _run(tmp_path, emu, 2, "--notify-url", server.url)
    assert res.code == 0, res.out + res.err
    assert len(server.bodies) == 1
    body = server.bodies[0]
    assert (body["exit_status"], body["done"], body["failed"], body["in_doubt"]) == (0, 2, 0, 0)
    assert body["credits"] == 2000 and body["report"] == str(run_dir / "report.html")
    assert body["text"].startswith("batchkling run board.yaml: 2 of 2 jobs done")
    assert server.headers[0]["Content-Type"] == "application/json"
    assert KEY not in json.dumps(body) + json.dumps(server.headers[0])


@pytest.mark.parametrize("status", [500, 404])
def test_notify_url_answering_an_error_is_one_warning(
    tmp_path: Path, live_emulator_factory: Live, hook: Callable[..., _Hook], status: int
) -> None:
    """A non-2xx answer: one warning naming the host only (the path may be a secret)."""
    emu = live_emulator_factory()
    server = hook(status)
    res, _ = _run(tmp_path, emu, 1, "--notify-url", server.url)
    assert res.code == 0 and len(server.bodies) == 1  # no retry
    warnings = [x for x in res.err.splitlines() if "--notify-url" in x]
    assert len(warnings) == 1 and f"answered HTTP {status}" in warnings[0]
    assert "secret-path" not in res.err


def test_notify_url_on_a_closed_port_is_one_warning(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """Nobody listening: a warning saying so, and the run's exit status unchanged."""
    emu = live_emulator_factory(fail_rate=1.0)
    url = f"http://127.0.0.1:{_closed_port()}/hook"
    res, _ = _run(tmp_path, emu, 1, "--notify-url", url)
    assert res.code == 1
    warnings = [x for x in res.err.splitlines() if "--notify-url" in x]
    assert len(warnings) == 1 and "connection refused" in warnings[0]


def test_notify_url_must_be_http() -> None:
    """A notify URL that is not http(s) is bad usage, before anything is read."""
    res = run_cli("run", "nothing.yaml", "--notify-url", "ftp://example.com/x")
    assert res.code == 2 and "--notify-url" in res.err


def _verdict(**changes: Any) -> Verdict:
    fields: dict[str, Any] = {
        "exit_status": 1,
        "done": 28,
        "failed": 1,
        "in_doubt": 1,
        "credits": 48_000,
        "total": 30,
        "report": "/r/report.html",
        "manifest": "/m/shots.yaml",
        "run_dir": "/r",
    }
    fields.update(changes)
    return Verdict(**fields)


def test_environment_and_payload_say_the_same_verdict() -> None:
    """The variables and the JSON hold the same numbers; the line reads as a sentence."""
    v = _verdict()
    env = environment(v)
    assert env["BATCHKLING_EXIT"] == "1" and env["BATCHKLING_CREDITS"] == "48000"
    assert env["BATCHKLING_SUMMARY"] == (
        "batchkling run shots.yaml: 28 of 30 jobs done, 1 failed, 1 in doubt; "
        "48,000 credits committed; exit 1"
    )
    body = payload(v)
    assert body["text"] == env["BATCHKLING_SUMMARY"] and body["in_doubt"] == 1
    assert environment(_verdict(report=None))["BATCHKLING_REPORT"] == ""


def test_the_key_never_reaches_the_command_environment() -> None:
    """SJINN_API_KEY of the user's environment is left out; everything else is kept."""
    env = child_environment({"SJINN_API_KEY": KEY, "PATH": "/bin", "HOME": "/h"}, _verdict())
    assert "SJINN_API_KEY" not in env and KEY not in json.dumps(env)
    assert env["PATH"] == "/bin" and env["BATCHKLING_DONE"] == "28"


def test_a_run_refused_before_any_create_is_notified_too(tmp_path: Path) -> None:
    """An API never reached: exit 2, and the command hears exit 2 with no report."""
    url = f"http://127.0.0.1:{_closed_port()}"
    manifest = write_manifest(tmp_path, url, 1)
    out = tmp_path / "env.txt"
    res = run_cli(
        "run",
        str(manifest),
        "--api-base",
        url,
        "--reach-timeout",
        "0",
        *FAST,
        "--notify",
        f"env > {out}",
    )
    assert res.code == 2
    env = _env_file(out)
    assert env["BATCHKLING_EXIT"] == "2" and env["BATCHKLING_REPORT"] == ""
    assert env["BATCHKLING_DONE"] == "0" and env["BATCHKLING_TOTAL"] == "1"
