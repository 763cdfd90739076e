"""Pausing the cyclic garbage collector while building many acyclic objects at once.

A large manifest makes hundreds of thousands of long-lived objects (shots, jobs,
cost rows). While they are being made, each full collection walks every one of
them again: for 100,000 shots that is a quarter of the time spent outside
parsing and schema checks. None of these objects forms a reference cycle, so
the collector has nothing to find in them; it resumes, and collects anything
cyclic that others made meanwhile, as soon as the block ends.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_paused"]


@contextmanager
def collector_paused() -> Iterator[None]:
    """Disable the cyclic collector for the block; re-enable it only if it was enabled."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
