"""Runner benchmarks: scheduling efficiency, CPU per job, status memory, fold speed, polling.

Run with `make bench BENCH=runner` (or `.venv/bin/python -m tests.bench runner`).
Each figure is printed with what it is compared against; nothing here asserts a
time, since the machines are shared.
"""

from __future__ import annotations

import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from batchkling.cli import main as cli_main
from batchkling.ledger import LEDGER_NAME, Ledger, fold_ledger
from tests.emulator_fixtures import start_mock_server

ROOT = Path(__file__).resolve().parents[2]


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _manifest(directory: Path, n: int, *, duration: int = 5) -> Path:
    lines = [
        "version: 1",
        "name: bench",
        "image_base_url: https://cdn.example.com/b/",
        "defaults:",
        f"  duration: {duration}",
        "shots:",
    ]
    for i in range(n):
        lines += [f"  - id: s{i:06d}", f"    prompt: shot {i} moves", "    image: s.png"]
    path = directory / "bench.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(manifest: Path, url: str, *flags: str) -> tuple[int, float, float]:
    """Run in this process; (exit status, wall seconds, CPU seconds of this process)."""
    os.environ["SJINN_API_KEY"] = "bench"
    before = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    code = cli_main(
        ["run", str(manifest), "--api-base", url, "--skip-preflight", "--quiet", *flags],
        out=io.StringIO(),
        err=io.StringIO(),
    )
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return code, wall, cpu


