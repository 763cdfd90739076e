"""Report benchmark: peak memory and time of `batchkling report` on a 100,000-job run directory.

Run with `make bench BENCH=report` (or `.venv/bin/python -m tests.bench report`).
Each command runs in a fresh process; its peak is the child's own high-water mark
(``VmHWM`` of ``/proc/self/status``, read by the child as it exits). Every report
is compared with `batchkling status --run-dir` on the same directory. Nothing here
asserts a figure, since the machines are shared.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[2]
START = datetime(2026, 11, 24, 3, 0, 0, tzinfo=timezone.utc)

# The child: run one command with its output thrown away, then print its exit
# status and its peak resident set in kB. VmHWM, not ru_maxrss: Linux carries
# ru_maxrss over from the parent across exec.
_CHILD = (
    "import os, sys\n"
    "from batchkling.cli import main\n"
    "with open(os.devnull, 'w') as out:\n"
    "    rc = main(sys.argv[1:], out=out, err=out)\n"
    "hwm = [x for x in open('/proc/self/status') if x.startswith('VmHWM')][0]\n"
    "print(rc, hwm.split()[1])\n"
)


def _ts(seconds: float) -> str:
    moment = START + timedelta(seconds=seconds)
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _manifest(directory: Path, n: int) -> Path:
    lines = [
        "version: 1",
        "name: bench-report",
        "budget: 200000000",
        "image_base_url: https://cdn.example.com/b/",
        "defaults:",
        "  duration: 5",
        "shots:",
    ]
    for i in range(n):
        lines += [
            f"  - id: s{i:06d}",
            f"    prompt: shot {i} moves slowly toward the lighthouse",
            "    image: s.png",
            f"    tags: [act{i % 5}]",
        ]
    path = directory / "bench.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _job_lines(i: int, t: float) -> list[dict[str, object]]:
    """The events of job ``i``: done, except one in a hundred failed and one in doubt."""
    key = f"s{i:06d}"
    tid = f"00000000-0000-4000-8000-{i:012d}"
    out: list[dict[str, object]] = [
        {"ts": _ts(t), "event": "intent", "job": key, "credits": 1000,
         "fingerprint": hashlib.sha256(key.encode()).hexdigest(), "mode": "standard",
         "duration": 5, "reason": "new"},
    ]  # fmt: skip
    if i % 100 == 7:
        out.append({"ts": _ts(t + 1), "event": "in_doubt", "job": key, "error": "read timeout"})
        return out
    out.append({"ts": _ts(t + 1), "event": "created", "job": key, "task_id": tid})
    if i % 100 == 3:
        out.append(
            {"ts": _ts(t + 2), "event": "failed", "job": key, "task_id": tid, "error": "refused"}
        )
        return out
    out += [
        {"ts": _ts(t + 2), "event": "completed", "job": key, "task_id": tid,
         "output_urls": [f"https://x.invalid/{tid}.mp4"], "polls": 3},
        {"ts": _ts(t + 3), "event": "downloaded", "job": key, "task_id": tid,
         "path": f"videos/{key}.mp4", "bytes": 6762, "sha256": "b" * 64, "duration": 5.04,
         "codec": "h264", "width": 1280, "height": 720},
    ]  # fmt: skip
    return out


def write_run(directory: Path, n: int) -> tuple[Path, Path]:
    """A manifest of ``n`` shots and its run directory: one run, interrupted (exit 130).

    The ledger is written as text in one go (no fsync per line); its first
    jobs' lines are checked against ``schemas/ledger.schema.json``.
    """
    manifest = _manifest(directory, n)
    run_dir = directory / "bench.run"
    run_dir.mkdir()
    sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    head: list[dict[str, object]] = [
        {"ts": _ts(0), "event": "header", "job": None, "version": "0.1.0", "format": 1,
         "manifest": str(manifest.absolute()), "manifest_sha256": sha},
        {"ts": _ts(0), "event": "run_started", "job": None, "pid": 1, "budget": 200_000_000,
         "manifest_sha256": sha},
    ]  # fmt: skip
    validator = jsonschema.Draft202012Validator(
        json.loads((ROOT / "schemas" / "ledger.schema.json").read_text(encoding="utf-8"))
    )
    with open(run_dir / "ledger.jsonl", "w", encoding="utf-8") as fh:
        for ev in head:
            validator.validate(ev)
            fh.write(json.dumps(ev, separators=(",", ":")) + "\n")
        for i in range(n):
            for ev in _job_lines(i, 0.01 * i):
                if i < 200:
                    validator.validate(ev)
                fh.write(json.dumps(ev, separators=(",", ":")) + "\n")
        end = {"ts": _ts(0.01 * n + 5), "event": "run_ended", "job": None, "exit_status": 130,
               "api_calls": 6 * n}  # fmt: skip
        validator.validate(end)
        fh.write(json.dumps(end, separators=(",", ":")) + "\n")
    return manifest, run_dir


def peak(*argv: str) -> tuple[int, float, float]:
    """``batchkling ARGV`` in a fresh process: (exit status, peak RSS in MB, wall seconds)."""
    t0 = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], capture_output=True, text=True, check=True, cwd=ROOT
    )
    wall = time.perf_counter() - t0
    rc, kb = (int(x) for x in res.stdout.split())
    return rc, kb / 1024, wall


def report_memory(n: int = 100_000) -> None:
    """Peak memory of each report format against `status --run-dir` (target: at most 1.5x)."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        manifest, run_dir = write_run(Path(tmp), n)
        with open(run_dir / "ledger.jsonl", "rb") as fh:
            lines = sum(1 for _ in fh)
        size = (run_dir / "ledger.jsonl").stat().st_size / 1e6
        print(
            f"run directory: {n:,} jobs, {lines:,} ledger lines ({size:.0f} MB), "
            f"written in {time.perf_counter() - t0:.1f} s"
        )
        d = str(run_dir)
        cases = [
            ("status --run-dir", ("status", "--run-dir", d)),
            ("status --run-dir --json", ("status", "--run-dir", d, "--json")),
            ("status MANIFEST", ("status", str(manifest))),
            ("report --run-dir (html)", ("report", "--run-dir", d)),
            ("report --run-dir --format csv", ("report", "--run-dir", d, "--format", "csv")),
            ("report --run-dir --format json", ("report", "--run-dir", d, "--format", "json")),
            ("report --run-dir -o - (html)", ("report", "--run-dir", d, "-o", "-")),
        ]
        base = None
        print("| command | exit | peak RSS MB | x status --run-dir | wall s |")
        print("|---|---|---|---|---|")
        for label, argv in cases:
            rc, mb, wall = peak(*argv)
            base = base or mb
            print(f"| `{label}` | {rc} | {mb:.0f} | {mb / base:.2f} | {wall:.1f} |", flush=True)


def main() -> None:
    report_memory()


if __name__ == "__main__":
    main()
