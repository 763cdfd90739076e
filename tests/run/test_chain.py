"""Chained shots run end to end: each starts on the last frame of the shot before it.

The real command line against the emulator over HTTP with ``--fetch-images`` (a
create succeeds only if the provider can fetch its image) and moto's S3 server
on loopback, where the frames are uploaded. The rule of which take a chain
starts from, and the selection of chains whose source is lost, are checked
without a server.
"""

from __future__ import annotations

import io
import itertools
from pathlib import Path
from typing import Any

import av
import httpx
import pytest
from PIL import Image, ImageChops

from batchkling.model import Job, JobState, Shot
from batchkling.review.marks import Marks
from batchkling.run.chain import choose_take
from batchkling.run.selection import select_work
from batchkling.state import fold
from tests.runner_helpers import FAST, ledger_lines, run_cli, status_json
from tests.storage.conftest import S3Server, s3, write_frames

__all__ = ["s3"]  # the S3 server fixture, shared with tests/storage

GEN = (0.05, 0.2)


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", "test-key")


def _board(directory: Path) -> Path:
    write_frames(directory / "frames", ["s01"])
    text = """\
version: 1
name: chain
upload_to: s3://frames/ep01/
shots:
  - id: s01
    prompt: the door opens
    image: frames/s01.png
  - id: s02
    prompt: she walks through
    image: {after: s01}
  - id: s03
    prompt: the hall goes dark
    image: {after: s02}
"""
    path = directory / "board.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _run(manifest: Path, base_url: str, *extra: str) -> Any:
    return run_cli("run", str(manifest), "--api-base", base_url, *FAST, *extra)


def _first_and_last(video: Path) -> tuple[Image.Image, Image.Image]:
    with av.open(str(video)) as container:
        frames = [f.to_image() for f in container.decode(container.streams.video[0])]
    return frames[0].convert("RGB"), frames[-1].convert("RGB")


def _difference(a: Image.Image, b: Image.Image) -> int:
    extrema = ImageChops.difference(a, b).getextrema()
    return max(high for _low, high in extrema)  # type: ignore[misc]


def _fetched(url: str) -> Image.Image:
    answer = httpx.get(url)
    answer.raise_for_status()
    image = Image.open(io.BytesIO(answer.content))
    image.load()
    assert image.format == "PNG"
    return image.convert("RGB")


