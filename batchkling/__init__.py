"""batchkling: render many Kling 3.0 image-to-video shots through the sjinn.ai API.

Within budget, with bounded concurrency, and resumable at any instant from a
local append-only ledger.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("batchkling")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"

__all__ = ["__version__"]
