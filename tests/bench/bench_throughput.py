"""Makespan and busy slots at real scale, time-scaled, against a naive runner in the same run.

Run with `make bench BENCH=throughput`. Real generation takes 2 to 8 minutes; here
every duration of the API is divided by ``BENCH_SCALE`` (default 40: 3 to 12 s),
and so are the rate (the default 2/s becomes 80/s), the poll intervals and the
settle delay, so the shape of the work is the real one in a fortieth of the
time. Request latencies are not scaled: they stay in real seconds, which makes
them forty times heavier than they are against generation times of minutes.

Each case runs batchkling (`batchkling run`, in this process) and the naive
runner (``naive_runner``) against a fresh emulator, served by uvicorn on
loopback in a thread, with the same seed. Printed per case: each makespan
against the lower bound (the work divided by the slots, or the longest task),
batchkling against the naive runner, and the slots busy in steady state (from
the create that fills the last slot to the last create): holding a task (from
its creation on the server to the moment the runner saw it finished) and
generating (its creation to its end on the server). Nothing here asserts.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import random
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import uvicorn

from batchkling.cli import main as cli_main
from batchkling.emulator.app import create_app
from batchkling.emulator.config import EmulatorConfig
from tests.bench.naive_runner import run_naive

SCALE = float(os.environ.get("BENCH_SCALE", "40"))
RATE = 2.0 * SCALE  # the default --rate 2/s
POLL = (5.0 / SCALE, 30.0 / SCALE)  # the default --poll-interval 5,30
NAIVE_POLL = 10.0 / SCALE  # a fixed 10 s
GEN = (120.0 / SCALE, 480.0 / SCALE)
KEY = "bench"

_App = Callable[..., Any]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class _SlowCreates:
    """An ASGI wrapper that holds every create back ``low`` to ``high`` seconds."""

    def __init__(self, app: _App, low: float, high: float) -> None:
        self._app = app
        self._rng = random.Random(7)
        self._span = (low, high)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].endswith("create_tool_task"):
            await anyio.sleep(self._rng.uniform(*self._span))
        await self._app(scope, receive, send)


class _Server:
    """The emulator served by uvicorn on a loopback port in a thread."""

    def __init__(self, config: EmulatorConfig, slow_creates: tuple[float, float] | None) -> None:
        self.app = create_app(config)
        served: _App = self.app if slow_creates is None else _SlowCreates(self.app, *slow_creates)
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}"
        cfg = uvicorn.Config(served, log_level="warning", lifespan="off", backlog=4096)
        self._server = uvicorn.Server(cfg)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    def __enter__(self) -> _Server:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


@dataclass(frozen=True)
class Case:
    """One benchmark case."""

    label: str
    jobs: int
    concurrency: int
    latency: tuple[float, float] = (0.0, 0.0)  # every request
    slow_creates: tuple[float, float] | None = None  # creates only


@dataclass
class Figures:
    """What one runner did in one case."""

    wall: float
    bound: float
    holding: float
    generating: float


def _manifest(directory: Path, n: int) -> Path:
    lines = ["version: 1", "name: bench", "image_base_url: https://cdn.example.com/b/", "shots:"]
    for i in range(n):
        lines += [f"  - id: s{i:04d}", f"    prompt: shot {i} moves", "    image: s.png"]
    path = directory / "bench.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _body(i: int) -> dict[str, Any]:
    return {
        "tool_type": "kling3-image-to-video-api",
        "input": {
            "prompt": f"shot {i} moves",
            "image": "https://cdn.example.com/b/s.png",
            "duration": 5,
            "multi_shot": True,
            "model_mode": "standard",
        },
    }


def _figures(
    case: Case, tasks: list[dict[str, Any]], seen: dict[str, float], wall: float
) -> Figures:
    """The lower bound and the busy slots of one run, from the server's tasks."""
    spans = {t["task_id"]: (_ts(t["created_at"]), _ts(t["finish_at"])) for t in tasks}
    gens = [end - start for start, end in spans.values()]
    bound = max(sum(gens) / case.concurrency, max(gens))
    starts = sorted(start for start, _ in spans.values())
    lo, hi = starts[min(case.concurrency, len(starts)) - 1], starts[-1]
    samples = [lo + (hi - lo) * k / 400 for k in range(401)] if hi > lo else [lo]
    holding = generating = 0.0
    for at in samples:
        for task_id, (start, end) in spans.items():
            if start <= at:
                generating += at < end
                holding += at < seen.get(task_id, end)
    return Figures(wall, bound, holding / len(samples), generating / len(samples))


