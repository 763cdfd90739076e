"""`make bench BENCH=startup`: how long a command takes to start, against `python -c pass`.

Each command runs as a whole process (the `batchkling` console script of this
interpreter), in turn with `python -c pass` run by the same interpreter: command,
pass, command, pass, ... The figures are medians over the runs: wall seconds, and
CPU seconds (user + system, the kernel's accounting of the finished child). The
ratio is the median of the ratios of each pair, so that a moment when another
process held the CPU moves one pair, not the whole figure.

Two settings. With bytecode cached (what an installed package does: pip compiles
it): every process reads compiled modules from a private cache (PYTHONPYCACHEPREFIX)
that a warm-up run filled. And, when the environment says PYTHONDONTWRITEBYTECODE,
the environment as it is: a source tree that never keeps bytecode compiles each of
the package's modules it imports at every start.

Two yardsticks show what the libraries cost on their own: `import jsonschema` and
`import yaml`, which `validate` and `plan` need to read and check a manifest.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "manifests" / "quickstart.yaml"
TARGET_RATIO = 4.0
RUNS = int(os.environ.get("BENCH_STARTUP_RUNS", "15"))


def _batchkling() -> list[str]:
    script = Path(sys.executable).with_name("batchkling")
    return [str(script)] if script.exists() else [sys.executable, "-m", "batchkling"]


def _cases() -> list[tuple[str, list[str], bool]]:
    """(label, command line, held to the target) for every case."""
    bk = _batchkling()
    manifest = str(QUICKSTART.relative_to(ROOT))
    return [
        ("batchkling --version", [*bk, "--version"], True),
        ("batchkling --help", [*bk, "--help"], True),
        ("batchkling validate quickstart.yaml", [*bk, "validate", manifest], True),
        ("batchkling plan quickstart.yaml", [*bk, "plan", manifest], True),
        ("batchkling run --help", [*bk, "run", "--help"], False),
        ("batchkling report --help", [*bk, "report", "--help"], False),
        ("python -c 'import jsonschema'", [sys.executable, "-c", "import jsonschema"], False),
        ("python -c 'import yaml'", [sys.executable, "-c", "import yaml"], False),
    ]


def _once(argv: Sequence[str], env: Mapping[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one whole process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}")
    return wall, usage.ru_utime + usage.ru_stime


def _measure(argv: Sequence[str], env: Mapping[str, str]) -> dict[str, float]:
    """Medians of the command and of `python -c pass`, taken in turn, and of their ratios."""
    base = [sys.executable, "-c", "pass"]
    _once(argv, env)  # warm-up: fills the bytecode cache, brings the files into memory
    _once(base, env)
    pairs = [(_once(argv, env), _once(base, env)) for _ in range(RUNS)]
    return {
        "wall": statistics.median(a[0] for a, _ in pairs),
        "cpu": statistics.median(a[1] for a, _ in pairs),
        "base_wall": statistics.median(b[0] for _, b in pairs),
        "ratio_wall": statistics.median(a[0] / b[0] for a, b in pairs),
        "ratio_cpu": statistics.median(a[1] / b[1] for a, b in pairs if b[1] > 0),
    }


def _table(title: str, env: Mapping[str, str]) -> list[str]:
    print(f"\n{title}\n")
    print("| command | wall | CPU | `python -c pass` (wall) | ratio: wall | ratio: CPU |")
    print("|---|---|---|---|---|---|")
    missed = []
    for label, argv, held in _cases():
        m = _measure(argv, env)
        print(
            f"| `{label}` | {m['wall'] * 1000:.0f} ms | {m['cpu'] * 1000:.0f} ms "
            f"| {m['base_wall'] * 1000:.0f} ms | {m['ratio_wall']:.1f}x | {m['ratio_cpu']:.1f}x |",
            flush=True,
        )
        if held and m["ratio_wall"] > TARGET_RATIO:
            missed.append(f"{label} ({m['ratio_wall']:.1f}x)")
    return missed


def main() -> None:
    """Time every case in both settings; print the tables and which cases miss the target."""
    print(
        f"python {sys.version.split()[0]}; whole processes, medians of {RUNS} runs, each "
        f"taken in turn with `python -c pass`; target: within {TARGET_RATIO:g}x"
    )
    with tempfile.TemporaryDirectory() as cache:
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = cache
        missed = _table("Bytecode cached (as installed):", cached)
    if os.environ.get("PYTHONDONTWRITEBYTECODE"):
        _table("The environment as it is (PYTHONDONTWRITEBYTECODE set):", dict(os.environ))
    print()
    print("target met" if not missed else "target missed: " + "; ".join(missed))
