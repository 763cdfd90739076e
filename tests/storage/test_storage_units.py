"""The pure parts of uploads: locations and keys, credentials, records, fingerprints, the rule."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from batchkling.emulator.frames import render_frame
from batchkling.manifest.load import build_manifest
from batchkling.manifest.local import is_local_name, local_path
from batchkling.storage.credentials import missing_credentials
from batchkling.storage.images import local_images, with_urls
from batchkling.storage.location import (
    StoreLocation,
    object_key,
    parse_expires,
    parse_location,
    parse_public_url,
    public_url,
)
from batchkling.storage.records import (
    UploadRecord,
    append_records,
    read_records,
    url_usable,
)
from tests.storage.conftest import write_frames

SHA = "ab" * 32


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("s3://frames/ep01/", StoreLocation("s3", "frames", "ep01/")),
        ("s3://frames/ep01", StoreLocation("s3", "frames", "ep01/")),
        ("S3://frames", StoreLocation("s3", "frames", "")),
        ("gs://bucket/a/b/", StoreLocation("gs", "bucket", "a/b/")),
        ("az://container//x//", StoreLocation("az", "container", "x/")),
    ],
)
def test_locations_parse_to_bucket_and_prefix(text: str, expected: StoreLocation) -> None:
    """A location is a bucket and a prefix that is empty or ends in one slash."""
    assert parse_location(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("https://bucket/x", "is not a storage location"),
        ("ftp://bucket/x", "is not a storage location"),
        ("s3:///x", "names no bucket"),
        ("s3://user:pw@bucket/x", "names no bucket"),
        ("s3://bucket/x?a=1", "must not carry a query"),
    ],
)
def test_bad_locations_say_what_to_write(text: str, message: str) -> None:
    """A location that is not s3://, gs:// or az:// with a bucket is refused with the fix."""
    with pytest.raises(ValueError, match=message):
        parse_location(text)


def test_keys_are_content_addressed_and_public_urls_add_the_key() -> None:
    """``<prefix><16 hex>/<name>``; a public URL is the base plus the (quoted) key."""
    location = parse_location("s3://frames/ep01/")
    key = object_key(location, SHA, "s 01.png")
    assert key == "ep01/abababababababab/s 01.png"
    base = parse_public_url("https://cdn.example.com/root")
    assert public_url(base, key) == "https://cdn.example.com/root/ep01/abababababababab/s%2001.png"
    with pytest.raises(ValueError):
        parse_public_url("cdn.example.com/root")


def test_expiry_is_bounded_by_what_stores_sign() -> None:
    """At least a minute, at most the 7 days S3 and GCS signatures allow."""
    assert parse_expires(86400) == timedelta(hours=24)
    for bad in (59, 7 * 86400 + 1):
        with pytest.raises(ValueError):
            parse_expires(bad)


def test_missing_credentials_names_every_way_to_give_them() -> None:
    """No variable and no file: one line naming the variables; any complete set is enough."""
    problem = missing_credentials("s3", set())
    assert problem is not None and "\n" not in problem
    assert "AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY" in problem and "AWS_PROFILE" in problem
    assert missing_credentials("s3", {"AWS_ACCESS_KEY_ID"}) is not None  # half a pair
    assert missing_credentials("s3", {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}) is None
    assert missing_credentials("s3", set(), credential_file=True) is None
    assert "GOOGLE_APPLICATION_CREDENTIALS" in (missing_credentials("gs", set()) or "")
    assert missing_credentials("gs", {"GOOGLE_APPLICATION_CREDENTIALS"}) is None
    assert "AZURE_STORAGE_ACCOUNT_KEY" in (missing_credentials("az", set()) or "")


def _record(expires_at: str | None, **changes: str) -> UploadRecord:
    base = UploadRecord(
        at="2026-12-01T00:00:00.000Z",
        event="uploaded",
        path="/frames/a.png",
        sha256=SHA,
        store="s3://frames",
        key="ep01/abababababababab/a.png",
        url="https://example.com/a.png?sig",
        expires_at=expires_at,
    )
    return replace(base, **changes)


