"""The animatic: stream copy when takes agree, one re-encode when they differ, honest timing."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import pytest

from batchkling.emulator.clips import clip
from batchkling.export.animatic import write_animatic
from batchkling.export.probe import probe
from batchkling.export.takes import Cut, CutShot, Take
from batchkling.model import Job, Shot
from batchkling.review.inbox import absorb_if_free, drop
from batchkling.review.marks import TakesMode
from tests.export.conftest import Board
from tests.export.export_helpers import (
    export,
    frame_sizes,
    listing,
    packets_of,
    take_path,
    video_length,
)

FRAME = 1 / 8  # the emulator's clips are 8 frames a second


def _length(path: Path) -> float:
    return probe(path, "x").duration


def test_takes_that_agree_are_stream_copied(uniform_board: Board, fresh: Any) -> None:
    """Picks honoured; every packet byte for byte the takes'; the length their sum."""
    board = fresh(uniform_board)
    drop(board.run_dir, "picked", "s02#2", shot="s02")
    assert absorb_if_free(board.run_dir)
    before = listing(board.run_dir / "videos")
    out = board.run_dir.parent / "cut.mp4"
    res = export(board.manifest, "--run-dir", board.run_dir, "--animatic", out)
    assert res.code == 0, res.err
    assert res.out.splitlines() == [
        f"animatic: {out}: 3 shots, 3 takes, 9.00 s at 8 fps (stream copy)"
    ]
    chosen = [take_path(board.run_dir, k) for k in ("s01#1", "s02#2", "s03#1")]
    assert packets_of(out) == [p for path in chosen for p in packets_of(path)]
    length, frames = video_length(out)
    assert length == pytest.approx(sum(_length(p) for p in chosen), abs=FRAME * 3)
    assert frames == 3 * 24
    assert listing(board.run_dir / "videos") == before
    assert not list(out.parent.glob(".cut.mp4.*"))  # no temporary file left


def test_a_missing_shot_gets_a_title_card_of_its_length(failed_board: Board, fresh: Any) -> None:
    """s04 failed: a 3 s card (or --card-seconds) in its place, still stream-copied."""
    board = fresh(failed_board)
    out = board.run_dir.parent / "cut.mp4"
    res = export(board.manifest, "--run-dir", board.run_dir, "--animatic", out)
    assert res.code == 0, res.err
    assert "4 shots, 3 takes, 1 title card, 12.00 s" in res.out and "stream copy" in res.out
    chosen = [take_path(board.run_dir, f"s0{i}#1") for i in (1, 2, 3)]
    takes = [p for path in chosen for p in packets_of(path)]
    packets = packets_of(out)
    assert packets[: len(takes)] == takes and len(packets) == len(takes) + 24
    length, frames = video_length(out)  # every frame decodes, the card's among them
    assert length == pytest.approx(sum(_length(p) for p in chosen) + 3, abs=FRAME * 4)
    assert frames == 4 * 24
    res = export(
        board.manifest, "--run-dir", board.run_dir, "--animatic", out, "--card-seconds", "1.5"
    )
    assert res.code == 0, res.err
    assert video_length(out)[0] == pytest.approx(9 + 1.5, abs=FRAME * 4)


def test_takes_of_different_sizes_are_re_encoded_to_the_most_common(
    mixed_board: Board, fresh: Any
) -> None:
    """Four 320x180 takes and two 160x90: one 320x180 stream, every take's length kept."""
    board = fresh(mixed_board)
    before = listing(board.run_dir / "videos")
    out = board.run_dir.parent / "cut.mp4"
    # --run-dir alone: the manifest is the one the ledger names.
    res = export("--run-dir", board.run_dir, "--animatic", out, "--takes", "all")
    assert res.code == 0, res.err
    assert "6 takes" in res.out and "re-encoded to 320x180" in res.out
    keys = [f"s0{i}#{k}" for i in (1, 2, 3) for k in (1, 2)]
    chosen = [take_path(board.run_dir, k) for k in keys]
    assert {s for p in chosen for s in frame_sizes(p)} == {(320, 180), (160, 90)}
    assert frame_sizes(out) == {(320, 180)}
    length, frames = video_length(out)
    assert length == pytest.approx(sum(_length(p) for p in chosen), abs=FRAME * 6)
    assert frames == 6 * 24
    assert listing(board.run_dir / "videos") == before
    assert json.loads((board.run_dir / "exports.json").read_text())["animatic"]["path"] == str(out)


def _with_audio(path: Path, seconds: float) -> None:
    """An MP4 of a 160x90 clip's video and an AAC stream of silence beside it."""
    src = path.with_suffix(".src.mp4")
    src.write_bytes(clip(seconds))
    with av.open(str(src)) as inp, av.open(str(path), "w", format="mp4") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        audio = out.add_stream("aac", rate=48000)
        for packet in inp.demux(inp.streams.video[0]):
            if packet.size:
                packet.stream = video
                out.mux(packet)
        frame = av.AudioFrame(format="fltp", layout="stereo", samples=1024)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = 48000
        for n in range(int(seconds * 48000 / 1024)):
            frame.pts = n * 1024
            for packet in audio.encode(frame):
                out.mux(packet)
        for packet in audio.encode(None):
            out.mux(packet)


def _cut_of(paths: list[Path], missing: float | None = None) -> Cut:
    shots: list[CutShot] = []
    for n, path in enumerate(paths, 1):
        shot = Shot(id=f"a{n}", prompt="p", image="a.png", duration=2)
        shots.append(CutShot(shot, (Take(Job(f"a{n}", shot), path, None, "done"),), None))
    if missing is not None:
        shot = Shot(id="gone", prompt="p", image="a.png", duration=missing)
        shots.append(CutShot(shot, (), "failed", ("gone",)))
    return Cut(tuple(shots), TakesMode.PICKED)


def test_a_take_with_an_audio_stream_is_cut_without_it(tmp_path: Path) -> None:
    """Video packets copied, the audio left out, whether copying or re-encoding."""
    paths = [tmp_path / "a.mp4", tmp_path / "b.mp4"]
    for path in paths:
        _with_audio(path, 2)
    copied = write_animatic(_cut_of(paths), tmp_path / "cut.mp4")
    assert copied.copied and copied.takes == 2
    with av.open(str(tmp_path / "cut.mp4")) as c:
        assert len(c.streams.audio) == 0 and len(c.streams.video) == 1
    other = tmp_path / "big.mp4"
    other.write_bytes(clip(2, (320, 180)))
    mixed = write_animatic(_cut_of([paths[0], other], missing=1), tmp_path / "mixed.mp4")
    assert not mixed.copied and mixed.size == (160, 90) and mixed.rate == Fraction(8)
    assert mixed.duration == pytest.approx(5, abs=FRAME * 3)


def test_only_title_cards_make_a_video_too(tmp_path: Path) -> None:
    """With no take at all, the cards alone: 1280x720 at 24 fps, the shots' lengths."""
    cut = Cut((_cut_of([], missing=2).shots[0],), TakesMode.PICKED)
    made = write_animatic(cut, tmp_path / "cards.mp4")
    assert (made.cards, made.takes, made.size) == (1, 0, (1280, 720))
    assert made.duration == pytest.approx(2, abs=1 / 24)
