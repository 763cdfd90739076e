"""The image rules of pre-flight, without a socket."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from batchkling.model import Manifest, Shot
from batchkling.preflight.image_rules import (
    MAX_BYTES,
    ImageInfo,
    answer_problem,
    aspect_ok,
    conditional_headers,
    copy_name,
    dimension_problems,
    distinct_urls,
    examine,
    problems_for,
    read_dimensions,
    sniff,
    tail_aspect_warning,
    timeout_message,
    total_size,
    updated_cache,
    wants_copy,
    wants_more,
)
from tests.image_server import jpeg, png, png_header, webp

sides = st.integers(min_value=1, max_value=16000)


def _ok(url: str, width: int, height: int) -> ImageInfo:
    return ImageInfo(
        url, status=200, content_type="image/png", width=width, height=height, kind="png"
    )


def _examine(
    body: bytes,
    content_type: str | None = "image/png",
    *,
    complete: bool = True,
    etag: str | None = None,
) -> ImageInfo:
    return examine(
        "https://img/x",
        status=200,
        content_type=content_type,
        size=len(body) if complete else None,
        prefix=body,
        complete=complete,
        etag=etag,
    )


def test_sniff_recognises_the_three_accepted_signatures() -> None:
    """JPEG, PNG and WebP are told apart by their first bytes alone."""
    assert sniff(jpeg(400, 400)) == "jpeg"
    assert sniff(png_header(400, 400)) == "png"
    assert sniff(webp(400, 400)) == "webp"


@pytest.mark.parametrize(
    "prefix",
    [
        b"",
        b"GIF89a" + bytes(20),
        b"<!doctype html><html>",
        b"RIFF\x00\x00\x00\x00WAVEfmt ",
        b"\xff\xd8",
    ],
)
def test_sniff_rejects_everything_else(prefix: bytes) -> None:
    """GIF, HTML, a RIFF file that is not WebP and a cut JPEG marker are not images."""
    assert sniff(prefix) is None


@given(sides, sides)
def test_png_dimensions_are_read_from_the_header(width: int, height: int) -> None:
    """A PNG header gives back the width and height written into it."""
    assert read_dimensions(png_header(width, height)) == (width, height)


@given(sides, sides)
def test_jpeg_dimensions_are_read_from_the_header(width: int, height: int) -> None:
    """A JPEG's frame header gives back its width and height."""
    assert read_dimensions(jpeg(width, height)) == (width, height)


@given(sides, sides)
def test_webp_dimensions_are_read_from_the_header(width: int, height: int) -> None:
    """A WebP's VP8X chunk gives back its canvas size."""
    assert read_dimensions(webp(width, height)) == (width, height)


@given(
    st.sampled_from(["png", "jpeg", "webp"]),
    sides,
    sides,
    st.integers(min_value=0, max_value=120),
)
def test_a_cut_header_reads_as_nothing_never_as_a_wrong_size(
    kind: str, width: int, height: int, cut: int
) -> None:
    """Any prefix of a header gives either no dimensions or the right ones."""
    whole = {"png": png_header, "jpeg": jpeg, "webp": webp}[kind](width, height)
    assert read_dimensions(whole[:cut]) in (None, (width, height))


def test_a_jpeg_header_past_the_prefix_is_not_read() -> None:
    """Dimensions beyond the bytes at hand are reported missing, not guessed."""
    body = jpeg(800, 600, padding=100_000)
    assert read_dimensions(body[:32768]) is None
    assert read_dimensions(body) == (800, 600)


@given(sides, sides)
def test_aspect_bounds_are_symmetric(width: int, height: int) -> None:
    """Turning an image on its side never changes whether its aspect ratio is allowed."""
    assert aspect_ok(width, height) == aspect_ok(height, width)


@given(sides, sides)
def test_aspect_bound_is_exactly_two_and_a_half(width: int, height: int) -> None:
    """The rule is long side / short side <= 2.5, computed exactly."""
    assert aspect_ok(width, height) == (
        Fraction(max(width, height), min(width, height)) <= Fraction(5, 2)
    )


def test_aspect_bounds_include_the_limits() -> None:
    """2.5:1 and 1:2.5 pass; one pixel more fails."""
    assert aspect_ok(1000, 400) and aspect_ok(400, 1000)
    assert not aspect_ok(1001, 400) and not aspect_ok(400, 1001)


def test_short_side_must_be_300_px() -> None:
    """299 px on either side is too small; 300 px is enough."""
    assert dimension_problems(300, 300) == []
    assert dimension_problems(299, 400) == ["Kling needs at least 300 px on each side"]
    assert dimension_problems(400, 299) == ["Kling needs at least 300 px on each side"]


def test_answer_problem_rejects_errors_pages_and_oversized_files() -> None:
    """A 404, an HTML page and a file over 10 MB are ruled out by their headers alone."""
    assert "answered HTTP 404 Not Found" in (answer_problem(404, "text/html", None) or "")
    assert "content type text/html" in (answer_problem(200, "text/html; charset=utf-8", 10) or "")
    assert "at most 10 MB" in (answer_problem(200, "image/png", MAX_BYTES + 1) or "")
    assert answer_problem(200, "image/png", MAX_BYTES) is None
    assert answer_problem(206, "application/octet-stream", None) is None
    assert answer_problem(200, None, None) is None


