"""Fixtures that start the emulator in-process or over loopback."""

from __future__ import annotations
