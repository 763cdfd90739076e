"""Pre-flight image checks against a loopback image host the tests start."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from batchkling.model import Shot
from batchkling.preflight.image_fetch import CACHE_FILE, check_images, local_copy_path
from batchkling.preflight.image_rules import ImageInfo, problems_for
from tests.image_server import ImageHost, Resource, jpeg, png, serve, webp

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def running_host() -> Iterator[ImageHost]:
    with serve(ImageHost()) as host:
        yield host


@pytest.fixture
def host(running_host: ImageHost) -> ImageHost:
    running_host.reset()
    return running_host


def _shots(*urls: str) -> list[Shot]:
    return [Shot(id=f"s{i}", prompt="p", image=u, line=i) for i, u in enumerate(urls, 1)]


async def _check(
    shots: list[Shot], cache_dir: Path | None = None, **kw: Any
) -> dict[str, ImageInfo]:
    kw.setdefault("keep_copies", False)
    async with httpx.AsyncClient() as client:
        return await check_images(shots, client=client, cache_dir=cache_dir, **kw)


async def _one(host: ImageHost, name: str, **kw: Any) -> ImageInfo:
    url = host.url(name)
    return (await _check(_shots(url), **kw))[url]


def _sent(host: ImageHost, name: str | None = None) -> list[tuple[str, str | None]]:
    return [(s.method, s.headers.get("range")) for s in host.requests(name)]


async def test_good_png_jpeg_and_webp_pass(host: ImageHost) -> None:
    """Each accepted format passes, with its kind and size read from the header."""
    host.resources["a.png"] = Resource(png(1280, 720))
    host.resources["b.jpg"] = Resource(jpeg(1920, 1080), content_type="image/jpeg")
    host.resources["c.webp"] = Resource(webp(720, 1280), content_type="image/webp")
    urls = [host.url(n) for n in ("a.png", "b.jpg", "c.webp")]
    infos = await _check(_shots(*urls))
    assert [(i.error, i.kind, i.width, i.height) for i in infos.values()] == [
        (None, "png", 1280, 720),
        (None, "jpeg", 1920, 1080),
        (None, "webp", 720, 1280),
    ]
    assert list(infos) == urls


async def test_first_check_sends_head_then_a_small_ranged_get(host: ImageHost) -> None:
    """Without copies: HEAD, then GET of the first 32 KiB only, even of a 300 KB file."""
    host.resources["big.png"] = Resource(png(800, 600, noise=300_000))
    info = await _one(host, "big.png")
    assert info.error is None and info.size == len(host.resources["big.png"].body)
    assert _sent(host) == [("HEAD", None), ("GET", "bytes=0-32767")]
    assert host.requests()[1].status == 206 and host.requests()[1].sent == 32768


async def test_each_distinct_url_is_fetched_once(host: ImageHost) -> None:
    """A URL used as start and tail by several shots costs one HEAD and one GET."""
    host.resources["a.png"] = Resource(png(640, 480))
    url = host.url("a.png")
    shots = [
        Shot(id="s1", prompt="p", image=url, line=1),
        Shot(id="s2", prompt="p", image=url, tail_image_url=url, line=2),
        Shot(id="s3", prompt="p", image=url, line=3),
    ]
    infos = await _check(shots)
    assert list(infos) == [url]
    assert _sent(host) == [("HEAD", None), ("GET", "bytes=0-32767")]


async def test_a_404_fails_on_head_alone(host: ImageHost) -> None:
    """A missing image is reported from its HEAD answer, with no GET."""
    info = await _one(host, "missing.png")
    assert info.status == 404 and info.error is not None
    assert "answered HTTP 404 Not Found" in info.error
    assert _sent(host) == [("HEAD", None)]


async def test_an_html_page_fails_on_head_alone(host: ImageHost) -> None:
    """A 200 text/html answer (a login page) is refused without downloading it."""
    host.resources["page"] = Resource(b"<html>Sign in</html>", content_type="text/html")
    info = await _one(host, "page")
    assert info.error is not None and "content type text/html" in info.error
    assert _sent(host) == [("HEAD", None)]


async def test_html_behind_an_image_type_is_caught_by_its_signature(host: ImageHost) -> None:
    """A page served as image/png is refused as HTML after the GET."""
    host.resources["fake.png"] = Resource(b"<!doctype html><p>404</p>" + bytes(100))
    info = await _one(host, "fake.png")
    assert info.error is not None and "HTML page" in info.error


async def test_a_too_small_image_fails(host: ImageHost) -> None:
    """An image under 300 px on a side is refused with its size."""
    host.resources["tiny.png"] = Resource(png(200, 150))
    info = await _one(host, "tiny.png")
    assert info.error is not None and "200x150" in info.error and "300 px" in info.error


async def test_a_bad_aspect_ratio_fails(host: ImageHost) -> None:
    """A 3:1 panorama is refused for its aspect ratio."""
    host.resources["pano.jpg"] = Resource(jpeg(1500, 500), content_type="image/jpeg")
    info = await _one(host, "pano.jpg")
    assert info.error is not None and "3.00:1" in info.error


async def test_a_too_large_image_fails_on_head_alone(host: ImageHost) -> None:
    """A HEAD declaring 12 MB rules the image out before any byte is fetched."""
    host.resources["huge.png"] = Resource(png(4000, 3000), length=12_000_000)
    info = await _one(host, "huge.png")
    assert info.error is not None and "12.0 MB" in info.error and "at most 10 MB" in info.error
    assert _sent(host) == [("HEAD", None)]


async def test_a_too_large_image_is_measured_from_content_range(host: ImageHost) -> None:
    """Without HEAD, the total in a 206's Content-Range condemns a 12 MB file, read no further."""
    host.resources["huge.png"] = Resource(png(4000, 3000), length=12_000_000, head=False)
    info = await _one(host, "huge.png")
    assert info.error is not None and "12.0 MB" in info.error
    assert _sent(host) == [("HEAD", None), ("GET", "bytes=0-32767")]
    assert host.requests()[1].sent <= 32768


