"""`make bench BENCH=manifest`: `batchkling validate` and `plan` against the floor.

The floor for a file is what the chosen libraries cannot avoid: the bare parse
(``yaml.load`` with the C safe loader, or ``csv.DictReader``) plus one jsonschema
``iter_errors`` pass over the parsed shots with the shot schema. Each case runs
in a fresh interpreter, timed after imports; its peak memory is the growth of
the process's maximum resident set over its size before the case.

Times are the CPU time of the process (user + system), the best of a few runs
taken in turn (floor, validate, plan, floor, ...): on a shared machine, wall
time also counts the moments another process held the CPU, and running the
cases in turn spreads any such moment over all of them. Wall times are shown too.

The CSV files hold only columns whose cells the schema accepts as text (id,
prompt, image, tail_image_url, duration, model_mode), so the floor's schema pass
finds no errors: a floor inflated by error objects would flatter the ratio.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[2]
SIZES = (10_000, 100_000)
BASE = "https://cdn.example.com/ep/"
TARGET_RATIO = 1.25

_VERBS = [
    "turns around slowly",
    "walks toward the window",
    "looks up at the sky",
    "runs across the pier",
    "lifts the lantern",
    "opens the door",
    "smiles at the camera",
    "sits down by the fire",
]
_SUBJECTS = [
    "The keeper",
    "The young fisher",
    "A seagull",
    "The old dog",
    "The character",
    "A child",
]


_MOVES = ["pushes in", "pulls back", "pans left", "holds still"]


def _prompt(r: random.Random) -> str:
    return f"{r.choice(_SUBJECTS)} {r.choice(_VERBS)} while the camera {r.choice(_MOVES)}"


def write_yaml(path: Path, n: int) -> None:
    """A storyboard-like YAML manifest: defaults, base URL, tail images, takes and tags."""
    r = random.Random(n)
    out = [
        "version: 1",
        f"name: bench-{n}",
        "budget: 1000000000",
        f"image_base_url: {BASE}",
        "defaults:",
        "  model_mode: standard",
        "  duration: 5",
        "shots:",
    ]
    for i in range(n):
        out.append(f"  - id: s{i:06d}")
        out.append(f"    prompt: {_prompt(r)}")
        out.append(f"    image: s{i:06d}.png")
        if i % 3 == 0:
            out.append(f"    tail_image_url: s{i:06d}-end.png")
        if i % 2 == 0:
            out.append(f"    duration: {r.choice([3, 8, 10, 15])}")
        if i % 4 == 0:
            out.append("    multi_shot: false")
        if i % 3 == 1:
            out.append("    model_mode: pro")
        if i % 5 == 0:
            out.append("    takes: 2")
        out.append(f"    tags: [{r.choice(['hero', 'detail', 'wide'])}, act{i % 3 + 1}]")
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def write_csv(path: Path, n: int) -> None:
    """A CSV manifest whose every cell is text the schema accepts as it is."""
    r = random.Random(n)
    rows = ["id,prompt,image,tail_image_url,duration,model_mode"]
    for i in range(n):
        mode = "pro" if i % 3 == 1 else "standard"
        duration = r.choice([3, 5, 8, 10, 15])
        rows.append(f"s{i:06d},{_prompt(r)},s{i:06d}.png,s{i:06d}-end.png,{duration},{mode}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


# ---- one case, in a fresh interpreter -----------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _floor(path: str) -> Callable[[], dict[str, Any]]:
    import csv

    import yaml

    from batchkling.manifest.schemas import validator_for

    iter_errors = validator_for("shot.schema.json").iter_errors

    def run() -> dict[str, Any]:
        start = time.perf_counter()
        if path.endswith(".csv"):
            with open(path, newline="", encoding="utf-8-sig") as stream:
                shots: list[Any] = list(csv.DictReader(stream))
        else:
            with open(path, "rb") as stream:
                shots = yaml.load(stream, Loader=yaml.CSafeLoader)["shots"]
        parsed = time.perf_counter()
        parse_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        errors = sum(1 for shot in shots for _ in iter_errors(shot))
        assert errors == 0, f"the floor's input must be valid, found {errors} errors"
        return {"parse_seconds": parsed - start, "parse_peak_kib": parse_peak}

    return run


def _command(name: str, path: str) -> Callable[[], dict[str, Any]]:
    import io

    # What the two commands use is imported up front, as the floor imports its libraries
    # (a command line imports only the command it names, when it runs).
    from batchkling.cli import main, plan, validate  # noqa: F401
    from batchkling.manifest import load, yaml_reader  # noqa: F401

    argv = [name, path, "--image-base-url", BASE]

    def run() -> dict[str, Any]:
        status = main(argv, out=io.StringIO(), err=io.StringIO())
        assert status == 0, f"batchkling {name} exited {status}"
        return {}

    return run


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _case(kind: str, path: str) -> dict[str, Any]:
    run = _floor(path) if kind == "floor" else _command(kind, path)
    before = _rss_kib()
    cpu, start = _cpu(), time.perf_counter()
    extra = run()
    seconds, wall = _cpu() - cpu, time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    result = {"seconds": seconds, "wall": wall, "peak_mib": (peak - before) / 1024}
    if "parse_peak_kib" in extra:
        result["parse_peak_mib"] = (extra.pop("parse_peak_kib") - before) / 1024
    return {**result, **extra}


def _run_case(kind: str, path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "tests.bench.bench_manifest", "--case", kind, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def _measure(path: Path, repeat: int) -> dict[str, dict[str, Any]]:
    """The best run of each case, the cases taken in turn."""
    best: dict[str, dict[str, Any]] = {}
    for _ in range(repeat):
        for kind in ("floor", "validate", "plan"):
            result = _run_case(kind, path)
            if kind not in best or result["seconds"] < best[kind]["seconds"]:
                best[kind] = result
    return best


def main() -> None:
    """Generate the manifests, measure every case, print a table and the verdict."""
    repeat = int(os.environ.get("BENCH_REPEAT", "3"))
    print(
        f"python {sys.version.split()[0]}; CPU seconds, best of {repeat} runs taken in turn, "
        "each in a fresh process (wall seconds in brackets)"
    )
    print(
        "| file | floor: parse + schema | validate | plan | validate / floor | plan / floor "
        "| peak MiB: bare parse / floor / validate / plan |"
    )
    print("|---|---|---|---|---|---|---|")
    verdicts: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            for fmt, write in (("yaml", write_yaml), ("csv", write_csv)):
                path = Path(tmp) / f"bench-{n}.{fmt}"
                write(path, n)
                best = _measure(path, repeat)
                floor, validate, plan = best["floor"], best["validate"], best["plan"]
                v_ratio = validate["seconds"] / floor["seconds"]
                p_ratio = plan["seconds"] / floor["seconds"]
                size = path.stat().st_size / 2**20
                print(
                    f"| {n:,} shots {fmt} ({size:.1f} MiB) "
                    f"| {floor['seconds']:.2f} s ({floor['parse_seconds']:.2f} + "
                    f"{floor['seconds'] - floor['parse_seconds']:.2f}) [{floor['wall']:.2f}] "
                    f"| {validate['seconds']:.2f} s [{validate['wall']:.2f}] "
                    f"| {plan['seconds']:.2f} s [{plan['wall']:.2f}] "
                    f"| {v_ratio:.2f}x | {p_ratio:.2f}x "
                    f"| {floor['parse_peak_mib']:.0f} / {floor['peak_mib']:.0f} / "
                    f"{validate['peak_mib']:.0f} / {plan['peak_mib']:.0f} |",
                    flush=True,
                )
                if max(v_ratio, p_ratio) > TARGET_RATIO:
                    verdicts.append(f"{n:,} {fmt}: over {TARGET_RATIO}x the floor")
                if fmt == "yaml" and n == max(SIZES):
                    ours = max(validate["peak_mib"], plan["peak_mib"])
                    if ours > floor["parse_peak_mib"]:
                        verdicts.append(f"{n:,} yaml: peak memory above the bare yaml.load")
    print("target met" if not verdicts else "target missed: " + "; ".join(verdicts))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--case"]:
        print(json.dumps(_case(sys.argv[2], sys.argv[3])))
    else:
        main()
