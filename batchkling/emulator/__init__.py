"""An emulator of the part of the sjinn API that batchkling uses, for offline runs and tests.

``create_app(config)`` is an ASGI app (Starlette) that ``batchkling mock-server``
serves with uvicorn and that tests mount in-process with ``httpx.ASGITransport``.
Its modules, by layer (each imports only those above it):

    config     EmulatorConfig: every flag, checked once
    inputs     validation of a create request, as the reference describes it
    usage      an account's credit records and their cursor pages
    usage_variants  the wrong usage answers of --usage-defect
    dialects   the answer variants of the API (code field, URL names, statuses)
    state      tasks, billing, refunds, running counts
    params     the parameters of an API request
    faults     fault draws, the rate limiter, expiring URL signatures
    counters   what the server saw, per endpoint, status and key
    persist    the --state journal
    media      ETag, conditional and range answers for files
    frames     sample PNG frames for the demo
    clips      the MP4 of each asked duration, made with PyAV and cached    assets
    service    Emulator: the state, the path every API request takes, files, stats
    wire       dropping a connection without an answer
    responses  the service's answers as Starlette responses
    routes     the API endpoints    files   videos and frames    admin   /__emulator
    app        assembly: one service, the routes mounted on it

Everything up to ``service`` decides and knows no web framework; only the
layers below it import Starlette. Nothing here imports the client side of
batchkling, only the constants of ``batchkling.model``.
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
