"""A run directory remembers how its manifest was loaded: later commands need no flags again."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from batchkling.ledger import LEDGER_NAME
from batchkling.state import RunSettings, fold
from tests.emulator_fixtures import LiveEmulator
from tests.runner_helpers import FAST, ledger_lines, run_cli, write_manifest

Factory = Callable[..., LiveEmulator]

PROMPTS = {
    "s03": "the keeper climbs the stairs",
    "s01": "the lighthouse at dawn",
    "s04": "gulls lift off the railing",
    "s02": "the lamp turns once",
}


@pytest.fixture(autouse=True)
def _key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", "test-key")


def _csv(directory: Path, ids: tuple[str, ...] = ("s03", "s01")) -> Path:
    """A CSV manifest whose images are relative names: they need --image-base-url."""
    rows = ["id,prompt,image"] + [f"{i},{PROMPTS[i]},{i}.png" for i in ids]
    path = directory / "board.csv"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def _frames(emu: LiveEmulator) -> str:
    return emu.base_url + "/__emulator/frames/"


def _run(manifest: Path, emu: LiveEmulator, *extra: str) -> None:
    res = run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST, *extra)
    assert res.code == 0, res.err


def _json(*args: str) -> tuple[dict[str, Any], str]:
    res = run_cli(*args)
    assert res.code == 0, res.err
    doc: dict[str, Any] = json.loads(res.out)
    return doc, res.err


def _report(*args: str) -> tuple[dict[str, Any], str]:
    return _json("report", *args, "--format", "json", "-o", "-")


def test_a_csv_run_is_read_again_without_its_flags(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """run_started records the manifest, its sha256, the overrides and the budget (never the
    key); status, status --run-dir, report --run-dir, reconcile and audit then need no flag."""
    emu = live_emulator_factory(gen_seconds=(0.05, 0.1))
    manifest = _csv(tmp_path)
    flags = ["--image-base-url", _frames(emu), "--default", "model_mode=pro", "--budget", "9000"]
    _run(manifest, emu, *flags)
    run_dir = tmp_path / "board.run"
    (started,) = [ev for ev in ledger_lines(run_dir) if ev["event"] == "run_started"]
    assert started["manifest"] == str(manifest)
    assert started["overrides"] == {
        "budget": 9000,
        "image_base_url": _frames(emu),
        "defaults": {"model_mode": "pro"},
    }
    assert started["budget"] == 9000 and len(started["manifest_sha256"]) == 64
    assert "test-key" not in (run_dir / LEDGER_NAME).read_text(encoding="utf-8")

    res = run_cli("status", str(manifest))
    assert res.code == 0 and res.err == "", res.err
    assert res.out.startswith("2 jobs: done 2; 3,000 / 9,000 credits committed\n")
    doc, err = _json("status", "--run-dir", str(run_dir), "--json")
    assert err == "" and [(j["job"], j["state"]) for j in doc["jobs"]] == [
        ("s03", "done"),
        ("s01", "done"),
    ]
    report, err = _report("--run-dir", str(run_dir))
    assert err == ""
    assert [(j["job"], j["prompt"], j["model_mode"]) for j in report["jobs"]] == [
        ("s03", PROMPTS["s03"], "pro"),
        ("s01", PROMPTS["s01"], "pro"),
    ]
    assert report["jobs"][0]["image"] == _frames(emu) + "s03.png"
    assert report["totals"]["budget"] == 9000
    res = run_cli("reconcile", str(manifest), "--api-base", emu.base_url)
    assert (res.code, res.out) == (0, "nothing in doubt.\n"), res.err
    res = run_cli("audit", "--run-dir", str(run_dir), "--api-base", emu.base_url)
    assert res.code == 0 and "audit: clean: 2 charges settled" in res.out, res.out + res.err


def test_a_flag_given_later_wins_per_flag(tmp_path: Path, live_emulator_factory: Factory) -> None:
    """--image-base-url given later replaces the recorded one; the recorded defaults of
    other fields stay, and a --default for one field wins over its recorded value only."""
    emu = live_emulator_factory(gen_seconds=(0.05, 0.1))
    manifest = _csv(tmp_path)
    flags = ["--image-base-url", _frames(emu), "--default", "model_mode=pro"]
    _run(manifest, emu, *flags, "--default", "duration=4")
    other = "https://cdn.example.invalid/ep01/"
    report, err = _report(str(manifest), "--image-base-url", other, "--default", "duration=6")
    assert "changed" not in err
    assert [(j["image"], j["model_mode"], j["duration"]) for j in report["jobs"]] == [
        (other + "s03.png", "pro", 6),
        (other + "s01.png", "pro", 6),
    ]
    report, _ = _report(str(manifest))
    assert [(j["image"], j["duration"]) for j in report["jobs"]] == [
        (_frames(emu) + "s03.png", 4),
        (_frames(emu) + "s01.png", 4),
    ]


def test_a_changed_manifest_warns_in_one_line(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """A manifest edited since the run: one warning line; its new job shows as pending."""
    emu = live_emulator_factory(gen_seconds=(0.05, 0.1))
    manifest = _csv(tmp_path)
    _run(manifest, emu, "--image-base-url", _frames(emu))
    _csv(tmp_path, ("s03", "s01", "s04"))
    for args in (("status", str(manifest)), ("status", "--run-dir", str(tmp_path / "board.run"))):
        res = run_cli(*args, "--json")
        assert res.code == 0
        (line,) = res.err.splitlines()
        assert line.startswith(f"batchkling: warning: {manifest} changed since the last run")
        states = [(j["job"], j["state"]) for j in json.loads(res.out)["jobs"]]
        assert states == [("s03", "done"), ("s01", "done"), ("s04", "pending")]
    report, err = _report("--run-dir", str(tmp_path / "board.run"))
    assert len(err.splitlines()) == 1 and "changed since the last run" in err
    assert report["jobs"][2]["prompt"] == PROMPTS["s04"]


def test_status_of_a_run_dir_lists_never_sent_jobs_pending_in_manifest_order(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """Jobs the ledger never heard of are listed, pending, where the manifest has them."""
    emu = live_emulator_factory(gen_seconds=(0.05, 0.1))
    manifest = _csv(tmp_path, ("s03", "s01", "s04", "s02"))
    res = run_cli(
        "run", str(manifest), "--api-base", emu.base_url, *FAST,
        "--image-base-url", _frames(emu), "--no-wait", "--concurrency", "1",
    )  # fmt: skip
    assert "pending 3, running 1" in res.out, res.err  # one slot: one job sent
    doc, err = _json("status", "--run-dir", str(tmp_path / "board.run"), "--json")
    assert err == ""
    assert [j["job"] for j in doc["jobs"]] == ["s03", "s01", "s04", "s02"]
    assert doc["jobs"][0]["state"] in ("running", "completed")
    assert [j["state"] for j in doc["jobs"][1:]] == ["pending"] * 3
    text = run_cli("status", "--run-dir", str(tmp_path / "board.run"))
    assert text.out.startswith("4 jobs: pending 3, ")
    assert [line.split()[:2] for line in text.out.splitlines()[2:]] == [
        ["s01", "pending"],
        ["s04", "pending"],
        ["s02", "pending"],
    ]


def test_report_of_a_manifest_never_run_is_an_error(tmp_path: Path) -> None:
    """report MANIFEST before any run: exit 2, one line naming where it looked; nothing made."""
    manifest = _csv(tmp_path)
    res = run_cli("report", str(manifest))
    expected = tmp_path / "board.run"
    assert res.code == 2 and res.out == ""
    assert res.err == f"batchkling: error: no run of {manifest} yet (expected {expected}).\n"
    assert not expected.exists()
    res = run_cli("report", str(tmp_path / "nosuch.csv"))
    assert res.code == 2 and "no such file" in res.err and len(res.err.splitlines()) == 1


def _strip_new_fields(run_dir: Path) -> None:
    """Rewrite the ledger as versions before these fields wrote it."""
    path = run_dir / LEDGER_NAME
    lines = []
    for text in path.read_text(encoding="utf-8").splitlines():
        ev = json.loads(text)
        if ev["event"] == "run_started":
            del ev["manifest"], ev["overrides"]
        lines.append(json.dumps(ev, separators=(",", ":")))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def test_an_old_ledger_without_the_fields_still_reads(
    tmp_path: Path, live_emulator_factory: Factory
) -> None:
    """Without the recorded fields: the header names the manifest; status of a CSV with
    relative images works without flags; report takes the flags as before."""
    emu = live_emulator_factory(gen_seconds=(0.05, 0.1))
    yaml = write_manifest(tmp_path, emu.base_url, 2, name="board")
    _run(yaml, emu)
    _strip_new_fields(tmp_path / "board.run")
    report, err = _report("--run-dir", str(tmp_path / "board.run"))
    assert err == "" and [j["prompt"] for j in report["jobs"]] == [
        "shot 1 turns slowly",
        "shot 2 turns slowly",
    ]

    csv = _csv(tmp_path)  # board.csv: the same default run directory, board.run
    _run(csv, emu, "--image-base-url", _frames(emu), "--run-dir", str(tmp_path / "csv.run"))
    _strip_new_fields(tmp_path / "csv.run")
    res = run_cli("status", str(csv), "--run-dir", str(tmp_path / "csv.run"))
    assert res.code == 0 and res.err == "", res.err
    assert res.out.startswith("2 jobs: done 2; 2,000 credits committed")
    res = run_cli("status", "--run-dir", str(tmp_path / "csv.run"), "--json")
    assert res.code == 0 and [j["job"] for j in json.loads(res.out)["jobs"]] == ["s03", "s01"]
    res = run_cli("report", "--run-dir", str(tmp_path / "csv.run"), "--format", "json", "-o", "-")
    assert res.code == 0 and "cannot read the manifest" in res.err
    report, err = _report(
        "--run-dir", str(tmp_path / "csv.run"), "--image-base-url", "https://x.invalid/"
    )
    assert err == "" and report["jobs"][0]["prompt"] == PROMPTS["s03"]


def test_the_recorded_settings_fold_from_the_latest_run() -> None:
    """The latest run_started wins; the header fills what old ledgers lack; bad overrides
    are dropped, not obeyed."""
    header = {
        "ts": "t",
        "event": "header",
        "job": None,
        "manifest": "/m.csv",
        "manifest_sha256": "h",
    }
    assert fold([header]).settings == RunSettings(manifest="/m.csv", manifest_sha256="h")
    old = {
        "ts": "t",
        "event": "run_started",
        "job": None,
        "pid": 1,
        "manifest_sha256": "o",
        "budget": 5,
    }
    assert fold([header, old]).settings == RunSettings("/m.csv", "o", None, 5)
    new = {
        **old,
        "manifest": "/n.csv",
        "manifest_sha256": "n",
        "overrides": {"budget": "lots", "image_base_url": "https://i/", "defaults": {"takes": 2}},
    }
    st = fold([header, new, {**old, **new, "overrides": {}}])
    assert st.settings == RunSettings("/n.csv", "n", {}, 5)
    assert fold([header, new]).settings.overrides == {
        "image_base_url": "https://i/",
        "defaults": {"takes": 2},
    }
