"""Export benchmark: `batchkling export --animatic` of 100 takes against a bare PyAV stream copy.

Run with `make bench BENCH=export` (or `.venv/bin/python -m tests.bench export`).
A run directory of 100 shots, each a 5 s clip made by the emulator's clip
function, with a ledger that says every job is done; then, in this process,
several times each: the command; the library's ``write_animatic`` alone, the
cut already chosen; and the floor, a stream copy of the same files into one MP4
with PyAV alone (no manifest, no ledger, no checks, no fsync). Once with the
emulator's own 160x90 clips, once with 1280x720 ones. Ratios are of the best
times; nothing asserts a figure, as the machines are shared.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import statistics
import tempfile
import time
from datetime import datetime, timedelta, timezone
from fractions import Fraction
from pathlib import Path

import av

from batchkling._util import fsync_path
from batchkling.cli import main as cli_main
from batchkling.emulator.clips import clip
from batchkling.export import Cut, cut_of, write_animatic
from batchkling.ledger import fold_ledger
from batchkling.manifest.load import load_manifest
from batchkling.review.marks import TakesMode

START = datetime(2026, 11, 24, 3, 0, 0, tzinfo=timezone.utc)
SHOTS = 100
SECONDS = 5
REPEATS = 15


def _ts(seconds: float) -> str:
    return (START + timedelta(seconds=seconds)).isoformat(timespec="microseconds")[:-6] + "Z"


def _job_lines(
    key: str, nbytes: int, sha: str, t: float, size: tuple[int, int]
) -> list[dict[str, object]]:
    tid = hashlib.sha256(key.encode()).hexdigest()[:32]
    tid = f"{tid[:8]}-{tid[8:12]}-4{tid[13:16]}-8{tid[17:20]}-{tid[20:32]}"
    return [
        {"ts": _ts(t), "event": "intent", "job": key, "credits": 500,
         "fingerprint": hashlib.sha256(key.encode()).hexdigest(), "mode": "standard",
         "duration": SECONDS, "reason": "new"},
        {"ts": _ts(t + 1), "event": "created", "job": key, "task_id": tid},
        {"ts": _ts(t + 2), "event": "completed", "job": key, "task_id": tid,
         "output_urls": [f"https://x.invalid/{tid}.mp4"], "polls": 2},
        {"ts": _ts(t + 3), "event": "downloaded", "job": key, "task_id": tid,
         "path": f"videos/{key}.mp4", "bytes": nbytes, "sha256": sha, "duration": SECONDS,
         "codec": "h264", "width": size[0], "height": size[1]},
    ]  # fmt: skip


def write_run(
    directory: Path, n: int = SHOTS, size: tuple[int, int] = (160, 90)
) -> tuple[Path, Path, list[Path]]:
    """A manifest of ``n`` shots, its run directory with every video (clips of ``size``),
    and the videos."""
    lines = ["version: 1", "name: bench-export", "image_base_url: https://cdn.example.com/b/",
             "defaults:", f"  duration: {SECONDS}", "shots:"]  # fmt: skip
    for i in range(n):
        lines += [f"  - id: s{i:03d}", f"    prompt: shot {i} drifts", "    image: s.png"]
    manifest = directory / "bench.yaml"
    manifest.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_dir = directory / "bench.run"
    (run_dir / "videos").mkdir(parents=True)
    body = clip(SECONDS, size)
    sha = hashlib.sha256(body).hexdigest()
    msha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    events: list[dict[str, object]] = [
        {"ts": _ts(0), "event": "header", "job": None, "version": "0.1.0", "format": 1,
         "manifest": str(manifest.absolute()), "manifest_sha256": msha},
        {"ts": _ts(0), "event": "run_started", "job": None, "pid": 1, "budget": 1_000_000,
         "manifest_sha256": msha},
    ]  # fmt: skip
    videos = []
    for i in range(n):
        key = f"s{i:03d}"
        path = run_dir / "videos" / f"{key}.mp4"
        path.write_bytes(body)
        videos.append(path)
        events += _job_lines(key, len(body), sha, 0.01 * i, size)
    events.append({"ts": _ts(10), "event": "run_ended", "job": None, "exit_status": 0,
                   "api_calls": 3 * n})  # fmt: skip
    text = "".join(json.dumps(e, separators=(",", ":")) + "\n" for e in events)
    (run_dir / "ledger.jsonl").write_text(text, encoding="utf-8")
    return manifest, run_dir, videos


def floor_copy(videos: list[Path], target: Path) -> None:
    """The least a stream copy can do: every packet of every file into one MP4, rebased."""
    with av.open(str(videos[0])) as first, av.open(str(target), "w", format="mp4") as out:
        ostream = out.add_stream_from_template(first.streams.video[0])
        at = 0
        for path in videos:
            with av.open(str(path)) as inp:
                stream = inp.streams.video[0]
                end = 0
                for p in inp.demux(stream):
                    if p.pts is None:
                        continue
                    end = max(end, p.pts + (p.duration or 0))
                    p.pts += at
                    p.dts += at
                    p.stream = ostream
                    out.mux(p)
                at += end


def durable_copy(videos: list[Path], target: Path) -> None:
    """The floor, made durable as an export is: the file fsynced, then renamed into place."""
    tmp = target.with_name(f".{target.name}.tmp")
    floor_copy(videos, tmp)
    fsync_path(tmp)
    os.replace(tmp, target)
    fsync_path(target.parent)


def _time(fn: object, *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)  # type: ignore[operator]
    return time.perf_counter() - t0


def _export(manifest: Path, target: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    code = cli_main(["export", str(manifest), "--animatic", str(target)], out=out, err=err)
    assert code == 0, err.getvalue()
    assert "stream copy" in out.getvalue(), out.getvalue()


def _library(run_dir: Path, manifest: Path, target: Path) -> None:
    """``write_animatic`` alone, the cut already chosen: the copy without the command around it."""
    cut = _cut(run_dir, manifest)
    t0 = time.perf_counter()
    write_animatic(cut, target)
    _LIBRARY.append(time.perf_counter() - t0)


def _cut(run_dir: Path, manifest: Path) -> Cut:
    st = fold_ledger(run_dir / "ledger.jsonl").state
    return cut_of(load_manifest(str(manifest)), st, st.marks, run_dir, TakesMode.PICKED)


_LIBRARY: list[float] = []


def compare(size: tuple[int, int]) -> None:
    """Time the command against the floor on 100 clips of ``size``; print the figures."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        manifest, run_dir, videos = write_run(root, size=size)
        mb = sum(v.stat().st_size for v in videos) / 1e6
        ours, floor, durable = [], [], []
        _LIBRARY.clear()
        for _ in range(REPEATS):  # interleaved, so that all see the same machine
            ours.append(_time(_export, manifest, root / "cut.mp4"))
            floor.append(_time(floor_copy, videos, root / "floor.mp4"))
            durable.append(_time(durable_copy, videos, root / "durable.mp4"))
            _library(run_dir, manifest, root / "lib.mp4")
        with av.open(str(root / "cut.mp4")) as c:
            s = c.streams.video[0]
            length = float(s.duration * Fraction(s.time_base))
        best, median = min(ours) / min(floor), statistics.median(ours) / statistics.median(floor)
        lib = min(_LIBRARY) / min(floor)
        vs_durable = statistics.median(ours) / statistics.median(durable)
        print(
            f"| {size[0]}x{size[1]} | {mb:.1f} | {length:.0f} | {min(ours):.3f} | "
            f"{min(_LIBRARY):.3f} | {min(floor):.3f} | {best:.2f}x | {median:.2f}x | {lib:.2f}x "
            f"| {vs_durable:.2f}x |",
            flush=True,
        )


def main() -> None:
    print(f"{SHOTS} shots of {SECONDS} s clips, {REPEATS} runs each, interleaved")
    print(
        "| clips | MB of video | animatic s | export best s | write_animatic best s "
        "| PyAV copy best s | ratio (best) | ratio (median) | write_animatic ratio "
        "| ratio to a durable copy (median) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in ((160, 90), (1280, 720)):
        compare(size)


if __name__ == "__main__":
    main()