def test_total_size_comes_from_content_range_or_length() -> None:
    """A 206 states the full size after the slash; a 200 in Content-Length."""
    assert total_size(206, "32768", "bytes 0-32767/123456") == 123456
    assert total_size(206, "32768", "bytes 0-32767/*") is None
    assert total_size(200, "5000", None) == 5000
    assert total_size(404, "5000", None) is None


def test_a_good_image_passes_with_its_facts() -> None:
    """A 1280x720 PNG served as image/png has no error and reports its size and kind."""
    body = png(1280, 720)
    info = _examine(body, etag='"v1"')
    assert (info.error, info.warning) == (None, None)
    assert (info.kind, info.width, info.height, info.size, info.etag) == (
        "png",
        1280,
        720,
        len(body),
        '"v1"',
    )


def test_html_served_as_an_image_is_named() -> None:
    """A page served with an image type is caught by its signature and called HTML."""
    info = _examine(b"<!DOCTYPE html><html><body>Sign in</body></html>")
    assert info.error is not None and "HTML page" in info.error


def test_a_gif_is_named() -> None:
    """A GIF is refused with a message saying it is a GIF."""
    info = _examine(b"GIF89a" + bytes(30), content_type="image/gif")
    assert info.error is not None and "GIF image" in info.error


@pytest.mark.parametrize("content_type", ["application/octet-stream", "binary/octet-stream", None])
def test_a_generic_type_is_accepted_with_a_warning(content_type: str | None) -> None:
    """A real image served without an image type passes, with a warning to fix the host."""
    info = _examine(png(400, 400), content_type=content_type)
    assert info.error is None
    assert info.warning is not None and "image/png" in info.warning


def test_a_generic_type_without_an_image_signature_fails() -> None:
    """octet-stream is only accepted when the bytes prove an image."""
    info = _examine(b"PK\x03\x04" + bytes(40), content_type="application/octet-stream")
    assert info.error is not None and "not a JPEG, PNG or WebP" in info.error


def test_small_and_misshapen_images_fail_with_both_reasons() -> None:
    """A 100x400 image breaks both size rules, and the message says both."""
    info = _examine(png(100, 400))
    assert info.error is not None
    assert info.error.startswith("is 100x400 px:")
    assert "300 px" in info.error and "1:4.00" in info.error


def test_a_bad_aspect_ratio_is_named() -> None:
    """A 1200x400 image is refused for its 3:1 aspect ratio alone."""
    info = _examine(png(1200, 400))
    assert info.error is not None and "3.00:1" in info.error and "300 px" not in info.error


def test_an_unreadable_header_depends_on_having_the_whole_file() -> None:
    """Cut short, a header is 'not in the first bytes'; whole, the file is damaged."""
    body = jpeg(800, 600, padding=100_000)[:40_000]
    assert "not in its first 40000 bytes" in (_examine(body, complete=False).error or "")
    assert "damaged JPEG" in (_examine(body, complete=True).error or "")


def test_wants_more_only_for_an_image_cut_before_its_header() -> None:
    """A full ranged answer of an image without readable header asks for more; nothing else does."""
    body = jpeg(800, 600, padding=100_000)
    assert wants_more(body[:32768], complete=False, asked=32768)
    assert not wants_more(body[:30000], complete=False, asked=32768)  # the file ended
    assert not wants_more(body[:32768], complete=True, asked=32768)
    assert not wants_more(b"<html>" + bytes(32762), complete=False, asked=32768)
    assert not wants_more(png(400, 400), complete=False, asked=len(png(400, 400)))


def test_tail_with_the_same_aspect_ratio_is_fine() -> None:
    """Different sizes with one aspect ratio share a composition."""
    assert tail_aspect_warning(_ok("a", 1920, 1080), _ok("b", 1280, 720)) is None
    assert tail_aspect_warning(_ok("a", 1000, 1000), _ok("b", 1010, 1000)) is None


def test_tail_with_another_aspect_ratio_warns() -> None:
    """A square tail after a 16:9 start is flagged, with both sizes."""
    warning = tail_aspect_warning(_ok("a", 1920, 1080), _ok("b", 1000, 1000))
    assert warning is not None and "1000x1000" in warning and "1920x1080" in warning


@given(sides, sides, sides, sides)
def test_tail_warning_is_symmetric(w1: int, h1: int, w2: int, h2: int) -> None:
    """Whether start and tail disagree does not depend on which is which."""
    a, b = _ok("a", w1, h1), _ok("b", w2, h2)
    assert (tail_aspect_warning(a, b) is None) == (tail_aspect_warning(b, a) is None)


def _shot(id: str, image: str, tail: str | None = None, line: int = 1) -> Shot:
    return Shot(id=id, prompt="p", image=image, tail_image_url=tail, line=line)