def _batchkling(case: Case, seed: int) -> Figures:
    config = EmulatorConfig(gen_seconds=GEN, seed=seed, latency=case.latency)
    with tempfile.TemporaryDirectory() as tmp, _Server(config, case.slow_creates) as server:
        os.environ["SJINN_API_KEY"] = KEY
        os.environ["XDG_STATE_HOME"] = tmp
        manifest = _manifest(Path(tmp), case.jobs)
        args = [
            "run", str(manifest), "--api-base", server.url, "--skip-preflight", "--quiet",
            "--concurrency", str(case.concurrency), "--rate", f"{RATE:g}/s",
            "--poll-interval", f"{POLL[0]:g},{POLL[1]:g}", "--usage-settle", f"{120 / SCALE:g}",
        ]  # fmt: skip
        t0 = time.monotonic()
        code = cli_main(args, out=io.StringIO(), err=io.StringIO())
        wall = time.monotonic() - t0
        if code != 0:
            print(f"  batchkling exited {code}")
        ledger = Path(tmp) / "bench.run" / "ledger.jsonl"
        events = [json.loads(line) for line in ledger.open()]
        seen = {e["task_id"]: _ts(e["ts"]) for e in events if e["event"] == "completed"}
        tasks = server.app.emulator.stats()["tasks"]
    return _figures(case, tasks, seen, wall)


def _naive(case: Case, seed: int) -> Figures:
    config = EmulatorConfig(gen_seconds=GEN, seed=seed, latency=case.latency)
    with tempfile.TemporaryDirectory() as tmp, _Server(config, case.slow_creates) as server:
        result = asyncio.run(
            run_naive(
                server.url,
                KEY,
                [_body(i) for i in range(case.jobs)],
                concurrency=case.concurrency,
                rate=RATE,
                poll_interval=NAIVE_POLL,
                download_dir=Path(tmp),
            )
        )
        tasks = server.app.emulator.stats()["tasks"]
    return _figures(case, tasks, result.detected, result.wall)


CASES = (
    Case("20 in flight", 60, 20),
    Case("50 in flight", 150, 50),
    Case("200 in flight", 600, 200),
    Case("50 in flight, 0.2-0.5 s per request", 300, 50, latency=(0.2, 0.5)),
    Case("50 in flight, 1-2 s per create", 300, 50, slow_creates=(1.0, 2.0)),
)


def main() -> None:
    """Every case, batchkling then the naive runner."""
    print(
        f"time scale x{SCALE:g}: generation {GEN[0]:g}-{GEN[1]:g} s, rate {RATE:g}/s, "
        f"polls {POLL[0]:g}-{POLL[1]:g} s (naive: every {NAIVE_POLL:g} s)"
    )
    only = os.environ.get("BENCH_CASES")
    for n, case in enumerate(CASES):
        if only and str(n) not in only.split(","):
            continue
        ours = _batchkling(case, seed=n + 1)
        naive = _naive(case, seed=n + 1)
        print(
            f"{case.label}, {case.jobs} jobs: batchkling {ours.wall:.1f} s "
            f"({ours.wall / ours.bound:.2f}x its bound of {ours.bound:.1f} s), naive "
            f"{naive.wall:.1f} s ({naive.wall / naive.bound:.2f}x); batchkling / naive "
            f"{ours.wall / naive.wall:.2f}"
        )
        print(
            f"  slots busy in steady state, of {case.concurrency}: batchkling "
            f"{ours.holding:.0f} holding a task, {ours.generating:.0f} generating; "
            f"naive {naive.holding:.0f} holding, {naive.generating:.0f} generating",
            flush=True,
        )


if __name__ == "__main__":
    main()
