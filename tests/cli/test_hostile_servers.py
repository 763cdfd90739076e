"""`batchkling run` against a hostile server: refused queries, a bad output URL, odd answers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import FAST, run_cli, status_json, write_manifest

Live = Callable[..., LiveEmulator]


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", "test-key")


@pytest.mark.parametrize(
    "fault",
    [{"query_http_status": 405}, {"query_http_status": 302}, {"query_error_code": 400}],
    ids=["405", "redirect", "error 400"],
)
def test_refused_queries_leave_the_tasks_running(
    tmp_path: Path, live_emulator_factory: Live, fault: dict[str, int]
) -> None:
    """Every query refused: no traceback; the tasks stay running for the next run (exit 1)."""
    emu = live_emulator_factory(**fault)
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST, "--task-timeout", "1")
    assert res.code == 1, res.err
    assert "still running after --task-timeout: s01, s02" in res.out
    assert status_json(manifest)["counts"]["running"] == 2
    assert emu.stats()["tasks_created"] == 2


def test_a_query_refusing_the_key_stops_the_run_with_exit_4(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """success:false 401 on a query: the key was refused, one error line, exit 4."""
    emu = live_emulator_factory(query_error_code=401)
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST)
    assert res.code == 4
    assert "The API key was not accepted" in res.err and "Traceback" not in res.err


def test_odd_answers_still_render_every_job(tmp_path: Path, live_emulator_factory: Live) -> None:
    """Codes under `code`, words for statuses, one URL string under `url`, late URLs: all done."""
    emu = live_emulator_factory(
        error_code_field="code",
        status_style="word",
        output_url_field="url",
        output_url_single=True,
        no_url_polls=2,
    )
    manifest = write_manifest(tmp_path, emu.base_url, 3)
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST)
    assert res.code == 0, res.out + res.err
    assert status_json(manifest)["counts"]["done"] == 3
    assert emu.stats()["tasks_created"] == 3


def test_a_bad_output_url_crashes_nothing(tmp_path: Path, live_emulator_factory: Live) -> None:
    """http://[::1 as every output URL: every job is still sent, and the run ends cleanly."""
    emu = live_emulator_factory(bad_output_url=True)
    manifest = write_manifest(tmp_path, emu.base_url, 3)
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST, "--task-timeout", "1")
    assert res.code == 1, res.err
    assert emu.stats()["tasks_created"] == 3
    assert status_json(manifest)["counts"].get("done", 0) == 0
