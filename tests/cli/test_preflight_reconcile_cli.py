"""`check` and `reconcile` end to end: the emulator, a loopback image host, the real CLI."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest

from batchkling.ledger import Ledger, fold_ledger
from batchkling.model import Job, Shot
from tests.emulator_fixtures import LiveEmulator
from tests.image_server import ImageHost, Resource, png, serve
from tests.runner_helpers import FAST, run_cli, status_json, write_manifest

Factory = Callable[..., LiveEmulator]


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", "test-key")


@pytest.fixture
def images() -> Iterator[ImageHost]:
    with serve(ImageHost()) as host:
        yield host


def image_manifest(tmp_path: Path, host: ImageHost) -> Path:
    host.resources.update(
        {
            "good.png": Resource(body=png(640, 360)),
            "missing.png": Resource(status=404, content_type="text/plain", body=b"nope"),
            "page.png": Resource(content_type="text/html", body=b"<html>login</html>"),
            "tiny.png": Resource(body=png(200, 120)),
            "wide.png": Resource(body=png(1500, 300)),
        }
    )
    body = ["version: 1", f"image_base_url: {host.base}/", "shots:"]
    for i, name in enumerate(["good", "missing", "page", "tiny", "wide"], start=1):
        body += [f"  - id: s{i}", f"    prompt: shot {i}", f"    image: {name}.png"]
    path = tmp_path / "imgs.yaml"
    path.write_text("\n".join(body) + "\n")
    return path


def test_check_reports_every_bad_image_with_its_place(
    tmp_path: Path, live_emulator_factory: Factory, images: ImageHost
) -> None:
    """Each broken image is one line naming file, line, shot and field; exit 2; nothing spent."""
    emu = live_emulator_factory()
    manifest = image_manifest(tmp_path, images)
    res = run_cli("check", str(manifest), "--api-base", emu.base_url)
    assert res.code == 2
    lines = [x for x in res.err.splitlines() if x.strip()]
    assert len(lines) == 4
    assert lines[0].startswith(f"{manifest}:7: shot s2: image: ") and "404" in lines[0]
    assert "shot s3: image:" in lines[1] and "text/html" in lines[1]
    assert "shot s4: image:" in lines[2] and "300" in lines[2]
    assert "shot s5: image:" in lines[3] and "aspect" in lines[3]
    assert emu.stats()["tasks_created"] == 0


def test_run_refuses_to_spend_when_preflight_fails(
    tmp_path: Path, live_emulator_factory: Factory, images: ImageHost
) -> None:
    """`run` runs the same checks and sends no create when one fails."""
    emu = live_emulator_factory()
    manifest = image_manifest(tmp_path, images)
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST)
    assert res.code == 2 and "404" in res.err
    assert emu.stats()["tasks_created"] == 0
    last = (tmp_path / "imgs.run" / "ledger.jsonl").read_text().splitlines()[-1]
    assert '"event":"run_ended"' in last and '"exit_status":2' in last


def test_second_check_sends_only_conditional_requests(
    tmp_path: Path, live_emulator_factory: Factory, images: ImageHost
) -> None:
    """With unchanged images, a second check sends one conditional request per image."""
    emu = live_emulator_factory()
    images.resources["a.png"] = Resource(body=png(640, 360))
    images.resources["b.png"] = Resource(body=png(480, 640))
    path = tmp_path / "two.yaml"
    path.write_text(
        f"version: 1\nimage_base_url: {images.base}/\nshots:\n"
        "  - {id: a, prompt: p, image: a.png, tail_image_url: a.png}\n"
        "  - {id: b, prompt: q, image: b.png}\n"
    )
    assert run_cli("check", str(path), "--api-base", emu.base_url).code == 0
    images.seen.clear()
    res = run_cli("check", str(path), "--api-base", emu.base_url)
    assert res.code == 0, res.err
    assert len(images.seen) == 2
    assert all(
        s.method == "GET" and "if-none-match" in s.headers and s.status == 304 for s in images.seen
    )


def test_check_balance_passes_and_fails(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """The balance must cover what the run still has to commit; else exit 4 naming both."""
    emu = live_emulator_factory(balance=3000)
    manifest = write_manifest(tmp_path, emu.base_url, 3)
    res = run_cli("check", str(manifest), "--api-base", emu.base_url)
    assert res.code == 0 and "3000" in res.out
    manifest = write_manifest(tmp_path, emu.base_url, 4, name="bigger")
    res = run_cli("check", str(manifest), "--api-base", emu.base_url)
    assert res.code == 4
    assert "3000" in res.err and "4000" in res.err


def test_check_membership_and_key(
    tmp_path: Path, live_emulator_factory: Factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No subscription or a refused key: exit 4 before any create."""
    emu = live_emulator_factory(no_membership=True)
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    res = run_cli("check", str(manifest), "--api-base", emu.base_url)
    assert res.code == 4 and "subscription" in res.err
    emu.set_config(no_membership=False)
    emu2 = live_emulator_factory(api_keys=("other",))
    res = run_cli("check", str(manifest), "--api-base", emu2.base_url)
    assert res.code == 4 and "test-key" not in res.err


