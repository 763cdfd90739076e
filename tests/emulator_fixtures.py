"""Fixtures that start the emulator in-process or over loopback.

- ``emulator_factory(**config) -> InProcessEmulator``: the app behind an
  ``httpx.ASGITransport`` (base URL ``http://testserver``); fastest.
- ``live_emulator_factory(**config) -> LiveEmulator``: uvicorn serving the app
  in a thread on a free loopback port; ``restart()`` keeps the port.
- ``mock_server_process(*flags) -> MockServerProcess``: the real
  ``batchkling mock-server`` command in a subprocess.

Every factory takes ``EmulatorConfig`` fields as keywords (generation takes
0.05-0.2 s unless ``gen_seconds`` says otherwise) and an optional ``clock``;
whatever it starts is stopped at teardown.
"""

from __future__ import annotations

import os
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from batchkling.emulator import EmulatorConfig
from batchkling.emulator.app import EmulatorApp, create_app

__all__ = [
    "FAST_GEN",
    "START",
    "TEST_KEY",
    "FakeClock",
    "InProcessEmulator",
    "LiveEmulator",
    "MockServerProcess",
    "anyio_backend",
    "emulator_factory",
    "kling_body",
    "live_emulator_factory",
    "mock_server_process",
    "start_mock_server",
]

FAST_GEN = (0.05, 0.2)
TEST_KEY = "test-key"
START = 1_790_000_000.0  # a fixed instant in 2026, so times in records are predictable
READY_PREFIX = "batchkling mock-server: listening on "
ROOT = Path(__file__).resolve().parent.parent


class FakeClock:
    """A clock that moves only when told: ``clock()`` reads it, ``advance(s)`` moves it."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def kling_body(**input_fields: Any) -> dict[str, Any]:
    """A valid create body; keywords replace input fields (None removes one)."""
    fields: dict[str, Any] = {
        "prompt": "The character turns around slowly and smiles at the camera",
        "image": "https://cdn.example.com/uploads/character.jpg",
        "duration": 5,
        "multi_shot": True,
        "model_mode": "standard",
    }
    fields.update(input_fields)
    return {
        "tool_type": "kling3-image-to-video-api",
        "input": {k: v for k, v in fields.items() if v is not None},
    }


def _config(config: EmulatorConfig | None, fields: dict[str, Any]) -> EmulatorConfig:
    base = config or EmulatorConfig(gen_seconds=FAST_GEN, seed=1)
    return replace(base, **fields)


class InProcessEmulator:
    """The emulator app mounted in-process through ``httpx.ASGITransport``."""

    base_url = "http://testserver"

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.app: EmulatorApp = create_app(config, clock=clock)
        self.transport = httpx.ASGITransport(app=self.app)

    def client(self, key: str | None = TEST_KEY, **kwargs: Any) -> httpx.AsyncClient:
        """An AsyncClient on the app, sending ``key`` as its Bearer key (None: no header)."""
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        headers.update(kwargs.pop("headers", {}))
        return httpx.AsyncClient(
            transport=self.transport, base_url=self.base_url, headers=headers, **kwargs
        )

    def stats(self) -> dict[str, Any]:
        """What ``GET /__emulator/stats`` answers."""
        return self.app.emulator.stats()

    def set_config(self, **changes: Any) -> EmulatorConfig:
        """Change settings now, as ``POST /__emulator/config`` does."""
        return self.app.emulator.set_config(**changes)


def _listen(port: int) -> socket.socket:
    # IPPROTO_TCP so that asyncio turns on TCP_NODELAY for accepted connections.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return sock


class LiveEmulator:
    """uvicorn serving the emulator in a background thread on a loopback port."""

    def __init__(self, config: EmulatorConfig, clock: Callable[[], float] | None = None) -> None:
        self.config = config
        self.clock = clock or time.time
        self.port = 0
        self.app: EmulatorApp | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LiveEmulator:
        """Serve a fresh app (reloading ``state_file`` if set) on the same port as before."""
        sock = _listen(self.port)
        self.port = sock.getsockname()[1]
        self.app = create_app(self.config, clock=self.clock)
        config = uvicorn.Config(
            self.app, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        self._server, self._thread, self._sock = server, thread, sock
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the emulator did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving; the in-memory state goes with the app."""
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._server = self._thread = self._sock = None

    def restart(self, **changes: Any) -> LiveEmulator:
        """Stop, then start a new app on the same port, with ``changes`` to the config."""
        self.stop()
        if changes:
            self.config = replace(self.config, **changes)
        return self.start()

    def stats(self) -> dict[str, Any]:
        """``GET /__emulator/stats`` over HTTP."""
        response = httpx.get(self.base_url + "/__emulator/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    def set_config(self, **changes: Any) -> dict[str, Any]:
        """``POST /__emulator/config`` over HTTP; returns the settings now in force."""
        response = httpx.post(self.base_url + "/__emulator/config", json=changes)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


class MockServerProcess:
    """A running ``batchkling mock-server`` subprocess."""

    def __init__(self, proc: subprocess.Popen[str], url: str) -> None:
        self.proc = proc
        self.url = url
        self.stderr = ""  # what it wrote to stderr, once stopped

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10) -> int:
        """Send ``sig`` and wait; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            _, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        self.stderr += err or ""
        return self.proc.returncode


def start_mock_server(*flags: str, timeout: float = 20) -> MockServerProcess:
    """Start ``python -m batchkling mock-server --port 0 FLAGS`` and wait for its URL line."""
    cmd = [sys.executable, "-m", "batchkling", "mock-server", "--port", "0", *flags]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env
    )
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(timeout)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith(READY_PREFIX):
        proc.kill()
        _, err = proc.communicate()
        raise RuntimeError(f"mock-server did not start: {line!r} {err[-2000:]}")
    return MockServerProcess(proc, line[len(READY_PREFIX) :].strip())


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, the loop uvicorn and the runner use."""
    return "asyncio"


@pytest.fixture
def emulator_factory() -> Callable[..., InProcessEmulator]:
    """Make in-process emulators: ``emulator_factory(config=None, clock=None, **fields)``."""

    def make(
        config: EmulatorConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        **fields: Any,
    ) -> InProcessEmulator:
        return InProcessEmulator(_config(config, fields), clock or time.time)

    return make


@pytest.fixture
def live_emulator_factory() -> Iterator[Callable[..., LiveEmulator]]:
    """Start emulators served by uvicorn on loopback; all are stopped at teardown."""
    started: list[LiveEmulator] = []

    def make(
        config: EmulatorConfig | None = None,
        *,
        clock: Callable[[], float] | None = None,
        **fields: Any,
    ) -> LiveEmulator:
        live = LiveEmulator(_config(config, fields), clock)
        started.append(live)
        return live.start()

    yield make
    for live in started:
        live.stop()


@pytest.fixture
def mock_server_process() -> Iterator[Callable[..., MockServerProcess]]:
    """Start ``batchkling mock-server`` subprocesses on free ports; killed at teardown."""
    started: list[MockServerProcess] = []

    def start(*flags: str) -> MockServerProcess:
        server = start_mock_server(*flags)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop(signal.SIGKILL, timeout=5)
