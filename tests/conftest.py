"""Shared fixtures. Emulator fixtures live in tests/emulator_fixtures.py."""

from __future__ import annotations

pytest_plugins = ["tests.emulator_fixtures"]