def test_distinct_urls_keeps_manifest_order_and_drops_repeats() -> None:
    """Start and tail URLs are listed once each, first use first."""
    shots = [_shot("a", "u1", "u2"), _shot("b", "u2", "u1"), _shot("c", "u3")]
    assert distinct_urls(shots) == ["u1", "u2", "u3"]


def test_problems_name_file_line_shot_and_field_once_per_shot() -> None:
    """A bad URL used by two shots gives one problem for each, at each shot's line."""
    bad = ImageInfo("https://img/bad", status=404, error="answered HTTP 404 Not Found.")
    good = _ok("https://img/good", 1280, 720)
    shots = (
        _shot("s1", "https://img/bad", line=3),
        _shot("s2", "https://img/good", "https://img/bad", line=7),
        _shot("s3", "https://img/good", line=9),
    )
    manifest = Manifest(path="board.yaml", sha256="0", shots=shots)
    found = problems_for(manifest, {bad.url: bad, good.url: good})
    assert [(p.file, p.line, p.shot, p.field, p.warning) for p in found] == [
        ("board.yaml", 3, "s1", "image", False),
        ("board.yaml", 7, "s2", "tail_image_url", False),
    ]
    assert str(found[0]) == (
        "board.yaml:3: shot s1: image: https://img/bad answered HTTP 404 Not Found."
    )


def test_problems_carry_warnings_and_the_tail_aspect_check() -> None:
    """Warnings come out as warning Problems; the aspect mismatch lands on the tail field."""
    start = _ok("https://img/wide", 1920, 1080)
    tail = _ok("https://img/square", 800, 800)
    odd = ImageInfo("https://img/odd", status=200, kind="png", width=500, height=500, warning="w")
    shots = [_shot("s1", start.url, tail.url, line=2), _shot("s2", odd.url, line=5)]
    found = problems_for(shots, {i.url: i for i in (start, tail, odd)}, file="m.csv")
    assert [(p.line, p.field, p.warning) for p in found] == [
        (2, "tail_image_url", True),
        (5, "image", True),
    ]
    assert "composition" in found[0].message and found[0].file == "m.csv"


def test_problems_skip_unchecked_urls() -> None:
    """A URL that was not checked yields no problem (and no crash)."""
    assert problems_for([_shot("s", "https://img/never")], {}) == []


def test_conditional_headers_carry_every_validator() -> None:
    """ETag goes in If-None-Match, Last-Modified in If-Modified-Since."""
    info = ImageInfo("u", status=200, etag='"x"', last_modified="Wed, 01 Jan 2025 00:00:00 GMT")
    assert conditional_headers(info) == {
        "If-None-Match": '"x"',
        "If-Modified-Since": "Wed, 01 Jan 2025 00:00:00 GMT",
    }
    assert conditional_headers(ImageInfo("u", status=200)) == {}


def test_updated_cache_keeps_what_can_be_revalidated() -> None:
    """Fresh validated answers replace entries, 404s drop them, timeouts leave them."""
    old = {u: ImageInfo(u, status=200, etag='"old"') for u in ("a", "b", "c", "d")}
    results = {
        "a": ImageInfo("a", status=200, etag='"new"'),
        "b": ImageInfo("b", status=404, error="gone"),
        "c": ImageInfo("c", error=timeout_message(1.0)),
        "e": ImageInfo("e", status=200),
    }
    after = updated_cache(old, results)
    assert sorted(after) == ["a", "c", "d"]
    assert after["a"].etag == '"new"' and after["c"].etag == '"old"'


@given(
    st.builds(
        ImageInfo,
        url=st.text(min_size=1),
        status=st.none() | st.integers(100, 599),
        size=st.none() | st.integers(0, 10**9),
        width=st.none() | sides,
        etag=st.none() | st.text(),
        error=st.none() | st.text(),
    )
)
def test_image_info_survives_json(info: ImageInfo) -> None:
    """Whatever is cached reads back equal."""
    assert ImageInfo.from_json(info.to_json()) == info


def test_damaged_cache_entries_are_ignored() -> None:
    """An entry that is not an ImageInfo reads as None rather than raising."""
    assert ImageInfo.from_json([1, 2]) is None
    assert ImageInfo.from_json({"status": 200}) is None


def test_wants_copy_only_for_images_within_limits() -> None:
    """A copy is kept of any image answer up to 10 MB, even one that fails the size rules."""
    assert wants_copy(ImageInfo("u", status=200, kind="png", size=1000, error="is 10x10 px"))
    assert not wants_copy(ImageInfo("u", status=200, kind=None, size=1000))
    assert not wants_copy(ImageInfo("u", status=200, kind="png", size=MAX_BYTES + 1))
    assert not wants_copy(ImageInfo("u", error="timed out"))


def test_copy_name_is_a_stable_hash_with_the_format_extension() -> None:
    """One URL always maps to one 16-hex-digit name; the extension follows the format."""
    name = copy_name("https://img/a.png?x=1", "jpeg")
    assert name == copy_name("https://img/a.png?x=1", "jpeg")
    assert len(name) == len("0123456789abcdef.jpg") and name.endswith(".jpg")
    assert copy_name("https://img/b.png", "jpeg") != name
    assert copy_name("https://img/a.png?x=1", "webp").endswith(".webp")
