"""Run directories rendered once for the export tests, by real runs against the emulator.

Each board is a storyboard of three shots of two takes (3 s each), rendered by
``batchkling run`` against the emulator served on loopback; a test that
changes one (marks, a spoilt file) works on a copy (``fresh``).

- ``uniform_board``: every clip 160x90 at 8 fps, so the takes agree;
- ``mixed_board``: clips 320x180, 320x180, 160x90 in turn, so the takes differ;
- ``failed_board``: the uniform board and a fourth shot whose two tasks failed.
"""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from batchkling.cli import main as cli_main
from batchkling.emulator import EmulatorConfig
from tests.emulator_fixtures import FAST_GEN, TEST_KEY, LiveEmulator
from tests.runner_helpers import FAST, write_manifest


@dataclass(frozen=True)
class Board:
    """A manifest and the run directory of its run."""

    manifest: Path
    run_dir: Path


def run(manifest: Path, base_url: str) -> tuple[int, str]:
    """``batchkling run MANIFEST`` in this process: its exit status and what it said."""
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(["run", str(manifest), "--api-base", base_url, *FAST], out=out, err=err)
    return code, out.getvalue() + err.getvalue()


def _render(root: Path, shots: int, *, failing: int = 0, **config: Any) -> Board:
    """Render ``shots`` shots; then, with ``failing``, that many more whose tasks fail."""
    live = LiveEmulator(EmulatorConfig(gen_seconds=FAST_GEN, seed=5, **config)).start()
    try:
        manifest = write_manifest(root, live.base_url, shots, takes=2, duration=3)
        code, said = run(manifest, live.base_url)
        assert code == 0, said
        if failing:
            # The same emulator (the same image URLs): the shots done are not sent again.
            live.set_config(fail_rate=1.0)
            manifest = write_manifest(root, live.base_url, shots + failing, takes=2, duration=3)
            code, said = run(manifest, live.base_url)
            assert code == 1, said
    finally:
        live.stop()
    return Board(manifest, root / "board.run")


@pytest.fixture(scope="session")
def _env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SJINN_API_KEY", TEST_KEY)
        mp.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("boards-state")))
        yield


@pytest.fixture(scope="session")
def uniform_board(tmp_path_factory: pytest.TempPathFactory, _env: None) -> Board:
    """Three shots of two takes, every clip 160x90."""
    return _render(tmp_path_factory.mktemp("uniform"), 3)


@pytest.fixture(scope="session")
def mixed_board(tmp_path_factory: pytest.TempPathFactory, _env: None) -> Board:
    """Three shots of two takes, clips of 320x180 and 160x90 (four and two)."""
    return _render(
        tmp_path_factory.mktemp("mixed"), 3, clip_sizes=((320, 180), (320, 180), (160, 90))
    )


@pytest.fixture(scope="session")
def failed_board(tmp_path_factory: pytest.TempPathFactory, _env: None) -> Board:
    """Three shots rendered, then a fourth added whose tasks all fail (the run exits 1)."""
    return _render(tmp_path_factory.mktemp("failed"), 3, failing=1)


@pytest.fixture
def fresh(tmp_path: Path) -> Any:
    """``fresh(board)``: a copy of the board's run directory, for a test to change."""

    def copy(board: Board) -> Board:
        run_dir = tmp_path / "copy.run"
        shutil.copytree(board.run_dir, run_dir)
        return Board(board.manifest, run_dir)

    return copy
