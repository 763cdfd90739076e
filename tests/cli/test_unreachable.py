"""An API that cannot be reached: `check` and `run` exit 2 naming the URL and where it came from."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from batchkling.emulator import EmulatorConfig
from tests.emulator_fixtures import FAST_GEN, LiveEmulator
from tests.runner_helpers import FAST, ledger_lines, run_cli, write_manifest

Live = Callable[..., LiveEmulator]
KEY = "sk-unreachable-secret-41d2"


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", KEY)
    monkeypatch.delenv("SJINN_API_BASE", raising=False)


def _closed_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def _errors(text: str) -> list[str]:
    return [x for x in text.splitlines() if x.startswith("batchkling: error:")]


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_closed_port_exits_2_naming_the_url_and_its_source(tmp_path: Path, command: str) -> None:
    """Connection refused: exit 2, one line with the URL, --api-base, and nothing sent."""
    url = _closed_url()
    manifest = write_manifest(tmp_path, url, 2)
    started = time.monotonic()
    quiet = ("--quiet",) if command == "run" else ()
    res = run_cli(command, str(manifest), "--api-base", url, "--reach-timeout", "1.5", *quiet)
    took = time.monotonic() - started
    assert res.code == 2, res.out + res.err
    errors = _errors(res.err)
    assert len(errors) == 1, res.err
    assert f"the API at {url} (from --api-base) could not be reached for" in errors[0]
    assert "(connection refused); nothing was sent." in errors[0]
    assert 1.4 <= took < 10, took  # tried again for --reach-timeout, then gave up
    assert "Traceback" not in res.out + res.err and KEY not in res.out + res.err
    if command == "run":
        events = [e["event"] for e in ledger_lines(tmp_path / "board.run")]
        assert "intent" not in events and events[-1] == "run_ended"


def test_the_url_from_the_environment_is_named_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SJINN_API_BASE is named as the source when it gave the URL."""
    url = _closed_url()
    monkeypatch.setenv("SJINN_API_BASE", url)
    manifest = write_manifest(tmp_path, url, 1)
    res = run_cli("check", str(manifest), "--reach-timeout", "0")
    assert res.code == 2
    assert f"the API at {url} (from SJINN_API_BASE) could not be reached" in res.err


def test_a_host_name_that_does_not_resolve(tmp_path: Path) -> None:
    """A DNS failure is said as such."""
    url = "http://batchkling-no-such-host.invalid"
    manifest = write_manifest(tmp_path, url, 1)
    res = run_cli("check", str(manifest), "--api-base", url, "--reach-timeout", "0")
    assert res.code == 2
    assert "(the host name could not be resolved); nothing was sent." in res.err


@pytest.mark.parametrize("command", ["check", "run"])
def test_a_wrong_path_exits_2_at_once(
    tmp_path: Path, live_emulator_factory: Live, command: str
) -> None:
    """A base URL whose account endpoint answers 404: exit 2 naming the URL, nothing created."""
    emu = live_emulator_factory()
    url = emu.base_url + "/not-the-api"
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    extra = FAST if command == "run" else ()
    res = run_cli(command, str(manifest), "--api-base", url, *extra)
    assert res.code == 2, res.out + res.err
    errors = _errors(res.err)
    assert len(errors) == 1 and f"the API at {url} (from --api-base) answered HTTP 404" in errors[0]
    assert "Nothing was sent." in errors[0]
    assert emu.stats()["tasks_created"] == 0


def test_an_api_that_comes_up_while_pre_flight_waits(tmp_path: Path) -> None:
    """A server that starts listening a second late is found: the run goes on and is done."""
    live = LiveEmulator(EmulatorConfig(gen_seconds=FAST_GEN, seed=1))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        live.port = s.getsockname()[1]
    manifest = write_manifest(tmp_path, live.base_url, 1)
    timer = threading.Timer(1.0, live.start)
    timer.start()
    try:
        res = run_cli("run", str(manifest), "--api-base", live.base_url, *FAST)
    finally:
        timer.join()
        live.stop()
    assert res.code == 0, res.out + res.err
    assert "could not be reached" not in res.out + res.err


@pytest.mark.slow
def test_skip_preflight_still_says_the_api_was_never_reached(tmp_path: Path) -> None:
    """With --skip-preflight, the creates' own failures end in the same words, and exit 2."""
    url = _closed_url()
    manifest = write_manifest(tmp_path, url, 1)
    res = run_cli("run", str(manifest), "--api-base", url, *FAST, "--skip-preflight")
    assert res.code == 2, res.out + res.err
    line = [x for x in res.out.splitlines() if "could not be reached" in x]
    assert len(line) == 1
    assert line[0].startswith(f"the API at {url} (from --api-base) could not be reached for ")
    assert line[0].endswith("(connection refused); nothing was sent.")
    events = ledger_lines(tmp_path / "board.run")
    assert not [e for e in events if e["event"] == "created"]
    assert "Traceback" not in res.out + res.err and KEY not in res.out + res.err


@pytest.mark.anyio
async def test_pre_flight_waits_its_backoff_steps_up_to_the_reach_timeout() -> None:
    """Refused connections: waits of 1, 2, 4, 8 s, then the rest of the 30 s; then it gives up."""
    from batchkling.api.client import SjinnClient, make_http_client
    from batchkling.errors import UnreachableError
    from batchkling.preflight.account import check_account

    now = [0.0]
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)
        now[0] += seconds

    async with make_http_client() as http:
        client = SjinnClient(http, base_url=_closed_url(), api_key=KEY)
        with pytest.raises(UnreachableError) as caught:
            await check_account(
                client, needed=1000, sleep=sleep, clock=lambda: now[0], reach_timeout=30
            )
    assert waits == [1, 2, 4, 8, 15]
    assert caught.value.reason == "connection refused" and caught.value.waited == 30
    assert caught.value.exit_code == 2 and KEY not in str(caught.value)


def test_skip_preflight_on_a_wrong_path_says_so(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """Every answer a 404: the summary names the URL, nothing is charged, exit 2."""
    emu = live_emulator_factory()
    url = emu.base_url + "/not-the-api"
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    res = run_cli("run", str(manifest), "--api-base", url, *FAST, "--skip-preflight")
    assert res.code == 2, res.out + res.err
    assert (
        f"the API at {url} (from --api-base) answered HTTP 404 (not found) to every request"
        in res.out
    )
    assert emu.stats()["tasks_created"] == 0 and "0 credits committed" in res.out
