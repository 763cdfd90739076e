"""Argument types for numbers of seconds and ports: finite, in range, refused by argparse itself.

A value argparse refuses is reported at once, with the flag's name, before the
command reads a file or looks for the API key. ``float()`` accepts ``nan`` and
``inf``; none of these does.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable

__all__ = [
    "finite_seconds",
    "port_number",
    "positive_seconds",
    "seconds_range",
]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number of seconds")
    return value


def finite_seconds(text: str) -> float:
    """A finite number of seconds, at least 0 (``--usage-settle S``)."""
    value = _seconds(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, not {text}")
    return value


def positive_seconds(text: str) -> float:
    """A finite number of seconds above 0 (``--task-timeout S``)."""
    value = _seconds(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def seconds_range(default_max: float) -> Callable[[str], tuple[float, float]]:
    """The type of ``MIN[,MAX]`` seconds, both above 0, as ``--poll-interval`` reads them.

    A lone MIN keeps ``default_max`` as MAX (or MIN, if that is larger).
    """

    def parse(text: str) -> tuple[float, float]:
        parts = text.split(",")
        if len(parts) not in (1, 2):
            raise argparse.ArgumentTypeError(f"{text!r}: expected MIN or MIN,MAX seconds")
        low = positive_seconds(parts[0].strip())
        high = positive_seconds(parts[1].strip()) if len(parts) == 2 else max(low, default_max)
        if high < low:
            raise argparse.ArgumentTypeError(f"{text!r}: MAX is below MIN")
        return low, high

    parse.__name__ = "seconds_range"  # how argparse names the type in its messages
    return parse


def port_number(text: str) -> int:
    """A TCP port number for a server to listen on; 0 lets the system pick a free one."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port: use 0 to 65535 (0 picks one)")
    return value
