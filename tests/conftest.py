"""Shared fixtures. Emulator fixtures live in tests/emulator_fixtures.py."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.emulator_fixtures"]


@pytest.fixture(autouse=True)
def _own_state_dir(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    """Every test has an account journal of its own (subprocesses inherit the variable)."""
    state = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state
