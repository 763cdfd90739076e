"""The emulator as an ASGI app: one service, and the routes mounted on it.

Assembly only: what an answer says is decided by ``service``; ``routes``,
``files`` and ``admin`` read requests and write responses.
"""

from __future__ import annotations

import time

from batchkling.emulator import admin, files, routes
from batchkling.emulator.config import EmulatorConfig
from batchkling.emulator.service import Clock, Emulator
from batchkling.emulator.wire import DroppingApp

__all__ = ["EmulatorApp", "create_app"]


class EmulatorApp(DroppingApp):
    """The emulator's ASGI app; ``emulator`` is the service behind it."""

    emulator: Emulator


def create_app(config: EmulatorConfig | None = None, *, clock: Clock = time.time) -> EmulatorApp:
    """The emulator as an ASGI app. ``clock`` gives epoch seconds; tests pass a fake one.

    One clock serves generation times, rate limits, record times and URL
    expiry, so a fake clock moves them all, and persisted tasks keep their
    meaning across a restart.
    """
    emulator = Emulator(config or EmulatorConfig(), clock)
    app = EmulatorApp(
        routes=[*routes.routes(emulator), *files.routes(emulator), *admin.routes(emulator)]
    )
    app.emulator = emulator
    app.state.emulator = emulator
    return app