async def test_head_supplies_the_size_a_ranged_answer_leaves_out(host: ImageHost) -> None:
    """A 206 with an unknown total (``/*``) takes the file size from the HEAD answer."""
    body = png(640, 480, noise=50_000)
    host.resources["a.png"] = Resource(body, total_known=False)
    info = await _one(host, "a.png")
    assert info.ok and info.size == len(body)
    assert host.requests()[1].status == 206


async def test_a_host_refusing_head_is_checked_with_get(host: ImageHost) -> None:
    """A 405 to HEAD falls back to the ranged GET, which decides."""
    host.resources["nohead.png"] = Resource(png(640, 640), head=False)
    info = await _one(host, "nohead.png")
    assert info.error is None and (info.width, info.height) == (640, 640)
    assert [s.status for s in host.requests()] == [405, 206]


async def test_a_host_ignoring_range_is_read_only_as_far_as_needed(host: ImageHost) -> None:
    """A 200 to a ranged GET is dropped once the header is read, not downloaded whole."""
    body = png(1024, 768, noise=2_000_000)
    host.resources["norange.png"] = Resource(body, ranges=False, pause=0.01)
    info = await _one(host, "norange.png")
    assert info.error is None and info.status == 200 and info.size == len(body)
    get = host.requests()[1]
    assert get.status == 200 and get.sent < 256 * 1024 < len(body)


async def test_a_header_deep_in_the_file_is_fetched_in_growing_ranges(host: ImageHost) -> None:
    """A JPEG whose frame header sits 100 KB in needs a second, larger range, and no more."""
    host.resources["exif.jpg"] = Resource(
        jpeg(1600, 900, padding=100_000), content_type="image/jpeg"
    )
    info = await _one(host, "exif.jpg")
    assert info.error is None and (info.width, info.height) == (1600, 900)
    assert _sent(host) == [("HEAD", None), ("GET", "bytes=0-32767"), ("GET", "bytes=0-262143")]


async def test_a_slow_server_times_out_with_a_clear_message(host: ImageHost) -> None:
    """A host that does not answer within the timeout is reported as such, promptly."""
    host.resources["slow.png"] = Resource(png(640, 480), delay=5)
    started = time.monotonic()
    info = await _one(host, "slow.png", timeout=0.3)
    assert time.monotonic() - started < 2
    assert info.error is not None and info.error.startswith("timed out after 0.3s")
    assert _sent(host) == [("HEAD", None)]


async def test_a_trickling_body_times_out_too(host: ImageHost) -> None:
    """A host that answers at once but sends a few bytes at a time hits the same timeout."""
    host.resources["drip.png"] = Resource(png(640, 480), piece=4, pause=0.2)
    started = time.monotonic()
    info = await _one(host, "drip.png", timeout=0.3)
    assert time.monotonic() - started < 2
    assert info.error is not None and info.error.startswith("timed out after 0.3s")