def test_a_signed_url_is_reused_only_while_half_its_validity_is_left() -> None:
    """24 h asked: a URL with 13 h left is reused, one with 11 h left is signed again."""
    now = datetime(2026, 12, 2, tzinfo=timezone.utc)
    day = timedelta(hours=24)
    assert url_usable(_record("2026-12-02T13:00:00.000Z"), now=now, validity=day)
    assert not url_usable(_record("2026-12-02T11:00:00.000Z"), now=now, validity=day)
    assert url_usable(_record(None), now=now, validity=day)  # a public URL never expires


def test_records_survive_a_torn_last_line(tmp_path: Path) -> None:
    """A crash mid-line loses that line only; the next append starts on a line of its own."""
    append_records(tmp_path, [_record(None)])
    with (tmp_path / "uploads.jsonl").open("a") as stream:
        stream.write('{"at": "2026-12-0')
    append_records(tmp_path, [_record(None, path="/frames/b.png")])
    assert [r.path for r in read_records(tmp_path)] == ["/frames/a.png", "/frames/b.png"]


@pytest.mark.parametrize(
    ("value", "base", "local"),
    [
        ("frames/s01.png", None, True),
        ("./s01.png", None, True),
        ("/abs/s01.png", None, True),
        ("~/s01.png", None, True),
        ("file:///abs/s01.png", None, True),
        ("file:///abs/s01.png", "https://cdn.example.com/", True),
        ("frames/s01.png", "https://cdn.example.com/", False),
        ("https://cdn.example.com/s01.png", None, False),
    ],
)
def test_the_local_name_rule(value: str, base: str | None, local: bool) -> None:
    """file: is always local; without a base URL, so is every name without a scheme."""
    assert is_local_name(value, base=base) is local


def test_local_paths_resolve_against_the_manifest_directory(tmp_path: Path) -> None:
    """Relative names and relative file: URLs are under the manifest's directory; ~ is home."""
    assert local_path("frames/a.png", tmp_path) == tmp_path / "frames" / "a.png"
    assert local_path("file:frames/a%20b.png", tmp_path) == tmp_path / "frames" / "a b.png"
    assert local_path("~/a.png", tmp_path) == Path.home() / "a.png"


def test_the_fingerprint_is_the_content_not_the_url(tmp_path: Path) -> None:
    """Uploading or re-signing changes no fingerprint; editing the file changes it."""
    write_frames(tmp_path / "frames", ["a", "b"])
    body = (
        b"version: 1\nupload_to: s3://frames/\nshots:\n"
        b"  - {id: s1, prompt: p, image: frames/a.png, tail_image_url: frames/b.png}\n"
    )
    manifest = build_manifest(body, file="m.yaml", directory=tmp_path)
    job = manifest.jobs[0]
    assert job.shot.image == (tmp_path / "frames" / "a.png").as_uri()
    urls = {
        i.source: f"https://x.example.com/{i.path.name}?sig=1" for i in local_images(manifest.shots)
    }
    uploaded = with_urls(manifest, urls).jobs[0]
    assert uploaded.request_input()["image"] == "https://x.example.com/a.png?sig=1"
    assert uploaded.request_input()["tail_image_url"] == "https://x.example.com/b.png?sig=1"
    resigned = with_urls(manifest, {k: v.replace("sig=1", "sig=2") for k, v in urls.items()})
    assert uploaded.fingerprint == job.fingerprint == resigned.jobs[0].fingerprint
    (tmp_path / "frames" / "a.png").write_bytes(render_frame("a, edited"))
    edited = build_manifest(body, file="m.yaml", directory=tmp_path).jobs[0]
    assert edited.fingerprint != job.fingerprint


def test_a_csv_manifest_names_local_files_and_takes_upload_to_from_the_flag(
    tmp_path: Path,
) -> None:
    """CSV rows resolve local names the same way; upload_to comes from --upload-to."""
    write_frames(tmp_path, ["a"])
    body = b"id,prompt,image\ns1,p,a.png\n"
    manifest = build_manifest(
        body, file="m.csv", csv=True, directory=tmp_path, upload_to="gs://b/x", require_upload=True
    )
    assert manifest.upload_to == "gs://b/x/" and manifest.has_local_images
    assert [i.path for i in local_images(manifest.shots)] == [tmp_path / "a.png"]
