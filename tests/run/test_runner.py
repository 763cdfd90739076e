"""The runner end to end against the emulator over real loopback HTTP."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchkling.ledger import LEDGER_NAME, Ledger
from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import (
    FAST,
    creates_per_prompt,
    ledger_lines,
    max_in_window,
    run_cli,
    status_json,
    write_manifest,
)

Factory = Callable[..., LiveEmulator]


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", "test-key")
    monkeypatch.delenv("SJINN_API_BASE", raising=False)


def run(manifest: Path, emu: LiveEmulator, *extra: str) -> Any:
    return run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST, *extra)


def test_happy_path_yaml(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """Every job is created once, downloaded, verified, and every ledger line fits the schema."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 5, takes=1)
    res = run(manifest, emu)
    assert res.code == 0, res.err
    stats = emu.stats()
    assert stats["tasks_created"] == 5
    assert set(creates_per_prompt(stats).values()) == {1}
    run_dir = tmp_path / "board.run"
    lines = ledger_lines(run_dir)
    assert lines[0]["event"] == "header" and lines[0]["manifest_sha256"]
    doc = status_json(manifest)
    assert doc["counts"]["done"] == 5 and doc["credits_committed"] == 5000
    for job in doc["jobs"]:
        data = Path(job["output"]).read_bytes()
        downloaded = [x for x in lines if x["event"] == "downloaded" and x["job"] == job["job"]]
        assert hashlib.sha256(data).hexdigest() == downloaded[-1]["sha256"]
    again = run(manifest, emu)
    assert again.code == 0
    assert emu.stats()["tasks_created"] == 5  # resuming a finished run sends no create


