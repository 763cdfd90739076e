"""The emulator's pure parts, without HTTP: settings, ranges, records, limits, PNGs, journal."""

from __future__ import annotations

import struct
import zlib
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchkling.emulator.config import RUNTIME_FIELDS, EmulatorConfig, parse_range
from batchkling.emulator.faults import RateLimiter, UrlSigner, max_in_window
from batchkling.emulator.frames import render_frame
from batchkling.emulator.media import Blob, answer, parse_range_header
from batchkling.emulator.persist import FileJournal, read_journal
from batchkling.emulator.state import EmulatorState, Refused
from batchkling.emulator.usage import (
    UsageBook,
    UsageRecord,
    decode_cursor,
    encode_cursor,
    format_time,
    parse_time,
)
from tests.emulator_fixtures import kling_body


def test_parse_range_reads_min_max_or_one_value() -> None:
    """ "2,6" is (2, 6), "3" is (3, 3); reversed or negative ranges are refused."""
    assert parse_range("2,6") == (2.0, 6.0)
    assert parse_range(" 0.05 , 0.2 ") == (0.05, 0.2)
    assert parse_range("3") == (3.0, 3.0)
    for bad in ("6,2", "-1,2", "a,b", "1,2,3"):
        with pytest.raises(ValueError):
            parse_range(bad)


@pytest.mark.parametrize(
    "fields",
    [
        {"fail_rate": 1.5},
        {"error_rate": -0.1},
        {"rate_limit": 0},
        {"max_running": 0},
        {"output_url_ttl": 0},
        {"cursor_field": "next"},
        {"api_keys": ("",)},
        {"failed_status": 1},
        {"extra_status": -1},
        {"balance": -5},
        {"error_code_field": "errorCode"},
        {"output_url_field": "video"},
        {"status_style": "roman"},
        {"no_url_polls": -1},
        {"error_msg_size": 0},
        {"query_http_status": 200},
        {"trickle": 0},
    ],
)
def test_config_refuses_settings_it_cannot_honour(fields: dict[str, Any]) -> None:
    """Each impossible setting raises ValueError naming it."""
    with pytest.raises(ValueError, match=next(iter(fields)).split("_")[0]):
        EmulatorConfig(**fields)


def test_config_changes_coerce_json_values_and_round_trip() -> None:
    """with_changes takes JSON values; to_json gives them back; start-only fields are refused."""
    config = EmulatorConfig().with_changes(
        {"latency": [0.1, 0.2], "gen_seconds": "1,2", "api_keys": ["a"], "max_running": None}
    )
    assert config.latency == (0.1, 0.2)
    assert config.gen_seconds == (1.0, 2.0)
    assert config.api_keys == ("a",)
    settable = {k: v for k, v in config.to_json().items() if k in RUNTIME_FIELDS}
    assert EmulatorConfig().with_changes(settable) == config
    with pytest.raises(ValueError, match="seed"):
        config.with_changes({"seed": 1})
    with pytest.raises(ValueError, match="true or false"):
        config.with_changes({"errors_as_http": "yes"})


