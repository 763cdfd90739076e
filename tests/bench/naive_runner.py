"""A naive runner for the benchmarks: create, poll, download with asyncio and httpx, no ledger.

What anyone would write in an afternoon: a semaphore bounds the jobs in flight,
one lock spaces every API request evenly at the rate (first come, first
served), each task is polled at a fixed interval, and its video is fetched once
the slot is given back. Nothing is written ahead, nothing is reconciled, a lost
answer is simply an error. It is the yardstick of ``bench_throughput``.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["NaiveResult", "run_naive"]

CREATE = "/api/un-api/create_tool_task"
QUERY = "/api/un-api/query_tool_task_status"


class _Pacer:
    """Requests one interval apart, in the order they asked."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._next > now:
                await asyncio.sleep(self._next - now)
            self._next = max(now, self._next) + self._interval


@dataclass
class NaiveResult:
    """When each task was seen finished (``time.time()``), by task id, and the wall time."""

    detected: dict[str, float] = field(default_factory=dict)
    failed: int = 0
    wall: float = 0.0


async def run_naive(
    base_url: str,
    key: str,
    bodies: list[dict[str, Any]],
    *,
    concurrency: int,
    rate: float,
    poll_interval: float,
    download_dir: Path | None = None,
) -> NaiveResult:
    """Render ``bodies`` (create request bodies), ``concurrency`` at a time, ``rate`` requests/s."""
    result = NaiveResult()
    slots = asyncio.Semaphore(concurrency)
    pacer = _Pacer(rate)
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=concurrency + 16)
    started = time.monotonic()
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=120.0
    ) as http:

        async def api(path: str, body: dict[str, Any]) -> dict[str, Any]:
            await pacer.wait()
            resp = await http.post(path, json=body)
            resp.raise_for_status()
            answer: dict[str, Any] = resp.json()
            return answer

        async def job(i: int, body: dict[str, Any]) -> None:
            async with slots:
                task_id = (await api(CREATE, body))["data"]["task_id"]
                while True:
                    await asyncio.sleep(poll_interval)
                    data = (await api(QUERY, {"task_id": task_id}))["data"]
                    if data["status"] == 1 and data.get("output_urls"):
                        result.detected[task_id] = time.time()
                        url = data["output_urls"][0]
                        break
                    if data["status"] == -1:
                        result.failed += 1
                        return
            if download_dir is not None:
                video = await http.get(url)
                (download_dir / f"{i}.mp4").write_bytes(video.content)

        await asyncio.gather(*(job(i, b) for i, b in enumerate(bodies)))
    result.wall = time.monotonic() - started
    return result
