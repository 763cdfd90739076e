"""How many create + query round trips per second the emulator answers over loopback.

Starts `batchkling mock-server` (uvicorn, one worker) in a subprocess on a free
port and drives it from this process: each worker creates a task and queries
it, again and again, on a keep-alive connection. Two drivers:

- a lean HTTP/1.1 client on asyncio streams, which costs the server's CPU
  little, so the figure is the emulator's own capacity (the one to compare
  with the 1,500 requests/s target);
- httpx.AsyncClient, the client batchkling uses, which shows what one client
  process can push (on 2 cores it is the client that saturates first).

Each line also gives the server process's CPU use, read from /proc.
Environment: BENCH_SECONDS (default 5).
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

import httpx

__all__ = ["main", "measure_httpx", "measure_raw"]

READY = "batchkling mock-server: listening on "
CREATE = "/api/un-api/create_tool_task"
QUERY = "/api/un-api/query_tool_task_status"
KEY = "bench-key"
BODY = {
    "tool_type": "kling3-image-to-video-api",
    "input": {
        "prompt": "The camera pulls back slowly",
        "image": "https://cdn.example.com/frames/s01.png",
        "duration": 5,
        "model_mode": "standard",
    },
}


def _start_server() -> tuple[subprocess.Popen[str], str]:
    cmd = [sys.executable, "-m", "batchkling", "mock-server", "--port", "0"]
    cmd += ["--gen-seconds", "0.5,2", "--seed", "7"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith(READY):
        proc.kill()
        proc.wait()
        raise SystemExit(f"mock-server did not start: {line!r}")
    return proc, line[len(READY) :].strip()


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- a lean HTTP/1.1 client -------------------------------------------------------


def _request(path: str, body: bytes, host: str) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def _response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return int(head[9:12]), await reader.readexactly(length)


async def _raw_worker(host: str, port: int, stop_at: float, counts: list[int]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    create = _request(CREATE, json.dumps(BODY).encode(), host)
    try:
        while time.perf_counter() < stop_at:
            writer.write(create)
            status, body = await _response(reader)
            task_id = json.loads(body)["data"]["task_id"]
            writer.write(_request(QUERY, json.dumps({"task_id": task_id}).encode(), host))
            status, body = await _response(reader)
            assert status == 200 and json.loads(body)["success"], body
            counts[0] += 2
    finally:
        writer.close()
        await writer.wait_closed()


async def measure_raw(base_url: str, *, seconds: float, concurrency: int = 16) -> float:
    """Requests/s with ``concurrency`` lean keep-alive connections for ``seconds``."""
    url = urlsplit(base_url)
    host, port = url.hostname or "127.0.0.1", url.port or 80
    counts = [0]
    start = time.perf_counter()
    await asyncio.gather(
        *(_raw_worker(host, port, start + seconds, counts) for _ in range(concurrency))
    )
    return counts[0] / (time.perf_counter() - start)


# -- httpx ---------------------------------------------------------------------------


async def _httpx_worker(client: httpx.AsyncClient, stop_at: float, counts: list[int]) -> None:
    while time.perf_counter() < stop_at:
        r = await client.post(CREATE, json=BODY)
        task_id = r.json()["data"]["task_id"]
        r = await client.post(QUERY, json={"task_id": task_id})
        assert r.json()["success"], r.text
        counts[0] += 2


async def measure_httpx(base_url: str, *, seconds: float, concurrency: int = 8) -> float:
    """Requests/s with one httpx.AsyncClient and ``concurrency`` workers for ``seconds``."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {KEY}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, limits=limits) as client:
        counts = [0]
        start = time.perf_counter()
        await asyncio.gather(
            *(_httpx_worker(client, start + seconds, counts) for _ in range(concurrency))
        )
        return counts[0] / (time.perf_counter() - start)


def _run(label: str, pid: int, measure: Callable[[], Awaitable[float]], seconds: float) -> None:
    cpu_before, wall_before = _cpu_seconds(pid), time.perf_counter()
    rate = asyncio.run(measure())
    cpu_after, wall = _cpu_seconds(pid), time.perf_counter() - wall_before
    cpu = ""
    if cpu_before is not None and cpu_after is not None:
        cpu = f"; server CPU {100 * (cpu_after - cpu_before) / wall:.0f}% of one core"
    print(f"emulator, {label}: {rate:,.0f} requests/s over {seconds:g} s{cpu}", flush=True)


def main() -> None:
    """Print the emulator's create + query throughput with both drivers."""
    seconds = float(os.environ.get("BENCH_SECONDS", "5"))
    proc, url = _start_server()
    try:
        # Warm up: first requests import lazily and fill caches.
        asyncio.run(measure_raw(url, seconds=0.5, concurrency=4))
        _run(
            "lean HTTP/1.1 client, 16 connections",
            proc.pid,
            lambda: measure_raw(url, seconds=seconds, concurrency=16),
            seconds,
        )
        _run(
            "httpx.AsyncClient, 8 connections",
            proc.pid,
            lambda: measure_httpx(url, seconds=seconds, concurrency=8),
            seconds,
        )
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


if __name__ == "__main__":
    main()