def test_config_fields_settable_at_run_time_and_those_that_take_null() -> None:
    """Seed, state file and balance are fixed at start; only the optional settings take null."""
    assert set(RUNTIME_FIELDS) == {f.name for f in fields(EmulatorConfig)} - {
        "seed",
        "state_file",
        "balance",
    }
    nullable = set()
    for name in RUNTIME_FIELDS:
        try:
            EmulatorConfig().with_changes({name: None})
        except ValueError as exc:
            assert str(exc) == f"{name} cannot be null"
        else:
            nullable.add(name)
    assert nullable == {
        "extra_status",
        "usage_defect",
        "rate_limit",
        "max_running",
        "max_running_code",
        "output_url_ttl",
        "error_msg_size",
        "query_http_status",
        "query_error_code",
        "trickle",
    }


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("latency", [1], 'latency must be [MIN, MAX] or "MIN,MAX"'),
        ("latency", True, 'latency must be [MIN, MAX] or "MIN,MAX"'),
        ("api_keys", "k", "api_keys must be a list of strings"),
        ("rate_limit", 2.0, "rate_limit must be an integer"),
        ("rate_limit", True, "rate_limit must be an integer"),
        ("fail_rate", "0.1", "fail_rate must be a number"),
        ("cursor_field", 1, "cursor_field must be a string"),
    ],
)
def test_config_changes_name_the_field_and_the_type_it_takes(
    name: str, value: Any, message: str
) -> None:
    """A JSON value of the wrong type is refused with the field's name and what it takes."""
    with pytest.raises(ValueError) as caught:
        EmulatorConfig().with_changes({name: value})
    assert str(caught.value) == message


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("bytes=0-9", (0, 9)),
        ("bytes=5-", (5, 99)),
        ("bytes=-10", (90, 99)),
        ("bytes=90-500", (90, 99)),
        ("bytes=100-", "unsatisfiable"),
        ("bytes=-0", "unsatisfiable"),
        ("bytes=9-3", None),
        ("bytes=0-1,5-6", None),
        ("items=0-9", None),
        ("bytes=x-y", None),
    ],
)
def test_range_header_parsing(header: str, expected: Any) -> None:
    """One byte range is honoured, clipped to the size; others are ignored or unsatisfiable."""
    assert parse_range_header(header, 100) == expected


def test_if_range_with_another_etag_gets_the_whole_body() -> None:
    """A Range with a stale If-Range validator is answered 200 with everything."""
    blob = Blob.of(b"0123456789", "video/mp4", 0)
    partial = answer(blob, {"range": "bytes=0-1", "if-range": blob.etag})
    stale = answer(blob, {"range": "bytes=0-1", "if-range": '"other"'})
    assert (partial.status, partial.body) == (206, b"01")
    assert (stale.status, stale.body) == (200, b"0123456789")


@given(st.integers(min_value=0, max_value=4_102_444_800_000))
def test_record_times_round_trip_to_the_millisecond(ms: int) -> None:
    """format_time then parse_time gives back the same millisecond."""
    assert parse_time(format_time(ms)) == ms


def test_cursors_are_opaque_and_checked() -> None:
    """A cursor decodes to the position it was made from; garbage is a ValueError."""
    assert decode_cursor(encode_cursor(1_790_000_000_123, 42)) == (1_790_000_000_123, 42)
    for bad in ("", "!!!", encode_cursor(1, 2)[:-2] + "$$"):
        with pytest.raises(ValueError):
            decode_cursor(bad)


@given(
    st.lists(st.integers(min_value=0, max_value=50), max_size=40),
    st.integers(min_value=1, max_value=7),
)
def test_pages_cover_the_book_exactly_once_newest_first(times: list[int], limit: int) -> None:
    """Walking every page yields each record once, in (time, seq) order, newest first."""
    book = UsageBook()
    for seq, ms in enumerate(times):
        book.add(UsageRecord(str(seq), "k", "t", None, 1, ms, seq))
    walked: list[UsageRecord] = []
    cursor = None
    while True:
        page, nxt = book.page(limit=limit, cursor=None if cursor is None else decode_cursor(cursor))
        assert len(page) <= limit
        walked += page
        if nxt is None:
            break
        cursor = nxt
    assert [(r.create_ms, r.seq) for r in walked] == sorted(
        ((ms, seq) for seq, ms in enumerate(times)), reverse=True
    )


def test_rate_limiter_allows_n_per_sliding_second_and_says_how_long_to_wait() -> None:
    """Three per second: the 4th waits until the oldest leaves the window."""
    limiter = RateLimiter()
    assert [limiter.check("k", t, 3) for t in (0.0, 0.2, 0.4)] == [None, None, None]
    assert limiter.check("k", 0.5, 3) == pytest.approx(0.5)
    assert limiter.check("other", 0.5, 3) is None
    assert limiter.check("k", 1.0, 3) is None
    assert limiter.check("k", 1.0, None) is None


