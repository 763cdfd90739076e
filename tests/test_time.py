"""RFC 3339 times: the clock, formatting with ``Z``, parsing any offset."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchkling._time import (
    format_rfc3339,
    format_rfc3339_ms,
    now_rfc3339,
    parse_rfc3339,
    parse_rfc3339_ms,
    utc_now,
)

T0 = datetime(2026, 11, 24, 3, 20, 57, 123456, tzinfo=timezone.utc)
# Years 1000 to 9999: four digits, as RFC 3339 writes them.
MS_RANGE = st.integers(min_value=-30_610_224_000_000, max_value=253_402_300_799_999)
moments = st.datetimes(
    min_value=datetime(1000, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.just(timezone.utc),
)
offsets = st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)


def test_utc_now_is_aware_and_current() -> None:
    """The clock answers in UTC, close to the system's time."""
    now = utc_now()
    assert now.tzinfo is timezone.utc
    assert abs((datetime.now(timezone.utc) - now).total_seconds()) < 5


def test_now_rfc3339_has_microseconds_and_z() -> None:
    """The ledger's form: microseconds and a ``Z``, matching the ledger schema's pattern."""
    text = now_rfc3339()
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", text)
    assert abs((utc_now() - parse_rfc3339(text)).total_seconds()) < 5


def test_format_rfc3339() -> None:
    """UTC with ``Z``, to the digits asked for; another offset is converted to UTC first."""
    assert format_rfc3339(T0) == "2026-11-24T03:20:57.123Z"
    assert format_rfc3339(T0, timespec="microseconds") == "2026-11-24T03:20:57.123456Z"
    assert format_rfc3339(T0, timespec="seconds") == "2026-11-24T03:20:57Z"
    paris = T0.astimezone(timezone(timedelta(hours=1)))
    assert format_rfc3339(paris) == "2026-11-24T03:20:57.123Z"


def test_parse_rfc3339_accepts_z_offsets_and_no_offset() -> None:
    """``Z``, ``z``, an offset, surrounding blanks and no offset at all (UTC) are read."""
    want = T0.replace(microsecond=0)
    assert parse_rfc3339("2026-11-24T03:20:57Z") == want
    assert parse_rfc3339("2026-11-24T03:20:57z") == want
    assert parse_rfc3339(" 2026-11-24T04:20:57+01:00\n") == want
    assert parse_rfc3339("2026-11-24T03:20:57") == want
    assert parse_rfc3339("2026-11-24T03:20:57.123456Z") == T0
    assert parse_rfc3339("2026-11-24T04:20:57+01:00").tzinfo is timezone.utc


@pytest.mark.parametrize("text", ["", "yesterday", "2026-13-01T00:00:00Z", "2026-11-24T03:20Zx"])
def test_parse_rfc3339_refuses_what_is_not_a_time(text: str) -> None:
    """Text that is not a time raises ``ValueError``."""
    with pytest.raises(ValueError):
        parse_rfc3339(text)


@given(moments, st.sampled_from(["milliseconds", "microseconds"]))
def test_format_then_parse_is_the_moment(moment: datetime, timespec: str) -> None:
    """Parsing what was formatted gives the moment back, cut to the digits written."""
    text = format_rfc3339(moment, timespec=timespec)  # type: ignore[arg-type]
    cut = (
        moment
        if timespec == "microseconds"
        else moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    )
    assert parse_rfc3339(text) == cut
    assert text.endswith("Z")


@given(moments, offsets)
def test_parse_is_independent_of_the_offset_written(moment: datetime, offset: timezone) -> None:
    """The same instant written with any offset parses to the same UTC time."""
    assert parse_rfc3339(moment.astimezone(offset).isoformat()) == moment


def _format_ms_reference(ms: int) -> str:
    """The API's time format, written out the long way."""
    seconds, millis = divmod(ms, 1000)
    stamp = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{millis:03d}Z"


def test_format_rfc3339_ms() -> None:
    """Milliseconds since the epoch, as the API writes times."""
    assert format_rfc3339_ms(0) == "1970-01-01T00:00:00.000Z"
    assert format_rfc3339_ms(1_795_490_457_123) == "2026-11-24T03:20:57.123Z"
    assert format_rfc3339_ms(-1) == "1969-12-31T23:59:59.999Z"


@given(MS_RANGE)
def test_format_rfc3339_ms_matches_the_long_way(ms: int) -> None:
    """Adding whole milliseconds to the epoch agrees with formatting seconds and millis apart."""
    assert format_rfc3339_ms(ms) == _format_ms_reference(ms)


@given(MS_RANGE)
def test_milliseconds_round_trip(ms: int) -> None:
    """Parsing a formatted time gives back the very millisecond."""
    assert parse_rfc3339_ms(format_rfc3339_ms(ms)) == ms


def test_parse_rfc3339_ms_reads_any_offset() -> None:
    """An offset or no offset (UTC) gives the same milliseconds as ``Z``."""
    assert parse_rfc3339_ms("2026-11-24T04:20:57.123+01:00") == 1_795_490_457_123
    assert parse_rfc3339_ms("2026-11-24T03:20:57.123") == 1_795_490_457_123
