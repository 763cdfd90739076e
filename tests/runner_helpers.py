"""Helpers for runner tests: manifests served by the emulator's frames, and running the CLI."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from batchkling.cli import main

ROOT = Path(__file__).resolve().parent.parent
LEDGER_SCHEMA = json.loads((ROOT / "schemas" / "ledger.schema.json").read_text())
FAST = ["--poll-interval", "0.02,0.2", "--rate", "200/s", "--usage-settle", "0.3", "--quiet"]


def write_manifest(
    directory: Path,
    base_url: str,
    n: int,
    *,
    name: str = "board",
    mode: str = "standard",
    duration: int = 5,
    budget: int | None = None,
    takes: int = 1,
    prompt: str = "shot {i} turns slowly",
) -> Path:
    """A YAML manifest of ``n`` shots whose images are the emulator's generated frames."""
    lines = ["version: 1", f"name: {name}", f"image_base_url: {base_url}/__emulator/frames/"]
    if budget is not None:
        lines.append(f"budget: {budget}")
    lines += ["defaults:", f"  model_mode: {mode}", f"  duration: {duration}", "shots:"]
    for i in range(1, n + 1):
        lines += [
            f"  - id: s{i:02d}",
            f"    prompt: {prompt.format(i=i)}",
            f"    image: s{i:02d}.png",
        ]
        if takes != 1:
            lines.append(f"    takes: {takes}")
    path = directory / f"{name}.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@dataclass
class Result:
    code: int
    out: str
    err: str


def run_cli(*args: str) -> Result:
    """``batchkling ARGS`` in this process (SJINN_API_KEY comes from the environment)."""
    out, err = io.StringIO(), io.StringIO()
    code = main(list(args), out=out, err=err)
    return Result(code, out.getvalue(), err.getvalue())


def spawn_run(
    manifest: Path, base_url: str, *extra: str, key: str = "test-key"
) -> subprocess.Popen[str]:
    """A real ``batchkling run`` process."""
    env = {**os.environ, "SJINN_API_KEY": key, "PYTHONUNBUFFERED": "1"}
    cmd = [
        sys.executable,
        "-m",
        "batchkling",
        "run",
        str(manifest),
        "--api-base",
        base_url,
        *FAST,
        *extra,
    ]
    return subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT
    )


def ledger_lines(run_dir: Path) -> list[dict[str, Any]]:
    """Every line of the run's ledger, each checked against the ledger schema."""
    validator = jsonschema.Draft202012Validator(LEDGER_SCHEMA)
    lines = [json.loads(x) for x in (run_dir / "ledger.jsonl").read_text().splitlines()]
    for line in lines:
        validator.validate(line)
    return lines


def creates_per_prompt(stats: dict[str, Any]) -> Counter[str]:
    """How many tasks the emulator created for each prompt."""
    return Counter(t["input"]["prompt"] for t in stats["tasks"])


def status_json(manifest: Path, *extra: str) -> dict[str, Any]:
    """``batchkling status MANIFEST --json``, parsed."""
    res = run_cli("status", str(manifest), "--json", *extra)
    assert res.code == 0, res.err
    doc: dict[str, Any] = json.loads(res.out)
    return doc


def max_in_window(times: list[float], window: float) -> int:
    """The most timestamps in any half-open window of ``window`` seconds."""
    times = sorted(times)
    best = lo = 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window:
            lo += 1
        best = max(best, hi - lo + 1)
    return best