def test_reconcile_adopts_a_lost_response(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """A create charged under --lost-response-rate 1 is adopted, then polled and downloaded."""
    emu = live_emulator_factory(lost_response_rate=1.0)
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST, "--no-reconcile")
    assert res.code == 1 and status_json(manifest)["counts"]["in_doubt"] == 1
    res = run_cli("reconcile", str(manifest), "--api-base", emu.base_url, "--usage-settle", "0")
    assert res.code == 0, res.err
    assert "reconciled: s01" in res.err
    job = status_json(manifest)["jobs"][0]
    assert job["state"] == "running" and job["task_id"] == emu.stats()["tasks"][0]["task_id"]
    emu.set_config(lost_response_rate=0.0)
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST)
    assert res.code == 0
    assert emu.stats()["tasks_created"] == 1


def _doubt(run_dir: Path, jobs: list[Job], at: datetime, span: float) -> None:
    """Write in-doubt creates of ``jobs``, all inside [at, at + span]."""
    stamp = iter([at + timedelta(seconds=span * i / 10) for i in range(100)])

    def now() -> str:
        return next(stamp).isoformat().replace("+00:00", "Z")

    with Ledger.open(run_dir, now=now) as led:
        led.append_sync("run_started", None, pid=1)
        for job in jobs:
            led.append_sync("intent", job.key, credits=job.credits, fingerprint=job.fingerprint)
        for job in jobs:
            led.append_sync("in_doubt", job.key, error="lost")


def _jobs(manifest_ids: list[str], base: str) -> list[Job]:
    shots = [
        Shot(
            id=i,
            prompt=f"shot {int(i[1:])} turns slowly",
            image=f"{base}/__emulator/frames/{i}.png",
        )
        for i in manifest_ids
    ]
    return [Job(key=s.id, shot=s) for s in shots]


def _charge(emu: LiveEmulator, credits: int, at: datetime, task_id: str | None = None) -> None:
    body: dict[str, object] = {
        "key": "test-key",
        "cost_credits": credits,
        "create_time": at.isoformat().replace("+00:00", "Z"),
    }
    if task_id is not None:
        body["task_id"] = task_id
    httpx.post(emu.base_url + "/__emulator/usage", json=body).raise_for_status()


def _known(run_dir: Path, emu: LiveEmulator, job: str, task: str, at: datetime) -> None:
    """A create whose answer arrived, in the ledger and in the account's credits usage."""
    stamp = iter([at, at + timedelta(seconds=0.01)])

    def now() -> str:
        return next(stamp).isoformat().replace("+00:00", "Z")

    with Ledger.open(run_dir, now=now) as led:
        led.append_sync("intent", job, credits=1000, fingerprint="f" * 64)
        led.append_sync("created", job, task_id=task)
    _charge(emu, 1000, at + timedelta(seconds=0.005), task_id=task)