def test_happy_path_csv_with_takes(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """A CSV manifest with takes renders <id>#<k> jobs."""
    emu = live_emulator_factory()
    csv = tmp_path / "board.csv"
    csv.write_text(
        "id,prompt,image,takes,model_mode\na,walks in,a.png,2,pro\nb,sits down,b.png,,\n",
        encoding="utf-8",
    )
    res = run_cli(
        "run",
        str(csv),
        "--api-base",
        emu.base_url,
        *FAST,
        "--image-base-url",
        emu.base_url + "/__emulator/frames/",
    )
    assert res.code == 0, res.err
    doc = status_json(csv, "--image-base-url", "http://x/")
    assert [j["job"] for j in doc["jobs"]] == ["a#1", "a#2", "b"]
    assert doc["credits_committed"] == 2 * 1500 + 1000
    assert (tmp_path / "board.run" / "videos" / "a#2.mp4").exists()


def test_concurrency_is_never_exceeded(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """Tasks running at once at the server never exceed --concurrency."""
    emu = live_emulator_factory(gen_seconds=(0.2, 0.4))
    manifest = write_manifest(tmp_path, emu.base_url, 12)
    res = run(manifest, emu, "--concurrency", "3")
    assert res.code == 0, res.err
    stats = emu.stats()
    assert stats["max_running"]["test-key"] == 3
    assert stats["tasks_created"] == 12


def test_rate_at_server_stays_under_rate(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """With 429 storms and 5xx bursts, requests per 1 s window at the server stay <= --rate."""
    emu = live_emulator_factory(rate_limit=8, error_rate=0.2, gen_seconds=(0.3, 0.6))
    manifest = write_manifest(tmp_path, emu.base_url, 8)
    res = run_cli(
        "run",
        str(manifest),
        "--api-base",
        emu.base_url,
        "--poll-interval",
        "0.05,0.2",
        "--rate",
        "10/s",
        "--quiet",
        "--usage-settle",
        "0.3",
        "--concurrency",
        "8",
    )
    stats = emu.stats()
    times = stats["request_times"]["test-key"]
    assert max_in_window(times, 1.0) <= 10
    assert stats["requests"]  # the faults really happened
    assert sum(stats["faults"].values()) > 0
    # 5xx on a create can leave jobs in doubt; none was created twice.
    assert max(creates_per_prompt(stats).values()) == 1
    assert res.code in (0, 1)


def test_lost_responses_become_in_doubt_not_resubmitted(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """A create whose answer is lost is in doubt, counted, and never sent again without a flag."""
    emu = live_emulator_factory(lost_response_rate=1.0)
    manifest = write_manifest(tmp_path, emu.base_url, 3)
    res = run(manifest, emu, "--no-reconcile")
    assert res.code == 1
    assert "in doubt" in res.out and "--resubmit-in-doubt" in res.out
    assert emu.stats()["tasks_created"] == 3
    doc = status_json(manifest)
    assert doc["counts"]["in_doubt"] == 3 and doc["credits_committed"] == 3000
    emu.set_config(lost_response_rate=0.0)
    res = run(manifest, emu, "--no-reconcile", "--skip-preflight")
    assert emu.stats()["tasks_created"] == 3  # still not resubmitted
    res = run(manifest, emu, "--no-reconcile", "--resubmit-in-doubt")
    assert res.code == 0, res.err
    assert emu.stats()["tasks_created"] == 6  # asked for: paid twice
    assert status_json(manifest)["credits_committed"] == 6000


def test_lost_responses_reconciled_without_a_flag(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """With lost answers, reconciliation adopts the charged tasks: all done, one create each."""
    emu = live_emulator_factory(lost_response_rate=0.5, gen_seconds=(0.1, 0.3), seed=7)
    manifest = write_manifest(tmp_path, emu.base_url, 8, prompt="take {i} of the dance")
    res = run(manifest, emu)
    assert res.code == 0, res.out + res.err
    stats = emu.stats()
    assert stats["requests"]["create_tool_task"].get("lost", 0) > 0
    assert stats["tasks_created"] == 8
    assert set(creates_per_prompt(stats).values()) == {1}
    events = [x["event"] for x in ledger_lines(tmp_path / "board.run")]
    assert "reconciled" in events


def test_budget_cap_across_runs(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """The budget caps credits over all runs together; over budget exits 3 and sends nothing."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 5)
    res = run(manifest, emu, "--budget", "2500")
    assert res.code == 3 and "over" in res.err
    assert emu.stats()["tasks_created"] == 0
    res = run(manifest, emu, "--budget", "2500", "--allow-partial")
    assert res.code == 0, res.err
    assert emu.stats()["credits_charged"]["test-key"] == 2000
    doc = status_json(manifest)
    assert doc["counts"]["skipped"] == 3 and doc["counts"]["done"] == 2
    res = run(manifest, emu, "--budget", "4000", "--allow-partial")
    assert emu.stats()["credits_charged"]["test-key"] == 4000
    res = run(manifest, emu, "--budget", "4999", "--allow-partial")
    assert emu.stats()["credits_charged"]["test-key"] == 4000  # the last job would overshoot


def test_auth_failure_stops_at_once(
    tmp_path: Path, live_emulator_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A refused key exits 4 before any create; the key is never printed."""
    emu = live_emulator_factory(api_keys=("the-right-key",))
    monkeypatch.setenv("SJINN_API_KEY", "sk-wrong-secret")
    manifest = write_manifest(tmp_path, emu.base_url, 3)
    res = run(manifest, emu)
    assert res.code == 4
    assert "sk-wrong-secret" not in res.out + res.err
    assert emu.stats()["tasks_created"] == 0
    assert "sk-wrong-secret" not in (tmp_path / "board.run" / LEDGER_NAME).read_text()
    res = run(manifest, emu, "--skip-preflight")  # refused at the first create instead
    assert res.code == 4 and emu.stats()["tasks_created"] == 0
    assert sum(emu.stats()["requests"]["create_tool_task"].values()) == 1


def test_missing_key_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No API key: one line, exit 2, nothing read."""
    monkeypatch.delenv("SJINN_API_KEY")
    res = run_cli("run", str(tmp_path / "nope.yaml"))
    assert res.code == 2
    assert "SJINN_API_KEY" in res.err and len(res.err.strip().splitlines()) == 1


def test_insufficient_balance_mid_run(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """When the balance runs out, new creates stop, running jobs finish, exit 4."""
    emu = live_emulator_factory(balance=2000, gen_seconds=(0.3, 0.5))
    manifest = write_manifest(tmp_path, emu.base_url, 4)
    res = run(manifest, emu, "--skip-preflight", "--concurrency", "1")
    assert res.code == 4
    doc = status_json(manifest)
    assert doc["counts"]["done"] == 2 and doc["counts"]["pending"] == 2
    assert emu.stats()["tasks_created"] == 2
    res = run(manifest, emu)  # pre-flight names both figures
    assert res.code == 4 and "2000" in res.err and "0 credits" in res.err


def test_failed_tasks_and_retry_failed(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """Failed tasks stay failed until --retry-failed resubmits them."""
    emu = live_emulator_factory(fail_rate=1.0)
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    res = run(manifest, emu)
    assert res.code == 1 and "--retry-failed" in res.out
    emu.set_config(fail_rate=0.0)
    assert run(manifest, emu).code == 1
    assert emu.stats()["tasks_created"] == 2
    res = run(manifest, emu, "--retry-failed")
    assert res.code == 0
    assert emu.stats()["tasks_created"] == 4
    assert status_json(manifest)["credits_committed"] == 4000  # no refund assumed


def test_changed_entry_reported_then_rerendered(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """A changed shot is reported and left alone, and resent only with --rerender-changed."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    assert run(manifest, emu).code == 0
    manifest.write_text(manifest.read_text().replace("shot 2 turns", "shot 2 jumps"))
    res = run(manifest, emu)
    assert res.code == 0 and "s02" in res.err and "changed" in res.err
    assert emu.stats()["tasks_created"] == 2
    res = run(manifest, emu, "--rerender-changed")
    assert res.code == 0
    assert emu.stats()["tasks_created"] == 3
    assert emu.stats()["tasks"][-1]["input"]["prompt"] == "shot 2 jumps slowly"


def test_two_runners_on_one_directory(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """A second runner exits 2 at once, naming the holder's pid."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    with Ledger.open(tmp_path / "board.run"):
        res = run(manifest, emu)
    assert res.code == 2 and "pid" in res.err
    assert emu.stats()["tasks_created"] == 0


def test_torn_last_line_is_cut_and_run_goes_on(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """A torn last ledger line is warned about, cut off, and the run resumes."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    assert run(manifest, emu, "--no-wait").code == 0
    ledger = tmp_path / "board.run" / LEDGER_NAME
    with open(ledger, "a") as fh:
        fh.write('{"ts": "2026-11-24T00:00:00Z", "event": "crea')
    res = run(manifest, emu)
    assert res.code == 0 and "torn" in res.err
    ledger_lines(tmp_path / "board.run")  # every remaining line is whole and valid
    assert emu.stats()["tasks_created"] == 2


def test_download_cut_off_mid_body(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """Cut-off downloads are retried; every file ends whole and verified; no new create."""
    emu = live_emulator_factory(download_fail_rate=0.5, seed=3)
    manifest = write_manifest(tmp_path, emu.base_url, 4)
    res = run(manifest, emu)
    assert res.code == 0, res.out + res.err
    stats = emu.stats()
    assert stats["tasks_created"] == 4
    assert stats["faults"].get("download_cut", 0) > 0
    for job in status_json(manifest)["jobs"]:
        assert Path(job["output"]).stat().st_size > 0


def test_expired_output_urls_are_refreshed(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """An expired output URL is replaced by a fresh query, not a new create."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    assert run(manifest, emu, "--no-download").code == 0
    emu.set_config(output_url_ttl=0.001)
    import time

    time.sleep(0.05)
    emu.set_config(output_url_ttl=60)
    res = run(manifest, emu)
    assert res.code == 0, res.err
    assert emu.stats()["tasks_created"] == 2
    assert status_json(manifest)["counts"]["done"] == 2


def test_undocumented_status_is_not_success(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """With failures reported as status 2, the task stays running until the timeout, never done."""
    emu = live_emulator_factory(fail_rate=1.0, failed_status=2)
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    res = run(manifest, emu, "--task-timeout", "1")
    assert res.code == 1
    assert "undocumented status 2" in res.out
    assert status_json(manifest)["counts"]["running"] == 1


def test_extra_status_and_errors_as_http(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """Tasks passing through an undocumented status, and HTTP-status errors, still finish."""
    emu = live_emulator_factory(extra_status=3, errors_as_http=True)
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    res = run(manifest, emu)
    assert res.code == 0, res.out + res.err


def test_emulator_restart_mid_run(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """A server restart (with --state) is survived: the next run collects every job."""
    state = tmp_path / "emu-state.json"
    emu = live_emulator_factory(state_file=str(state), gen_seconds=(0.5, 0.8))
    manifest = write_manifest(tmp_path, emu.base_url, 3)
    assert run(manifest, emu, "--no-wait").code == 0
    emu.restart()
    res = run(manifest, emu)
    assert res.code == 0, res.out + res.err
    assert emu.stats()["tasks_created"] == 3


def test_no_wait_exits_0_when_all_was_sent_and_1_when_a_create_failed(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """--no-wait submitted everything and nothing failed: 0; a create in doubt: 1."""
    emu = live_emulator_factory(gen_seconds=(5.0, 6.0))
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    res = run(manifest, emu, "--no-wait")
    assert res.code == 0, res.out + res.err
    assert status_json(manifest)["counts"]["running"] == 2
    emu.set_config(lost_response_rate=1.0)
    other = write_manifest(tmp_path, emu.base_url, 1, name="other", prompt="other {i}")
    res = run(other, emu, "--no-wait", "--no-reconcile")
    assert res.code == 1, res.out + res.err
    assert status_json(other)["counts"]["in_doubt"] == 1


def test_no_download_stops_at_completed(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """--no-download leaves jobs completed; a later run downloads without creating."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    assert run(manifest, emu, "--no-download").code == 0
    assert status_json(manifest)["counts"]["completed"] == 2
    assert run(manifest, emu).code == 0
    assert status_json(manifest)["counts"]["done"] == 2
    assert emu.stats()["tasks_created"] == 2


def test_lost_video_is_downloaded_again(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """A done job whose file was deleted is downloaded again, never created again."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    assert run(manifest, emu).code == 0
    video = tmp_path / "board.run" / "videos" / "s01.mp4"
    video.unlink()
    assert run(manifest, emu).code == 0
    assert video.exists() and emu.stats()["tasks_created"] == 1


def test_run_dir_of_another_manifest_is_warned_about(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """Pointing a second manifest at a run directory warns, and the budget still counts both."""
    emu = live_emulator_factory()
    first = write_manifest(tmp_path, emu.base_url, 1, name="first")
    second = write_manifest(tmp_path, emu.base_url, 2, name="second", prompt="other {i}")
    shared = tmp_path / "shared.run"
    assert run(first, emu, "--run-dir", str(shared)).code == 0
    res = run(second, emu, "--run-dir", str(shared), "--budget", "2500", "--allow-partial")
    assert "was made for" in res.err
    assert emu.stats()["credits_charged"]["test-key"] <= 2500