def test_three_shot_chain_starts_each_shot_on_the_last_frame_before_it(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """s02 starts on s01's last frame and s03 on s02's; each created after its source is done."""
    manifest = _board(tmp_path)
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    res = _run(manifest, emulator.base_url)
    assert res.code == 0, res.out + res.err
    stats = emulator.stats()
    assert stats["tasks_created"] == 3, stats["tasks"]
    assert stats["faults"].get("image_unfetchable", 0) == 0, stats["faults"]
    tasks = {t["input"]["prompt"]: t for t in stats["tasks"]}
    order = ["the door opens", "she walks through", "the hall goes dark"]
    run_dir = tmp_path / "board.run"
    lines = ledger_lines(run_dir)
    videos = {ln["job"]: run_dir / ln["path"] for ln in lines if ln["event"] == "downloaded"}
    for source, chained, prompt in (("s01", "s02", order[1]), ("s02", "s03", order[2])):
        start = _fetched(tasks[prompt]["input"]["image"])
        first, last = _first_and_last(videos[source])
        assert start.size == last.size
        assert _difference(start, last) <= 8, f"{chained} does not start on {source}'s last frame"
        assert _difference(start, first) > 8  # the last frame, not any frame
        # Sent only once its source was done: downloaded before the intent to create.
        events = [(ln["event"], ln.get("job")) for ln in lines]
        assert events.index(("downloaded", source)) < events.index(("intent", chained))
    for before, after in itertools.pairwise(order):
        assert tasks[before]["finish_at"] <= tasks[after]["created_at"], (before, after, tasks)
    assert {j["state"] for j in status_json(manifest)["jobs"]} == {"done"}
    objects = s3.objects()
    assert len([k for k in objects if k.startswith("ep01/")]) == 3, objects

    again = _run(manifest, emulator.base_url)
    assert again.code == 0, again.err
    assert emulator.stats()["tasks_created"] == 3  # nothing created twice


def test_a_failed_source_skips_its_chain_with_the_reason(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """s01 fails: s02 and s03 are skipped naming their source, and nothing more is created."""
    manifest = _board(tmp_path)
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN, fail_rate=1.0)
    res = _run(manifest, emulator.base_url)
    assert res.code == 1, res.err
    assert emulator.stats()["tasks_created"] == 1
    run_dir = tmp_path / "board.run"
    skipped = {ln["job"]: ln["reason"] for ln in ledger_lines(run_dir) if ln["event"] == "skipped"}
    assert set(skipped) == {"s02", "s03"}
    assert "its source s01 failed" in skipped["s02"]
    assert "s02" in skipped["s03"]
    states = {j["job"]: j["state"] for j in status_json(manifest)["jobs"]}
    assert states == {"s01": "failed", "s02": "skipped", "s03": "skipped"}
    page = (run_dir / "report.html").read_text()
    assert "last frame of s01" in page and "after:s01" not in page  # the storyboard says it

    again = _run(manifest, emulator.base_url)
    assert again.code == 1, again.err
    assert emulator.stats()["tasks_created"] == 1  # the chain never waits forever, nor is sent


def _jobs(*shots: Shot) -> list[Job]:
    out: list[Job] = []
    for shot in shots:
        if shot.takes == 1:
            out.append(Job(shot.id, shot))
        else:
            out += [Job(f"{shot.id}#{k}", shot, k) for k in range(1, shot.takes + 1)]
    return out


def test_picked_take_wins_else_the_first_done_one() -> None:
    """A pick decides; without one the first done take (rejected ones never) in take order."""
    takes = ["s01#1", "s01#2", "s01#3"]
    states = {"s01#1": JobState.FAILED, "s01#2": JobState.DONE, "s01#3": JobState.DONE}
    present = {"s01#2", "s01#3"}
    got = choose_take("s01", takes, states.__getitem__, marks=Marks(), present=present)
    assert (got.status, got.key) == ("ready", "s01#2")
    picked = Marks(picks={"s01": "s01#3"})
    got = choose_take("s01", takes, states.__getitem__, marks=picked, present=present)
    assert got.key == "s01#3"
    rejected = Marks(rejected={"s01#2"})
    got = choose_take("s01", takes, states.__getitem__, marks=rejected, present=present)
    assert got.key == "s01#3"
    # A take this run still works on is waited for, whatever it shows now.
    got = choose_take(
        "s01", takes, states.__getitem__, marks=Marks(), present=present, alive={"s01#1"}
    )
    assert (got.status, got.key) == ("wait", "s01#1")
    failed = dict.fromkeys(takes, JobState.FAILED)
    got = choose_take("s01", takes, failed.__getitem__, marks=Marks(), present=set())
    assert got.status == "lost" and got.why == "s01 failed"


def test_selection_skips_a_chain_whose_source_does_not_fit_the_budget() -> None:
    """With --allow-partial, a chain on a source left out by the budget is skipped, not sent."""
    s01 = Shot("s01", "p", "https://x.example/a.png")
    s02 = Shot("s02", "p", "after:s01")
    s03 = Shot("s03", "p", "https://x.example/c.png")
    jobs = _jobs(s01, s02, s03)
    sel = select_work(jobs, fold([]), budget=0, allow_partial=True)
    assert sel.submit == ()
    assert [(j.key, r) for j, r in sel.chain_skipped] == []  # skipped for the budget itself
    # Listed before its source, a chain still never takes the room its source needs:
    # the budget is filled sources first.
    sel = select_work([jobs[1], jobs[0], jobs[2]], fold([]), budget=1000, allow_partial=True)
    assert [j.key for j, _ in sel.submit] == ["s01"]
    assert {j.key for j in sel.skipped} == {"s02", "s03"}
    assert sel.chain_skipped == ()
    sel = select_work([jobs[1], jobs[0], jobs[2]], fold([]), budget=2000, allow_partial=True)
    assert [j.key for j, _ in sel.submit] == ["s01", "s02"]  # the source goes first
    assert sel.to_commit == sum(j.credits for j, _ in sel.submit)


def test_rerender_changed_renders_the_chain_again_and_retry_failed_does_not(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """An edited source: --retry-failed sends nothing; --rerender-changed renders the chain."""
    manifest = _board(tmp_path)
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    assert _run(manifest, emulator.base_url).code == 0
    text = manifest.read_text().replace("the door opens", "the door opens wide")
    manifest.write_text(text)
    res = _run(manifest, emulator.base_url, "--retry-failed")
    assert emulator.stats()["tasks_created"] == 3, res.err
    res = _run(manifest, emulator.base_url, "--rerender-changed")
    assert res.code == 0, res.err
    prompts = [t["input"]["prompt"] for t in emulator.stats()["tasks"]]
    assert prompts[3:] == ["the door opens wide", "she walks through", "the hall goes dark"]
    lines = ledger_lines(tmp_path / "board.run")
    events = [(ln["event"], ln.get("job")) for ln in lines]
    last_s01 = len(events) - 1 - events[::-1].index(("downloaded", "s01"))
    last_s02 = len(events) - 1 - events[::-1].index(("intent", "s02"))
    assert last_s01 < last_s02  # the chain waited for the new take
    again = _run(manifest, emulator.base_url, "--rerender-changed")
    assert again.code == 0, again.err
    assert emulator.stats()["tasks_created"] == 6


def test_a_crash_after_the_chained_intent_never_creates_it_twice(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """The ledger cut right after s02's intent: the resumed run sends s02 (and s03) no more."""
    manifest = _board(tmp_path)
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    assert _run(manifest, emulator.base_url).code == 0
    ledger = tmp_path / "board.run" / "ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    cut = next(
        i for i, ln in enumerate(lines) if '"intent"' in ln and '"job":"s02"' in ln.replace(" ", "")
    )
    ledger.write_text("".join(lines[: cut + 1]))
    res = _run(manifest, emulator.base_url)
    assert emulator.stats()["tasks_created"] == 3, res.err
    states = {j["job"]: j["state"] for j in status_json(manifest)["jobs"]}
    # s02's create may be charged: never sent again; s03 waits for it, neither sent nor skipped.
    assert states["s01"] == "done"
    assert states["s02"] in ("in_doubt", "done")
    assert states["s03"] in ("pending", "done")


def test_a_resume_before_the_chained_intent_starts_on_the_frame_of_the_earlier_run(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """Stopped before s02 was sent: the next run takes s01's last frame from disk and sends s02."""
    manifest = _board(tmp_path)
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    assert _run(manifest, emulator.base_url).code == 0
    run_dir = tmp_path / "board.run"
    ledger = run_dir / "ledger.jsonl"
    lines = ledger.read_text().splitlines(keepends=True)
    cut = next(
        i for i, ln in enumerate(lines) if '"intent"' in ln and '"job":"s02"' in ln.replace(" ", "")
    )
    ledger.write_text("".join(lines[:cut]))  # no intent: as if never sent
    res = _run(manifest, emulator.base_url, "--allow-duplicate")
    assert res.code == 0, res.err
    tasks = emulator.stats()["tasks"]
    assert [t["input"]["prompt"] for t in tasks[3:]] == ["she walks through", "the hall goes dark"]
    s01 = next(ln for ln in ledger_lines(run_dir) if ln["event"] == "downloaded")
    _first, last = _first_and_last(run_dir / s01["path"])
    assert _difference(_fetched(tasks[3]["input"]["image"]), last) <= 8