async def test_an_unreachable_host_is_reported_not_raised(host: ImageHost) -> None:
    """A refused connection becomes an error on the image, not an exception."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/a.png"
    info = (await _check(_shots(url)))[url]
    assert info.status is None and info.error is not None and "could not be fetched" in info.error


async def test_a_tail_with_another_aspect_ratio_gets_a_warning(host: ImageHost) -> None:
    """Start 16:9, tail square: both pass, and the shot gets a warning on its tail."""
    host.resources["wide.png"] = Resource(png(1280, 720))
    host.resources["square.png"] = Resource(png(720, 720))
    shot = Shot(
        id="s1",
        prompt="p",
        image=host.url("wide.png"),
        tail_image_url=host.url("square.png"),
        line=4,
    )
    infos = await _check([shot])
    assert all(i.ok for i in infos.values())
    found = problems_for([shot], infos, file="m.yaml")
    assert [(p.line, p.field, p.warning) for p in found] == [(4, "tail_image_url", True)]


async def test_concurrency_stays_within_max_parallel(host: ImageHost) -> None:
    """Twelve URLs checked three at a time never put more than three requests in flight."""
    host.resources["a.png"] = Resource(png(400, 400), delay=0.05)
    urls = [host.url(f"a.png?n={i}") for i in range(12)]
    infos = await _check(_shots(*urls), max_parallel=3)
    assert all(i.ok for i in infos.values()) and len(host.requests()) == 24
    assert 2 <= host.max_in_flight <= 3


async def test_on_request_is_awaited_before_every_request(host: ImageHost) -> None:
    """The caller's hook runs once per request the host sees."""
    host.resources["a.png"] = Resource(png(640, 480))
    host.resources["b.png"] = Resource(png(640, 480), head=False)
    calls = []

    async def hook() -> None:
        calls.append(len(host.requests()))

    await _check(_shots(host.url("a.png"), host.url("b.png")), on_request=hook)
    assert len(calls) == len(host.requests()) == 4


async def test_second_check_sends_only_conditional_requests(
    host: ImageHost, tmp_path: Path
) -> None:
    """Unchanged images are revalidated with one conditional ranged GET each, answered 304."""
    host.resources["a.png"] = Resource(png(1280, 720))
    host.resources["small.png"] = Resource(png(100, 100))
    host.resources["huge.png"] = Resource(png(4000, 3000), length=12_000_000)
    shots = _shots(*(host.url(n) for n in ("a.png", "small.png", "huge.png")))
    first = await _check(shots, tmp_path)
    assert len(host.requests()) == 5  # two HEAD+GET pairs, and a HEAD that settled huge.png
    host.seen.clear()
    second = await _check(shots, tmp_path)
    assert second == first
    assert [(s.method, s.status) for s in host.requests()] == [("GET", 304)] * 3
    for seen in host.requests():
        assert seen.headers["if-none-match"] == host.resources[seen.path].etag
        assert "if-modified-since" in seen.headers
        assert seen.headers["range"] == "bytes=0-32767"


async def test_a_changed_image_is_judged_afresh_in_the_same_request(
    host: ImageHost, tmp_path: Path
) -> None:
    """When the ETag no longer matches, the one conditional GET brings the new image."""
    host.resources["a.png"] = Resource(png(1280, 720))
    shots = _shots(host.url("a.png"))
    await _check(shots, tmp_path)
    host.resources["a.png"] = Resource(png(100, 100))
    host.seen.clear()
    info = (await _check(shots, tmp_path))[host.url("a.png")]
    assert info.error is not None and "100x100" in info.error
    assert [(s.method, s.status) for s in host.requests()] == [("GET", 206)]
    cached = json.loads((tmp_path / CACHE_FILE).read_text())["images"][host.url("a.png")]
    assert cached["etag"] == host.resources["a.png"].etag and cached["width"] == 100


async def test_last_modified_alone_is_enough_to_revalidate(host: ImageHost, tmp_path: Path) -> None:
    """A cached Last-Modified without ETag is sent as If-Modified-Since and earns a 304."""
    host.resources["a.png"] = Resource(png(640, 480))
    shots = _shots(host.url("a.png"))
    await _check(shots, tmp_path)
    path = tmp_path / CACHE_FILE
    data = json.loads(path.read_text())
    data["images"][host.url("a.png")]["etag"] = None
    path.write_text(json.dumps(data))
    host.seen.clear()
    info = (await _check(shots, tmp_path))[host.url("a.png")]
    assert info.ok
    assert [(s.status, "if-none-match" in s.headers) for s in host.requests()] == [(304, False)]


