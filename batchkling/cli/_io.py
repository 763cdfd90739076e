"""The streams a command writes to."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TextIO

__all__ = ["IO"]


@dataclass
class IO:
    """The streams a command writes to; tests pass their own."""

    out: TextIO
    err: TextIO
