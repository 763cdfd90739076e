"""`batchkling run` against the real API's variants: late or bad video URLs, deleted tasks,
undocumented statuses, refused keys, concurrency refusals and stalls."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import FAST, creates_per_prompt, ledger_lines, run_cli, write_manifest

Live = Callable[..., LiveEmulator]
LOUD = [x for x in FAST if x != "--quiet"]  # FAST with the progress output


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", "test-key")


def _run(manifest: Path, emu: LiveEmulator, run_dir: Path, *extra: str) -> Any:
    return run_cli(
        "run", str(manifest), "--api-base", emu.base_url, "--run-dir", str(run_dir), *extra
    )


def _failed(run_dir: Path) -> dict[str, str]:
    return {e["job"]: e["error"] for e in ledger_lines(run_dir) if e["event"] == "failed"}


def test_a_task_without_a_video_url_fails_after_ten_polls(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """Completed with no URL, answer after answer: polled 10 times, then failed with the reason."""
    emu = live_emulator_factory(no_url_polls=10_000)
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    res = _run(manifest, emu, tmp_path / "rd", *FAST)
    assert res.code == 1, res.out + res.err
    reason = "the task completed but the API gave no video URL after 10 polls"
    assert _failed(tmp_path / "rd") == {"s01": reason}
    assert f"s01: failed: {reason}." in res.out
    assert emu.stats()["tasks_created"] == 1


def test_a_bad_output_url_fails_its_job_and_the_run_goes_on(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """An unusable video URL fails each job with that reason; every job is still sent."""
    emu = live_emulator_factory(bad_output_url=True)
    manifest = write_manifest(tmp_path, emu.base_url, 3)
    res = _run(manifest, emu, tmp_path / "rd", *FAST, "--concurrency", "1")
    assert res.code == 1, res.out + res.err
    failed = _failed(tmp_path / "rd")
    assert sorted(failed) == ["s01", "s02", "s03"]
    assert all("[::1" in why or "URL" in why for why in failed.values()), failed
    assert "s03: failed:" in res.out
    assert emu.stats()["tasks_created"] == 3


def test_a_deleted_task_fails_and_is_sent_again_only_with_retry_failed(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """A recorded task that stays "not found" fails as gone; only --retry-failed sends it again."""
    emu = live_emulator_factory(gen_seconds=(30.0, 30.0))
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    rd = tmp_path / "rd"
    assert _run(manifest, emu, rd, *FAST, "--no-wait").code == 0  # left running
    httpx.post(emu.base_url + "/__emulator/reset").raise_for_status()  # the task is gone
    res = _run(manifest, emu, rd, *FAST, "--gone-after", "0.5")
    assert res.code == 1, res.out + res.err
    assert _failed(rd) == {"s01": "the task is gone from the account (deleted?)"}
    again = _run(manifest, emu, rd, *FAST, "--gone-after", "0.5")
    assert again.code == 1 and emu.stats()["tasks_created"] == 0  # not resubmitted
    emu.set_config(gen_seconds=[0.05, 0.2])
    retried = _run(manifest, emu, rd, *FAST, "--retry-failed")
    assert retried.code == 0, retried.out + retried.err
    assert emu.stats()["tasks_created"] == 1


def test_the_summary_shows_the_undocumented_status_as_sent(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """A float status the reference does not know is shown as the server sent it (7.0)."""
    emu = live_emulator_factory(status_style="float", extra_status=7, gen_seconds=(0.4, 0.4))
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    res = _run(manifest, emu, tmp_path / "rd", *FAST)
    assert res.code == 0, res.out + res.err
    assert "s01: the API answered the undocumented status 7.0; treated as running." in res.out
    assert "-999" not in res.out


def test_a_query_refusing_the_key_ends_the_run_with_exit_4_and_run_ended(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """HTTP 401 on a query mid-run: exit 4, run_ended (status 4) in the ledger, no traceback."""
    emu = live_emulator_factory(query_http_status=401)
    manifest = write_manifest(tmp_path, emu.base_url, 3)
    res = _run(manifest, emu, tmp_path / "rd", *FAST, "--concurrency", "1")
    assert res.code == 4, res.out + res.err
    assert "Traceback" not in res.err
    last = ledger_lines(tmp_path / "rd")[-1]
    assert last["event"] == "run_ended" and last["exit_status"] == 4
    assert emu.stats()["tasks_created"] == 1  # nothing more was sent


@pytest.mark.parametrize("code", [None, 1303], ids=["http 429", "success false"])
def test_concurrency_adapts_to_the_account_limit(
    tmp_path: Path, live_emulator_factory: Live, code: int | None
) -> None:
    """The account runs 2 at once: every job done, each sent once, few refusals, limit shown."""
    emu = live_emulator_factory(max_running=2, max_running_code=code, gen_seconds=(0.3, 0.5))
    manifest = write_manifest(tmp_path, emu.base_url, 8)
    res = _run(manifest, emu, tmp_path / "rd", *FAST, "--concurrency", "4")
    assert res.code == 0, res.out + res.err
    stats = emu.stats()
    assert set(creates_per_prompt(stats).values()) == {1}
    assert stats["tasks_created"] == 8
    refusals = _create_refusals(stats, code)
    assert 1 <= refusals <= 3 * (4 - 2), stats["requests"]
    assert "the account allowed 2 at once" in res.out
    assert max(stats["max_running"].values()) <= 2


def _create_refusals(stats: dict[str, Any], code: int | None) -> int:
    create = next(k for k in stats["requests"] if "create" in k)
    if code is None:
        return int(stats["requests"][create].get("429", 0))
    return int(stats.get("error_codes", {}).get(create, {}).get(str(code), 0))


def test_a_stalled_task_is_named_once_and_still_finishes(
    tmp_path: Path, live_emulator_factory: Live
) -> None:
    """Status unchanged past --stall-after: named once in the progress and the summary; done."""
    emu = live_emulator_factory(gen_seconds=(1.0, 1.0))
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    res = _run(manifest, emu, tmp_path / "rd", *LOUD, "--stall-after", "0.3")
    assert res.code == 0, res.out + res.err
    assert res.err.count("s01: stalled") == 1, res.err
    assert "stalled (status unchanged for longer than expected): s01" in res.out
