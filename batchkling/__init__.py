"""batchkling: render many Kling 3.0 image-to-video shots through the sjinn.ai API.

Within budget, with bounded concurrency, and resumable at any instant from a
local append-only ledger. The library in four names::

    manifest = batchkling.load_manifest("board.yaml")
    batchkling.plan(manifest.jobs, manifest.budget)       # what it costs
    result = await batchkling.run_manifest(manifest, run_dir, client=client)
    batchkling.Ledger.open(run_dir)                       # what happened, step by step

Every error is a ``batchkling.BatchklingError``; the error tree loads with the
package (it imports nothing else). The other names are imported when first used,
so ``import batchkling`` loads neither the HTTP stack nor anyio; ``__version__``
too, so that starting the command costs next to nothing before it can catch a
Ctrl-C.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The error tree is cheap to load (it imports nothing of the HTTP stack) and is the
# library's as much as errors.py's: one list of its names, errors.__all__.
from batchkling import errors as _errors
from batchkling.errors import *  # noqa: F403

if TYPE_CHECKING:
    __version__: str
    from batchkling.cost import plan
    from batchkling.ledger import Ledger
    from batchkling.manifest.load import load_manifest
    from batchkling.run.session import run_manifest

# Each public name -> the module that defines it.
_HOMES = {
    "load_manifest": "batchkling.manifest.load",
    "plan": "batchkling.cost",
    "run_manifest": "batchkling.run.session",
    "Ledger": "batchkling.ledger",
}

__all__ = ["Ledger", "__version__", "load_manifest", "plan", "run_manifest"]
__all__ += _errors.__all__


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("batchkling")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "0.0.0"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        globals()[name] = found = _version()
        return found
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'batchkling' has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value  # found once, then an ordinary attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