def test_never_created_goes_back_to_pending(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """A usage proven complete over a settled window, with no charge in it: the job is resent."""
    emu = live_emulator_factory()
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    run_dir = tmp_path / "board.run"
    past = datetime.now(timezone.utc) - timedelta(minutes=10)
    _known(run_dir, emu, "k1", "task-before", past - timedelta(seconds=5))
    _doubt(run_dir, _jobs(["s01"], emu.base_url), past, 0.5)
    res = run_cli("reconcile", str(manifest), "--api-base", emu.base_url)
    assert res.code == 1 and "no task created after it" in res.err  # no watermark yet
    _known(run_dir, emu, "k2", "task-after", past + timedelta(seconds=5))
    res = run_cli("reconcile", str(manifest), "--api-base", emu.base_url)
    assert res.code == 0 and "not created: s01" in res.err
    assert status_json(manifest)["jobs"][0]["state"] == "pending"
    assert status_json(manifest)["credits_committed"] == 2000  # the two known creates only
    assert run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST).code == 0
    assert emu.stats()["tasks_created"] == 1


def test_two_simultaneous_same_price_stay_in_doubt_and_orphans(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """Two same-price creates at once and two charges: both stay in doubt, listed; orphans named."""
    emu = live_emulator_factory(cursor_field="nextCursor")
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    at = datetime.now(timezone.utc) - timedelta(minutes=10)
    _doubt(tmp_path / "board.run", _jobs(["s01", "s02"], emu.base_url), at, 1.0)
    _charge(emu, 1000, at + timedelta(seconds=0.35))
    _charge(emu, 1000, at + timedelta(seconds=0.45))
    _charge(emu, 4500, at + timedelta(seconds=0.4), task_id="orphan-task")
    for i in range(210):  # more than one page of unrelated charges, older than the window
        _charge(emu, 300, at - timedelta(seconds=30) + timedelta(milliseconds=i))
    res = run_cli("reconcile", str(manifest), "--api-base", emu.base_url)
    assert res.code == 1
    assert res.err.count("still in doubt") == 2
    assert "orphan charge: task orphan-task, 4,500 credits" in res.err
    st = fold_ledger(tmp_path / "board.run" / "ledger.jsonl").state
    assert {r.state.value for r in st.jobs.values()} == {"in_doubt"}


def test_usage_unavailable_changes_nothing(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """When the usage endpoint fails, the ledger is left as it is and the user is told."""
    emu = live_emulator_factory(error_rate=1.0)
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    past = datetime.now(timezone.utc) - timedelta(minutes=10)
    _doubt(tmp_path / "board.run", _jobs(["s01"], emu.base_url), past, 0.5)
    before = (tmp_path / "board.run" / "ledger.jsonl").read_text()
    res = run_cli("reconcile", str(manifest), "--api-base", emu.base_url)
    assert res.code == 1 and "could not be read" in res.err
    assert (tmp_path / "board.run" / "ledger.jsonl").read_text() == before


def test_account_check_rides_out_a_rate_limit(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """A 429 on the free account call is retried after Retry-After, not a failed pre-flight."""
    emu = live_emulator_factory(rate_limit=1)
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    httpx.post(
        emu.base_url + "/api/un-api/query_account_status",
        json={},
        headers={"Authorization": "Bearer test-key"},
    )
    res = run_cli("check", str(manifest), "--api-base", emu.base_url)
    assert res.code == 0, res.err
    assert emu.stats()["requests"]["query_account_status"].get("429", 0) >= 1


def test_run_reports_orphan_charges(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """A run that reconciles names the charges no job of it claims."""
    emu = live_emulator_factory(lost_response_rate=1.0)
    manifest = write_manifest(tmp_path, emu.base_url, 1)
    _charge(emu, 4500, datetime.now(timezone.utc), task_id="somebody-elses-task")
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST)
    assert res.code == 0, res.out + res.err
    assert "orphan charge: task somebody-elses-task, 4,500 credits" in res.out
    assert emu.stats()["tasks_created"] == 1


def test_usage_lag_shorter_than_settle_never_pays_twice(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """The usage shows charges late; waiting out --usage-settle adopts instead of resending."""
    emu = live_emulator_factory(lost_response_rate=1.0, usage_lag=0.6)
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST, "--usage-settle", "1.0")
    assert res.code == 0, res.out + res.err
    assert emu.stats()["tasks_created"] == 2
    assert status_json(manifest)["counts"]["done"] == 2
