"""`batchkling mock-server`: flags, the ready line, real requests, signals and --state."""

from __future__ import annotations

import argparse
import io
import signal
import socket
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchkling.cli import main, mock_server
from batchkling.cli._io import IO
from batchkling.emulator.assets import sample_video
from tests.emulator_fixtures import kling_body

CREATE = "/api/un-api/create_tool_task"
QUERY = "/api/un-api/query_tool_task_status"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="batchkling")
    mock_server.register(parser.add_subparsers())
    return parser.parse_args(["mock-server", *argv])


def test_every_flag_reaches_the_emulator_config() -> None:
    """Each command-line flag sets its EmulatorConfig field."""
    args = parse(
        *("--api-key", "k1", "--api-key", "k2", "--balance", "5000", "--refund-failed"),
        *("--no-membership", "--gen-seconds", "1,3", "--seed", "9", "--fail-rate", "0.2"),
        "--fetch-images",
        *("--errors-as-http", "--failed-status", "2", "--extra-status", "3"),
        *("--cursor-field", "nextCursor", "--download-content-type", "application/octet-stream"),
        *("--failure-field", "error_msg", "--cover-url"),
        *("--error-code-field", "code", "--output-url-field", "output.video_url"),
        *("--output-url-single", "--bad-output-url", "--status-style", "word"),
        *("--no-url-polls", "2", "--error-msg-size", "3000", "--query-http-status", "405"),
        *("--query-error-code", "401", "--trickle", "0.2"),
        *("--rate-limit", "10", "--no-retry-after", "--max-running", "4"),
        *("--max-running-code", "102", "--error-rate", "0.1", "--lost-response-rate", "0.05"),
        *("--latency", "0.01,0.02", "--download-fail-rate", "0.3", "--output-url-ttl", "60"),
        *("--usage-lag", "5", "--usage-clock-offset", "-90", "--usage-defect", "epoch-ms"),
        *("--download-short-length", "--download-no-length", "--download-gzip"),
        *("--video-duration-offset", "-2.5", "--clip-size", "320x180"),
        *("--clip-sizes", "160x90,320x180"),
        *("--state", "s.jsonl"),
    )
    config = mock_server.config_from_args(args)
    assert config.to_json() == {
        "api_keys": ["k1", "k2"],
        "balance": 5000.0,
        "refund_failed": True,
        "no_membership": True,
        "fetch_images": True,
        "gen_seconds": [1.0, 3.0],
        "seed": 9,
        "fail_rate": 0.2,
        "errors_as_http": True,
        "failed_status": 2,
        "extra_status": 3,
        "cursor_field": "nextCursor",
        "failure_field": "error_msg",
        "cover_url": True,
        "download_content_type": "application/octet-stream",
        "error_code_field": "code",
        "output_url_field": "output.video_url",
        "output_url_single": True,
        "bad_output_url": True,
        "status_style": "word",
        "no_url_polls": 2,
        "error_msg_size": 3000,
        "query_http_status": 405,
        "query_error_code": 401,
        "trickle": 0.2,
        "rate_limit": 10,
        "retry_after": False,
        "max_running": 4,
        "max_running_code": 102,
        "error_rate": 0.1,
        "lost_response_rate": 0.05,
        "latency": [0.01, 0.02],
        "download_fail_rate": 0.3,
        "download_short_length": True,
        "download_no_length": True,
        "download_gzip": True,
        "video_duration_offset": -2.5,
        "clip_size": [320, 180],
        "clip_sizes": [[160, 90], [320, 180]],
        "output_url_ttl": 60.0,
        "usage_lag": 5.0,
        "usage_clock_offset": -90.0,
        "usage_defect": "epoch-ms",
        "state_file": "s.jsonl",
    }
    assert (args.host, args.port) == ("127.0.0.1", 8765)


