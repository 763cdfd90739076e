"""A read-only run directory: one line from every command, never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from batchkling.ledger import Ledger

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def read_only_run(tmp_path: Path) -> Iterator[tuple[Path, Path]]:
    """A manifest and a run of it, the run directory mounted read-only."""
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "version: 1\nimage_base_url: https://cdn.example.com/x/\n"
        "shots:\n  - {id: s01, prompt: a shot, image: s01.png}\n",
        encoding="utf-8",
    )
    real = tmp_path / "m.run"
    with Ledger.open(real) as ledger:
        ledger.append_sync(
            "header", None, version="t", format=1, manifest=str(manifest), manifest_sha256="a" * 64
        )
        ledger.append_sync("run_started", None, pid=1)
    view = tmp_path / "ro"
    view.mkdir()
    bound = subprocess.run(["mount", "--bind", str(real), str(view)], capture_output=True)
    if bound.returncode != 0:
        pytest.skip("cannot bind-mount here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        yield manifest, view
    finally:
        subprocess.run(["umount", str(view)], check=False)


def _batchkling(*args: str, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SJINN_API_KEY": "k", "XDG_STATE_HOME": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "batchkling", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_every_command_says_one_line_on_a_read_only_run_directory(
    read_only_run: tuple[Path, Path], tmp_path: Path
) -> None:
    """status works read-only; report, reconcile and run each give one line and exit 5."""
    manifest, run_dir = read_only_run
    state = tmp_path / "state"
    status = _batchkling("status", str(manifest), "--run-dir", str(run_dir), state=state)
    assert status.returncode == 0 and "s01" in status.stdout
    api = ("--api-base", "http://127.0.0.1:9")
    for args in (
        ("report", str(manifest), "--run-dir", str(run_dir)),
        ("reconcile", str(manifest), "--run-dir", str(run_dir), *api),
        ("run", str(manifest), "--run-dir", str(run_dir), *api, "--skip-preflight"),
    ):
        res = _batchkling(*args, state=state)
        assert "Traceback" not in res.stdout + res.stderr, res.stderr
        errors = [x for x in res.stderr.splitlines() if x.startswith("batchkling: error:")]
        assert res.returncode == 5 and len(errors) == 1 and "could not be written" in errors[0]
        assert "read-only" in errors[0].lower() or "Read-only" in errors[0]
    assert not (run_dir / "report.html").exists()
