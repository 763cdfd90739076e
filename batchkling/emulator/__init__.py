"""An emulator of the part of the sjinn API that batchkling uses, for offline runs and tests.

``create_app(config)`` is an ASGI app (Starlette) that ``batchkling mock-server``
serves with uvicorn and that tests mount in-process with ``httpx.ASGITransport``.
Its modules, by layer:

    config    EmulatorConfig: every flag, checked once
    inputs    validation of a create request, as the reference describes it
    usage     an account's credit records and their cursor pages
    state     tasks, billing, refunds, running counts (no HTTP)
    faults    fault draws, the rate limiter, expiring URL signatures
    stats     request counters
    persist   the --state journal
    media     ETag, conditional and range answers for files
    frames    sample PNG frames for the demo
    wire      dropping a connection without an answer
    app       the HTTP endpoints          admin   the /__emulator endpoints

Only ``app``, ``admin`` and ``wire`` import Starlette; nothing here imports the
client side of batchkling, only the constants of ``batchkling.model``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from batchkling.emulator.config import EmulatorConfig

if TYPE_CHECKING:
    from batchkling.emulator.app import create_app

__all__ = ["EmulatorConfig", "create_app"]


def __getattr__(name: str) -> Any:
    # Loaded on first use so that the settings can be imported (by the CLI,
    # to parse flags) on an install without the `mock` extra.
    if name == "create_app":
        from batchkling.emulator.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