async def test_without_validators_every_check_starts_over(host: ImageHost, tmp_path: Path) -> None:
    """A host that sends neither ETag nor Last-Modified gets HEAD and GET every time."""
    host.resources["a.png"] = Resource(png(640, 480), validators=False)
    shots = _shots(host.url("a.png"))
    await _check(shots, tmp_path)
    await _check(shots, tmp_path)
    assert _sent(host) == [("HEAD", None), ("GET", "bytes=0-32767")] * 2
    assert json.loads((tmp_path / CACHE_FILE).read_text())["images"] == {}


async def test_cache_file_is_versioned_json_keyed_by_url(host: ImageHost, tmp_path: Path) -> None:
    """images.json holds each result under its URL, written without leftovers."""
    host.resources["a.png"] = Resource(png(640, 480))
    url = host.url("a.png")
    await _check(_shots(url), tmp_path)
    data = json.loads((tmp_path / CACHE_FILE).read_text())
    assert data["version"] == 1
    entry = data["images"][url]
    assert (entry["url"], entry["width"], entry["height"], entry["kind"]) == (url, 640, 480, "png")
    assert entry["etag"] == host.resources["a.png"].etag and entry["last_modified"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [CACHE_FILE]


async def test_local_copies_are_kept_and_revalidated(host: ImageHost, tmp_path: Path) -> None:
    """With copies: one full GET saves the file; next time one conditional GET suffices."""
    body = jpeg(1280, 720, padding=50_000)
    host.resources["a.jpg"] = Resource(body, content_type="image/jpeg")
    url = host.url("a.jpg")
    first = await _check(_shots(url), tmp_path, keep_copies=True)
    assert first[url].ok
    assert [(s.method, s.headers.get("range"), s.status) for s in host.requests()] == [
        ("HEAD", None, 200),
        ("GET", None, 200),
    ]
    copy = local_copy_path(tmp_path, url)
    assert copy is not None and copy.suffix == ".jpg" and copy.read_bytes() == body
    assert copy.parent == tmp_path / "images"
    host.seen.clear()
    second = await _check(_shots(url), tmp_path, keep_copies=True)
    assert second == first
    assert [(s.method, s.headers.get("range"), s.status) for s in host.requests()] == [
        ("GET", None, 304)
    ]


async def test_a_missing_copy_is_fetched_again(host: ImageHost, tmp_path: Path) -> None:
    """A deleted local copy is not revalidated but downloaded again in full."""
    host.resources["a.png"] = Resource(png(640, 480))
    url = host.url("a.png")
    await _check(_shots(url), tmp_path, keep_copies=True)
    copy = local_copy_path(tmp_path, url)
    assert copy is not None
    copy.unlink()
    host.seen.clear()
    await _check(_shots(url), tmp_path, keep_copies=True)
    assert [(s.method, "if-none-match" in s.headers) for s in host.requests()] == [
        ("HEAD", False),
        ("GET", False),
    ]
    assert local_copy_path(tmp_path, url) == copy


async def test_no_copy_of_what_is_not_an_image(host: ImageHost, tmp_path: Path) -> None:
    """A page behind an image type is dropped at its first bytes and never saved."""
    host.resources["fake.png"] = Resource(b"<html>" + bytes(200_000), pause=0.01)
    url = host.url("fake.png")
    info = (await _check(_shots(url), tmp_path, keep_copies=True))[url]
    assert info.error is not None and "HTML page" in info.error
    assert local_copy_path(tmp_path, url) is None
    assert host.requests()[1].sent < 100_000


async def test_a_copy_that_misses_its_deadline_is_not_kept(host: ImageHost, tmp_path: Path) -> None:
    """A slow download past the header keeps the verdict but no half-written copy."""
    body = png(640, 480, noise=400_000)
    host.resources["slow.png"] = Resource(body, pause=0.05)
    url = host.url("slow.png")
    info = (await _check(_shots(url), tmp_path, keep_copies=True, timeout=2, copy_timeout=0.2))[url]
    assert info.ok and (info.width, info.height) == (640, 480)
    assert local_copy_path(tmp_path, url) is None
    assert not (tmp_path / "images").exists() or list((tmp_path / "images").iterdir()) == []


async def test_without_a_cache_dir_nothing_is_written(host: ImageHost, tmp_path: Path) -> None:
    """cache_dir=None checks the images and keeps neither cache nor copies."""
    host.resources["a.png"] = Resource(png(640, 480))
    info = await _one(host, "a.png", keep_copies=True)
    assert info.ok
    assert _sent(host) == [("HEAD", None), ("GET", "bytes=0-32767")]
