"""The shared small rules: whole numbers, thousands, atomic writes, the paused collector."""

from __future__ import annotations

import gc
import json
import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchkling._util import collector_paused, thousands, whole_number, write_atomic

finite = st.floats(allow_nan=False, allow_infinity=False)


def test_whole_number_drops_the_fraction_of_a_whole_float() -> None:
    """5.0 becomes the int 5; 5.5 and ints stay as they are."""
    assert whole_number(5.0) == 5 and type(whole_number(5.0)) is int
    assert whole_number(5.5) == 5.5 and type(whole_number(5.5)) is float
    assert whole_number(7) == 7 and type(whole_number(7)) is int
    assert whole_number(-0.0) == 0 and type(whole_number(-0.0)) is int


@given(finite)
def test_whole_number_keeps_the_value(value: float) -> None:
    """The result equals the input, and is an int exactly when the input is whole."""
    result = whole_number(value)
    assert result == value
    assert (type(result) is int) == value.is_integer()


@given(finite)
def test_whole_number_survives_a_json_round_trip(value: float) -> None:
    """JSON of the result reads back as the same number, with no ``.0`` on whole ones."""
    text = json.dumps(whole_number(value))
    assert json.loads(text) == value
    assert not text.endswith(".0")


def test_thousands_groups_digits() -> None:
    """Thousands are grouped; a whole float shows no ``.0``; another separator is used as given."""
    assert thousands(0) == "0"
    assert thousands(999) == "999"
    assert thousands(1_200) == "1,200"
    assert thousands(1_234_567.0) == "1,234,567"
    assert thousands(1_200.5) == "1,200.5"
    assert thousands(-4_000) == "-4,000"
    assert thousands(12_000, sep="\u202f") == "12\u202f000"


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_thousands_reads_back(value: int) -> None:
    """Removing the separators gives the number back; a whole float reads as its int."""
    assert int(thousands(value).replace(",", "")) == value
    assert thousands(float(value)) == thousands(value)


@given(finite)
def test_thousands_of_a_float_reads_back(value: float) -> None:
    """Removing the separators gives the same float back."""
    assert float(thousands(value).replace(",", "")) == value


@given(st.integers(min_value=1, max_value=10**12))
def test_thousands_groups_of_three(value: int) -> None:
    """Every group after the first has exactly three digits, one group per power of 1000."""
    first, *rest = thousands(value, sep=" ").split(" ")
    assert 1 <= len(first) <= 3
    assert all(len(group) == 3 for group in rest)
    assert len(rest) == (len(str(value)) - 1) // 3


def test_write_atomic_writes_bytes_and_text(tmp_path: Path) -> None:
    """Bytes are written as given; text as UTF-8 with its line ends kept."""
    target = tmp_path / "a.bin"
    write_atomic(target, b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    text_target = tmp_path / "b.csv"
    write_atomic(text_target, "é\r\nz\n")
    assert text_target.read_bytes() == "é\r\nz\n".encode()


def test_write_atomic_replaces_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    """A second write replaces the first; only the target is left in the directory."""
    target = tmp_path / "cache.json"
    write_atomic(target, "old")
    write_atomic(target, "new")
    assert target.read_text(encoding="utf-8") == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]


def test_write_atomic_mode(tmp_path: Path) -> None:
    """``mode`` sets the permissions whatever the umask; without it, the umask decides."""
    previous = os.umask(0o077)
    try:
        shared = tmp_path / "report.html"
        write_atomic(shared, "x", mode=0o644)
        private = tmp_path / "copy.png"
        write_atomic(private, b"x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(shared.stat().st_mode) == 0o644
    assert stat.S_IMODE(private.stat().st_mode) == 0o600


def test_write_atomic_keeps_the_old_file_when_the_rename_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that fails before the rename leaves the old content and no temporary file."""
    target = tmp_path / "cache.json"
    write_atomic(target, "old")

    def refuse(src: object, dst: object) -> None:
        raise OSError("no space left on device")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="no space"):
        write_atomic(target, "new")
    assert target.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["cache.json"]


def test_write_atomic_needs_the_directory(tmp_path: Path) -> None:
    """The parent directory is not made: the caller decides where files may appear."""
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "missing" / "a.txt", "x")
    assert list(tmp_path.iterdir()) == []


def test_collector_paused_restores_the_previous_state() -> None:
    """The collector is off inside the block and back as it was after, even on error."""
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()
    gc.disable()
    try:
        with collector_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_of_budget_writes_both_numbers_one_way() -> None:
    from batchkling._util import of_budget

    assert of_budget(12000, 60000) == "12,000 / 60,000"
    assert of_budget(1_000_000_000, None) == "1,000,000,000"


def test_plural_says_one_and_many() -> None:
    from batchkling._util import plural

    assert plural(1, "API call") == "1 API call"
    assert plural(0, "job") == "0 jobs"
    assert plural(1200, "job") == "1,200 jobs"
    assert plural(2, "is", "are") == "2 are"


def test_span_reads_as_a_person_says_it() -> None:
    from batchkling._util import span

    assert span(0.44) == "0.4 s"
    assert span(45.2) == "45 s"
    assert span(252) == "4 min 12 s"
    assert span(120) == "2 min"
    assert span(7500) == "2 h 5 min"
