"""The pure rules of videos: names in videos/, the duration tolerance, what the ledger records."""

from __future__ import annotations

import pytest

from batchkling.video.rules import (
    DURATION_TOLERANCE,
    VideoInfo,
    archive_stem,
    duration_warning,
    looks_like_video,
    poster_name,
    task_prefix,
    video_name,
)


def test_a_job_has_its_video_and_poster_side_by_side() -> None:
    """``<job>.mp4`` and ``<job>.jpg``, take numbers included."""
    assert (video_name("s01#2"), poster_name("s01#2")) == ("s01#2.mp4", "s01#2.jpg")


def test_an_earlier_video_is_named_by_its_task_prefix() -> None:
    """The first eight characters of the task id that produced it."""
    task = "5c2536ac-1483-402b-809f-df4dc0badd3f"
    assert archive_stem("s01", task) == "s01.5c2536ac"


@pytest.mark.parametrize(
    ("task", "prefix"),
    [("ab/c-d_e.fghij", "abc-d_ef"), ("t1", "t1"), ("TASK-00000001", "TASK-000")],
)
def test_a_task_prefix_keeps_only_safe_characters(task: str, prefix: str) -> None:
    """Letters, digits, ``_`` and ``-``: nothing that could leave videos/ or hide a suffix."""
    assert task_prefix(task) == prefix


def test_a_task_id_without_safe_characters_is_named_by_its_hash() -> None:
    """Never an empty name, and two such ids get two names."""
    first, second = task_prefix("/../"), task_prefix("...")
    assert len(first) == 8 and first.isalnum() and first != second


@pytest.mark.parametrize(
    ("actual", "asked", "warned"),
    [
        (5.0, 5, False),
        (5.0 + DURATION_TOLERANCE, 5, False),
        (6.05, 5, True),
        (3.2, 5, True),
        (9.0, None, False),
    ],
)
def test_a_length_more_than_a_second_off_is_warned_about(
    actual: float, asked: float | None, warned: bool
) -> None:
    """Up to one second either way is fine; beyond, a line naming the job and both lengths."""
    warning = duration_warning("s01", actual, asked)
    assert (warning is not None) is warned
    if warning is not None:
        assert warning.startswith("s01: ") and f"{actual:.1f} s" in warning and "5 s" in warning


def test_the_ledger_fields_of_a_video() -> None:
    """Duration rounded to the millisecond, codec, width and height."""
    info = VideoInfo(duration=5.00049, codec="h264", width=160, height=90)
    assert info.ledger_fields() == {"duration": 5.0, "codec": "h264", "width": 160, "height": 90}


@pytest.mark.parametrize(
    ("head", "video"),
    [
        (b"\x00\x00\x00\x20ftypisom\x00\x00", True),
        (b"\x00\x00\x00\x08moov", True),
        (b"\x1a\x45\xdf\xa3\x01\x00", True),
        (b"RIFF\x00\x00\x00\x00AVI LIST", True),
        (b"<!doctype html>", False),
        (b'{"ts":"2026', False),
        (b"", False),
    ],
)
def test_looks_like_video(head: bytes, video: bool) -> None:
    """MP4/QuickTime, Matroska/WebM and AVI by their first bytes; text is not a video."""
    assert looks_like_video(head) is video
