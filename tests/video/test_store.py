"""Placing a verified video never writes over the video of another task."""

from __future__ import annotations

import hashlib
from pathlib import Path

from batchkling.video.store import place_video

OLD, NEW = b"old video bytes", b"new video bytes"
T1, T2 = "11111111-aaaa-bbbb-cccc-000000000001", "22222222-aaaa-bbbb-cccc-000000000002"


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _part(videos: Path, data: bytes, job: str = "s01") -> Path:
    videos.mkdir(parents=True, exist_ok=True)
    part = videos / f"{job}.mp4.part"
    part.write_bytes(data)
    return part


def test_the_first_video_of_a_job_takes_its_name_with_its_poster(tmp_path: Path) -> None:
    """``videos/<job>.mp4`` and ``videos/<job>.jpg``; nothing else is left behind."""
    videos = tmp_path / "videos"
    placed = place_video(
        _part(videos, NEW), job="s01", task_id=T2, sha256=_sha(NEW), poster=b"jpg", task_of=_none
    )
    assert placed.path == videos / "s01.mp4" and placed.path.read_bytes() == NEW
    assert placed.poster == videos / "s01.jpg" and placed.poster.read_bytes() == b"jpg"
    assert placed.earlier is None
    assert sorted(p.name for p in videos.iterdir()) == ["s01.jpg", "s01.mp4"]


def test_a_video_of_another_task_moves_aside_with_its_poster(tmp_path: Path) -> None:
    """The earlier video becomes ``<job>.<its task prefix>.mp4``, byte for byte."""
    videos = tmp_path / "videos"
    (videos / "s01.mp4").parent.mkdir(parents=True)
    (videos / "s01.mp4").write_bytes(OLD)
    (videos / "s01.jpg").write_bytes(b"old poster")
    asked: list[tuple[Path, str]] = []

    def task_of(path: Path, sha: str) -> str | None:
        asked.append((path, sha))
        return T1

    placed = place_video(
        _part(videos, NEW), job="s01", task_id=T2, sha256=_sha(NEW), poster=b"new", task_of=task_of
    )
    assert asked == [(videos / "s01.mp4", _sha(OLD))]
    assert placed.earlier == videos / "s01.11111111.mp4"
    assert placed.earlier.read_bytes() == OLD
    assert (videos / "s01.11111111.jpg").read_bytes() == b"old poster"
    assert (videos / "s01.mp4").read_bytes() == NEW and (videos / "s01.jpg").read_bytes() == b"new"


def test_the_same_task_downloaded_again_replaces_its_own_copy(tmp_path: Path) -> None:
    """A video the ledger says is this task's is the same render: nothing to keep."""
    videos = tmp_path / "videos"
    _part(videos, OLD).rename(videos / "s01.mp4")
    placed = place_video(
        _part(videos, NEW), job="s01", task_id=T2, sha256=_sha(NEW), poster=None, task_of=_t2
    )
    assert placed.earlier is None and placed.poster is None
    assert sorted(p.name for p in videos.iterdir()) == ["s01.mp4"]


def test_an_unrecorded_copy_of_the_new_video_is_replaced(tmp_path: Path) -> None:
    """Placed before a crash, never recorded: the same bytes, so nothing is lost."""
    videos = tmp_path / "videos"
    _part(videos, NEW).rename(videos / "s01.mp4")
    placed = place_video(
        _part(videos, NEW), job="s01", task_id=T2, sha256=_sha(NEW), poster=None, task_of=_none
    )
    assert placed.earlier is None
    assert [p.name for p in videos.iterdir()] == ["s01.mp4"]


def test_an_unknown_file_is_kept_under_its_own_hash(tmp_path: Path) -> None:
    """No task known for it, and not the new video: kept as ``<job>.<sha256 prefix>.mp4``."""
    videos = tmp_path / "videos"
    _part(videos, OLD).rename(videos / "s01.mp4")
    placed = place_video(
        _part(videos, NEW), job="s01", task_id=T2, sha256=_sha(NEW), poster=None, task_of=_none
    )
    assert placed.earlier == videos / f"s01.{_sha(OLD)[:8]}.mp4"
    assert placed.earlier.read_bytes() == OLD


def test_a_taken_name_is_never_written_over(tmp_path: Path) -> None:
    """When ``<job>.<task>.mp4`` (or its poster) exists, the next free ``-2``, ``-3`` is used."""
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "s01.11111111.mp4").write_bytes(b"first keep")
    (videos / "s01.11111111-2.jpg").write_bytes(b"a poster in the way")
    (videos / "s01.mp4").write_bytes(OLD)
    placed = place_video(
        _part(videos, NEW), job="s01", task_id=T2, sha256=_sha(NEW), poster=None, task_of=_t1
    )
    assert placed.earlier == videos / "s01.11111111-3.mp4"
    assert (videos / "s01.11111111.mp4").read_bytes() == b"first keep"
    assert (videos / "s01.11111111-2.jpg").read_bytes() == b"a poster in the way"
    assert placed.earlier.read_bytes() == OLD


def _none(path: Path, sha: str) -> str | None:
    return None


def _t1(path: Path, sha: str) -> str | None:
    return T1


def _t2(path: Path, sha: str) -> str | None:
    return T2