def _stats(url: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(url + "/__emulator/stats", timeout=60).json()
    return stats


def scheduling(n: int = 2000) -> None:
    """2,000 jobs, generation 0.5-1.5 s, 100 running at most: makespan against its lower bound."""
    server = start_mock_server("--gen-seconds", "0.5,1.5", "--max-running", "100", "--seed", "1")
    try:
        with tempfile.TemporaryDirectory() as tmp:
            manifest = _manifest(Path(tmp), n)
            code, wall, cpu = _run(
                manifest,
                server.url,
                "--concurrency",
                "100",
                "--rate",
                "1000/s",
                "--poll-interval",
                "0.05,0.5",
            )
            stats = _stats(server.url)
            gens = [_ts(t["finish_at"]) - _ts(t["created_at"]) for t in stats["tasks"]]
            bound = max(sum(gens) / 100, max(gens))
            events = [json.loads(x) for x in (Path(tmp) / "bench.run" / LEDGER_NAME).open()]
            first = min(_ts(e["ts"]) for e in events if e["event"] == "intent")
            last = max(_ts(e["ts"]) for e in events if e["event"] == "downloaded")
            makespan = last - first
            polls = [e["polls"] for e in events if e["event"] == "completed"]
            print(
                f"scheduling: {n} jobs, exit {code}, tasks created {stats['tasks_created']}, "
                f"max running {max(stats['max_running'].values())}"
            )
            print(
                f"  makespan {makespan:.2f} s, lower bound {bound:.2f} s, "
                f"ratio {makespan / bound:.3f} (target <= 1.15)"
            )
            print(
                f"  runner CPU {cpu:.2f} s = {cpu / n * 1000:.2f} ms per job (target <= 3); "
                f"wall {wall:.1f} s; polls per job {statistics.mean(polls):.1f}"
            )
    finally:
        server.stop()


def status_memory(n: int = 100_000) -> None:
    """Peak memory of `batchkling status` on a 100,000-job run directory (<= 300 MB)."""
    with tempfile.TemporaryDirectory() as tmp:
        manifest = _manifest(Path(tmp), n)
        run_dir = Path(tmp) / "bench.run"
        stamp = "2026-11-24T03:00:00.000000Z"
        with Ledger.open(run_dir, now=lambda: stamp) as led:
            for i in range(n):
                key = f"s{i:06d}"
                tid = f"00000000-0000-4000-8000-{i:012d}"
                led.write("intent", key, credits=1000, fingerprint="a" * 64)
                led.write("created", key, task_id=tid)
                led.write("completed", key, task_id=tid, output_urls=[f"http://x/{tid}.mp4"])
                led.write(
                    "downloaded",
                    key,
                    task_id=tid,
                    path=f"videos/{key}.mp4",
                    bytes=6762,
                    sha256="b" * 64,
                )
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across exec.
        code = (
            "import os, sys\n"
            "from batchkling.cli import main\n"
            "with open(os.devnull, 'w') as out:\n"
            "    rc = main(['status', sys.argv[1], '--json'], out=out)\n"
            "hwm = [x for x in open('/proc/self/status') if x.startswith('VmHWM')][0]\n"
            "print(rc, hwm.split()[1])\n"
        )
        t0 = time.perf_counter()
        res = subprocess.run(
            [sys.executable, "-c", code, str(manifest)], capture_output=True, text=True, check=True
        )
        wall = time.perf_counter() - t0
        rc, rss_kb = (int(x) for x in res.stdout.split())
        print(
            f"status --json: {n} jobs ({4 * n} ledger lines), exit {rc}, "
            f"peak RSS {rss_kb / 1024:.0f} MB (target <= 300), {wall:.1f} s"
        )


def fold_speed(events: int = 1_000_000) -> None:
    """Fold a 1,000,000-event ledger (<= 4 s), reading included."""
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp)
        stamp = "2026-11-24T03:00:00.000000Z"
        with Ledger.open(run_dir, now=lambda: stamp) as led:
            for i in range(events // 4):
                key = f"s{i:06d}"
                tid = f"00000000-0000-4000-8000-{i:012d}"
                led.write(
                    "intent",
                    key,
                    credits=1000,
                    fingerprint="a" * 64,
                    mode="standard",
                    duration=5,
                    reason="new",
                )
                led.write("created", key, task_id=tid)
                led.write(
                    "completed", key, task_id=tid, output_urls=[f"http://x/{tid}.mp4"], polls=3
                )
                led.write(
                    "downloaded",
                    key,
                    task_id=tid,
                    path=f"videos/{key}.mp4",
                    bytes=6762,
                    sha256="b" * 64,
                )
        size = (run_dir / LEDGER_NAME).stat().st_size
        best = min(_timed(lambda: fold_ledger(run_dir / LEDGER_NAME)) for _ in range(3))
        print(f"fold: {events} events ({size / 1e6:.0f} MB), best of 3: {best:.2f} s (target <= 4)")


def _timed(fn: Any) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def polling(n: int = 200, concurrency: int = 40, scale: float = 60.0) -> None:
    """Generation of 2-8 minutes, time-scaled: adaptive polling against a fixed 10 s poll.

    200 jobs at 40 at a time: the first wave polls blind, later ones use what it taught.
    """
    gen = f"{120 / scale},{480 / scale}"
    variants = (
        ("adaptive 5-30 s, the default", f"{5 / scale},{30 / scale}"),
        ("adaptive 5-10 s", f"{5 / scale},{10 / scale}"),
        ("fixed 10 s, the baseline", f"{10 / scale},{10 / scale}"),
    )
    for label, interval in variants:
        server = start_mock_server("--gen-seconds", gen, "--seed", "2")
        try:
            with tempfile.TemporaryDirectory() as tmp:
                manifest = _manifest(Path(tmp), n)
                code, _, _ = _run(
                    manifest,
                    server.url,
                    "--concurrency",
                    str(concurrency),
                    "--rate",
                    "1000/s",
                    "--poll-interval",
                    interval,
                )
                stats = _stats(server.url)
                finish = {t["task_id"]: _ts(t["finish_at"]) for t in stats["tasks"]}
                events = [json.loads(x) for x in (Path(tmp) / "bench.run" / LEDGER_NAME).open()]
                done = [e for e in events if e["event"] == "completed"]
                delays = [(_ts(e["ts"]) - finish[e["task_id"]]) * scale for e in done]
                polls = [e["polls"] for e in done]
                print(
                    f"polling ({label}, x{scale:g} time scale): exit {code}, "
                    f"polls per job {statistics.mean(polls):.1f}, median detection delay "
                    f"{statistics.median(delays):.1f} s, p90 "
                    f"{sorted(delays)[int(0.9 * len(delays))]:.1f} s (in unscaled seconds)"
                )
        finally:
            server.stop()


def main() -> None:
    """Run every runner benchmark."""
    fold_speed()
    status_memory()
    scheduling()
    polling()


if __name__ == "__main__":
    main()