@pytest.mark.parametrize(
    "argv",
    [
        ["--fail-rate", "2"],
        ["--latency", "5,1"],
        ["--gen-seconds", "fast"],
        ["--rate-limit", "0"],
        ["--cursor-field", "next"],
        ["--port", "99999"],
        ["--port", "-1"],
        ["--status-style", "roman"],
        ["--query-http-status", "200"],
        ["--output-url-ttl", "nan"],
        ["--usage-lag", "inf"],
        ["--trickle", "-1"],
    ],
)
def test_bad_flag_values_exit_2_with_a_message(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    """An impossible value is a usage error (exit 2) naming the flag, before anything starts."""
    err = io.StringIO()
    status = main(["mock-server", *argv], out=io.StringIO(), err=err)
    message = err.getvalue() + capsys.readouterr().err
    assert status == 2
    assert argv[0].removeprefix("--").replace("-", "_") in message.replace("-", "_")


def test_a_port_in_use_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    """Another listener on the port: exit 2 and a hint to pick another port."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        err = io.StringIO()
        status = main(
            ["mock-server", "--port", str(taken.getsockname()[1])], out=io.StringIO(), err=err
        )
    assert status == 2
    assert "cannot listen" in err.getvalue()
    assert "--port 0" in err.getvalue()


def test_without_the_mock_extra_it_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If uvicorn cannot be imported: one line naming pip install 'batchkling[mock]', exit 2."""
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    out, err = io.StringIO(), io.StringIO()
    status = mock_server._handle(parse("--port", "0"), IO(out=out, err=err))
    assert status == 2
    assert err.getvalue().strip().endswith("pip install 'batchkling[mock]'")
    assert err.getvalue().count("\n") == 1
    assert out.getvalue() == ""


@pytest.mark.slow
def test_the_command_serves_real_requests_and_stops_cleanly_on_sigterm(
    mock_server_process: Any,
) -> None:
    """The ready line gives a loopback URL; a create, query and download work; SIGTERM exits 0."""
    server = mock_server_process("--api-key", "k", "--gen-seconds", "0,0", "--balance", "3000")
    assert server.url.startswith("http://127.0.0.1:")
    headers = {"Authorization": "Bearer k"}
    with httpx.Client(base_url=server.url, headers=headers) as client:
        task_id = client.post(CREATE, json=kling_body()).json()["data"]["task_id"]
        data = client.post(QUERY, json={"task_id": task_id}).json()["data"]
        video = client.get(data["output_urls"][0])
        refused = client.post(CREATE, json=kling_body(), headers={"Authorization": "Bearer x"})
    assert data["output_urls"][0].startswith(server.url + "/files/")
    assert video.content == sample_video()
    assert refused.json()["error_code"] == 401
    assert server.stop(signal.SIGTERM) == 0


@pytest.mark.slow
def test_sigint_stops_it_cleanly(mock_server_process: Any) -> None:
    """Ctrl-C (SIGINT) ends the server with status 0 and no traceback."""
    server = mock_server_process()
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/__emulator/stats").status_code == 200
    assert server.stop(signal.SIGINT) == 0
    assert "Traceback" not in server.stderr


@pytest.mark.slow
@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGKILL])
def test_state_survives_a_restart_of_the_process(
    mock_server_process: Any, tmp_path: Path, stop_signal: int
) -> None:
    """--state FILE: after a clean stop or even a kill, a new process knows the old tasks."""
    state = str(tmp_path / "state.jsonl")
    first = mock_server_process("--state", state, "--gen-seconds", "0,0", "--balance", "9000")
    headers = {"Authorization": "Bearer k"}
    with httpx.Client(base_url=first.url, headers=headers) as client:
        task_id = client.post(CREATE, json=kling_body()).json()["data"]["task_id"]
    first.stop(stop_signal)
    second = mock_server_process("--state", state, "--gen-seconds", "0,0", "--balance", "9000")
    with httpx.Client(base_url=second.url, headers=headers) as client:
        data = client.post(QUERY, json={"task_id": task_id}).json()["data"]
        balance = client.get("/api/un-api/query_account_status").json()["data"]["balances"]
    assert data["status"] == 1
    assert balance == 8000