@given(st.lists(st.floats(min_value=0, max_value=5, allow_nan=False), max_size=60))
def test_accepted_requests_never_exceed_the_limit_in_any_window(times: list[float]) -> None:
    """Whatever arrives, what the limiter accepts has at most N in any 1 s window."""
    limiter = RateLimiter()
    accepted = [t for t in sorted(times) if limiter.check("k", t, 4) is None]
    assert max_in_window(accepted) <= 4


def test_max_in_window_counts_the_busiest_second() -> None:
    """Five requests within 0.9 s and others spread out: the busiest second holds five."""
    assert max_in_window([0.0, 0.1, 0.5, 0.8, 0.9, 2.0, 3.5]) == 5
    assert max_in_window([0.0, 1.0, 2.0]) == 1
    assert max_in_window([]) == 0


def test_signed_urls_expire_and_cannot_be_extended() -> None:
    """A signature covers the expiry: valid before it, refused after it or when edited."""
    signer = UrlSigner()
    query = dict(p.split("=") for p in signer.query("t1", now=100.0, ttl=10).split("&"))
    assert signer.refusal("t1", query["exp"], query["sig"], now=109.9) is None
    assert "expired" in str(signer.refusal("t1", query["exp"], query["sig"], now=110.1))
    assert signer.refusal("t1", str(int(query["exp"]) + 1000), query["sig"], now=100) is not None
    assert signer.refusal("t2", query["exp"], query["sig"], now=100) is not None
    assert signer.refusal("t1", None, None, now=100) is not None


def _png_pixels(data: bytes) -> tuple[int, int, bytes]:
    pos, idat, size = 8, b"", (0, 0)
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
            assert body[8:10] == b"\x08\x02"  # 8-bit RGB
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return size[0], size[1], zlib.decompress(idat)


def test_frames_are_valid_pngs_with_white_text_on_a_coloured_gradient() -> None:
    """Chunks check out, rows decode to the size, the centre has text, corners differ."""
    width, height, raw = _png_pixels(render_frame("s07"))
    stride = 1 + width * 3
    assert (width, height) == (640, 360)
    assert len(raw) == stride * height
    pixels = {
        raw[y * stride + 1 + x * 3 : y * stride + 4 + x * 3] for x in range(width) for y in (180,)
    }
    assert b"\xff\xff\xff" in pixels  # the label crosses the middle row
    left, right = raw[1:4], raw[stride - 3 : stride]
    assert sum(right) > sum(left)  # brighter to the right
    assert render_frame("s07") == render_frame("s07")
    assert render_frame("s07") != render_frame("s08")


def test_journal_skips_a_torn_last_line_and_the_next_event_starts_clean(tmp_path: Path) -> None:
    """A crash mid-line loses that line only; the next append starts a new line."""
    path = tmp_path / "state.jsonl"
    journal = FileJournal(path)
    journal({"e": "reset"})
    with path.open("a") as f:
        f.write('{"e": "tas')
    journal = FileJournal(path)
    journal({"e": "balance", "key": "k", "balance": 5})
    assert read_journal(path) == [{"e": "reset"}, {"e": "balance", "key": "k", "balance": 5}]
    assert read_journal(tmp_path / "missing.jsonl") == []


def test_replaying_the_journal_rebuilds_the_same_state() -> None:
    """Tasks, records, balances and running counts after replay equal the original's."""
    events: list[dict[str, Any]] = []
    config = EmulatorConfig(gen_seconds=(5, 5), balance=10_000, fail_rate=0.5, refund_failed=True)
    state = EmulatorState(config, journal=events.append)
    for i in range(6):
        state.create("a" if i % 2 else "b", kling_body(), float(i))
    state.advance(7.5)
    state.set_balance("b", 123)
    with pytest.raises(Refused):
        state.create("a", kling_body(prompt=""), 8.0)
    copy = EmulatorState(config)
    copy.replay(events)
    assert copy.tasks == state.tasks
    for key in ("a", "b"):
        mine, theirs = state.accounts[key], copy.accounts[key]
        assert (mine.balance, mine.running, mine.max_running, mine.charged, mine.refunded) == (
            theirs.balance,
            theirs.running,
            theirs.max_running,
            theirs.charged,
            theirs.refunded,
        )
        assert mine.book.records() == theirs.book.records()
