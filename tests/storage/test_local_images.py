"""Local image files: validated, checked, uploaded to a real S3-protocol server once, rendered.

Every test runs the real command line against moto's S3 server on loopback (the
``s3`` fixture) and, for ``run``, the emulator over HTTP with ``--fetch-images``
on, so a create succeeds only if the provider could fetch the uploaded image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from batchkling.emulator.frames import render_frame
from batchkling.storage.records import UPLOADS_FILE
from tests.runner_helpers import FAST, run_cli, status_json
from tests.storage.conftest import ACCESS_KEY, SECRET_KEY, S3Server, write_frames

GEN = (0.05, 0.2)


@pytest.fixture(autouse=True)
def _api_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SJINN_API_KEY", "test-key")


def _manifest(
    directory: Path, images: list[str], *, upload_to: str | None = "s3://frames/ep01/"
) -> Path:
    lines = ["version: 1", "name: local"]
    if upload_to is not None:
        lines.append(f"upload_to: {upload_to}")
    lines.append("shots:")
    for i, image in enumerate(images, start=1):
        lines += [f"  - id: s{i:02d}", f"    prompt: shot {i} turns", f"    image: {image}"]
    path = directory / "board.yaml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _records(manifest: Path) -> list[dict[str, Any]]:
    path = manifest.parent / "board.run" / UPLOADS_FILE
    return [json.loads(line) for line in path.read_text().splitlines()]


def _run(manifest: Path, base_url: str, *extra: str) -> Any:
    return run_cli("run", str(manifest), "--api-base", base_url, *FAST, *extra)


def test_missing_file_is_named_with_shot_and_line(tmp_path: Path) -> None:
    """validate names the shot, the line and the resolved path of a local file that is not there."""
    manifest = _manifest(tmp_path, ["frames/nope.png"])
    res = run_cli("validate", str(manifest))
    assert res.code == 2
    assert (
        f"{manifest}:7: shot s01: image: 'frames/nope.png' is a local file that does not exist"
        in res.err
    )
    assert str(tmp_path / "frames" / "nope.png") in res.err


def test_directory_is_refused(tmp_path: Path) -> None:
    """A directory named as an image is one problem at its line, not a traceback."""
    (tmp_path / "frames").mkdir()
    res = run_cli("validate", str(_manifest(tmp_path, ["frames"])))
    assert res.code == 2
    assert "shot s01: image: 'frames' is a directory" in res.err
    assert "Traceback" not in res.err


def test_local_image_without_upload_to_says_how_to_fix(tmp_path: Path) -> None:
    """A local image with nowhere to go is an error naming upload_to and --upload-to."""
    write_frames(tmp_path / "frames", ["s01"])
    manifest = _manifest(tmp_path, ["frames/s01.png"], upload_to=None)
    res = run_cli("validate", str(manifest))
    assert res.code == 2
    assert "shot s01: image: names a file on this machine" in res.err
    assert "upload_to: s3://BUCKET/PREFIX/" in res.err and "--upload-to" in res.err
    ok = run_cli("validate", str(manifest), "--upload-to", "s3://frames/ep01/")
    assert ok.code == 0, ok.err


def test_bad_image_is_caught_before_anything_is_uploaded(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """A frame too small for Kling stops run and upload before any request to the store."""
    write_frames(tmp_path / "frames", ["s01"])
    (tmp_path / "frames" / "tiny.png").write_bytes(render_frame("tiny", 200, 120))
    manifest = _manifest(tmp_path, ["frames/s01.png", "frames/tiny.png"])
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    res = _run(manifest, emulator.base_url)
    assert res.code == 2
    assert f"{tmp_path / 'frames' / 'tiny.png'} is 200x120 px" in res.err
    up = run_cli("upload", str(manifest))
    assert up.code == 2 and "200x120 px" in up.err
    assert s3.count("PUT") == 0 and s3.count("HEAD") == 0 and s3.objects() == []
    assert emulator.stats()["tasks_created"] == 0


def test_same_frame_in_five_shots_is_uploaded_once(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """Five shots of one frame: one object, one PUT, five videos made from the fetched URL."""
    write_frames(tmp_path / "frames", ["hero"])
    manifest = _manifest(tmp_path, ["frames/hero.png"] * 4 + ["./frames/hero.png"])
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    res = _run(manifest, emulator.base_url)
    assert res.code == 0, res.err
    assert s3.count("PUT") == 1 and len(s3.objects()) == 1
    key = s3.objects()[0]
    assert key.startswith("ep01/") and key.endswith("/hero.png") and len(key.split("/")[1]) == 16
    assert [r["event"] for r in _records(manifest)] == ["uploaded"]
    stats = emulator.stats()
    assert stats["tasks_created"] == 5 and stats["faults"].get("image_unfetchable", 0) == 0
    assert {j["state"] for j in status_json(manifest)["jobs"]} == {"done"}


def test_resume_resigns_an_expired_url_and_uploads_nothing(s3: S3Server, tmp_path: Path) -> None:
    """A recorded URL past its time is signed again; the object is neither asked about nor put."""
    write_frames(tmp_path / "frames", ["s01", "s02"])
    manifest = _manifest(tmp_path, ["frames/s01.png", "frames/s02.png"])
    first = run_cli("upload", str(manifest), "--json")
    assert first.code == 0, first.err
    assert s3.count("PUT") == 2
    s01 = next(r for r in _records(manifest) if r["path"].endswith("s01.png"))
    log = manifest.parent / "board.run" / UPLOADS_FILE
    with log.open("a") as stream:
        stream.write(json.dumps(dict(s01, expires_at="2020-01-01T00:00:00.000Z")) + "\n")
    again = run_cli("upload", str(manifest), "--json")
    assert again.code == 0, again.err
    events = {Path(i["path"]).name: i["event"] for i in json.loads(again.out)["images"]}
    assert events == {"s01.png": "signed", "s02.png": "reused"}
    assert s3.count("PUT") == 2 and s3.count("HEAD") == 2  # both from the first upload only
    assert _records(manifest)[-1]["event"] == "signed"
    assert _records(manifest)[-1]["expires_at"] > "2026"


def test_changed_file_is_uploaded_again_and_reported(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """Editing a frame: a new object, the upload says it changed, the job is a changed entry."""
    write_frames(tmp_path / "frames", ["s01", "s02"])
    manifest = _manifest(tmp_path, ["frames/s01.png", "frames/s02.png"])
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    assert _run(manifest, emulator.base_url).code == 0
    (tmp_path / "frames" / "s01.png").write_bytes(render_frame("s01-edited"))
    res = run_cli(
        "run", str(manifest), "--api-base", emulator.base_url, *FAST[:-1], "--rerender-changed"
    )
    assert res.code == 0, res.err
    frame = str(tmp_path / "frames" / "s01.png")
    assert f"changed since their last upload: {frame}" in res.err
    assert s3.count("PUT") == 3 and len(s3.objects()) == 3
    assert emulator.stats()["tasks_created"] == 3  # s01 rendered again, s02 left alone
    unchanged = run_cli("run", str(manifest), "--api-base", emulator.base_url, *FAST)
    assert unchanged.code == 0 and emulator.stats()["tasks_created"] == 3


def test_edited_file_is_a_changed_entry_without_rerender(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """Without --rerender-changed an edited frame is reported as a changed entry and not sent."""
    write_frames(tmp_path / "frames", ["s01"])
    manifest = _manifest(tmp_path, ["frames/s01.png"])
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    assert _run(manifest, emulator.base_url).code == 0
    (tmp_path / "frames" / "s01.png").write_bytes(render_frame("s01-edited"))
    res = run_cli("run", str(manifest), "--api-base", emulator.base_url, *FAST[:-1])
    assert "s01: the manifest entry changed since it was sent" in res.err
    assert emulator.stats()["tasks_created"] == 1 and s3.count("PUT") == 1


def test_missing_credentials_is_one_line_naming_the_variables(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_emulator_factory: Any
) -> None:
    """No AWS credentials: exit 2 with one line naming the variables; nothing sent anywhere."""
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    write_frames(tmp_path / "frames", ["s01"])
    manifest = _manifest(tmp_path, ["frames/s01.png"])
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    for res in (run_cli("upload", str(manifest)), _run(manifest, emulator.base_url)):
        assert res.code == 2
        lines = res.err.strip().splitlines()
        assert len(lines) == 1, res.err
        assert "AWS_ACCESS_KEY_ID + AWS_SECRET_ACCESS_KEY" in lines[0] and "AWS_PROFILE" in lines[0]
    assert emulator.stats()["tasks_created"] == 0 and s3.count("PUT") == 0


def test_store_down_is_retried_then_a_clear_error_and_nothing_created(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """The store refusing connections: retried, then exit 2 with one error; no create sent."""
    write_frames(tmp_path / "frames", ["s01", "s02"])
    manifest = _manifest(tmp_path, ["frames/s01.png", "frames/s02.png"])
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    s3.stop()
    res = run_cli("run", str(manifest), "--api-base", emulator.base_url, *FAST[:-1])
    assert res.code == 2
    assert "the store failed; trying again" in res.err
    error = [line for line in res.err.splitlines() if line.startswith("batchkling: error:")]
    assert len(error) == 1 and "after 5 tries" in error[0] and "nothing was created" in error[0]
    assert emulator.stats()["tasks_created"] == 0
    assert status_json(manifest)["counts"].get("pending") == 2


def test_check_and_plan_never_upload(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """check judges the local files and plan prices them; neither sends a byte to the store."""
    write_frames(tmp_path / "frames", ["s01"])
    manifest = _manifest(tmp_path, ["frames/s01.png"])
    emulator = live_emulator_factory(gen_seconds=GEN)
    checked = run_cli("check", str(manifest), "--api-base", emulator.base_url)
    assert checked.code == 0, checked.err
    assert run_cli("plan", str(manifest)).code == 0
    assert sum(s3.requests.values()) == 0 and s3.objects() == []
    copies = list((tmp_path / "board.run" / "images").iterdir())
    assert (
        len(copies) == 1
        and copies[0].read_bytes() == (tmp_path / "frames" / "s01.png").read_bytes()
    )


def test_no_secret_in_any_output_or_file(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_emulator_factory: Any
) -> None:
    """The secret access key appears in no output of any command and no file of the run."""
    write_frames(tmp_path / "frames", ["s01"])
    manifest = _manifest(tmp_path, ["frames/s01.png"])
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    outputs = [
        run_cli("validate", str(manifest)),
        run_cli("plan", str(manifest)),
        run_cli("check", str(manifest), "--api-base", emulator.base_url),
        run_cli("upload", str(manifest)),
        run_cli("upload", str(manifest), "--json"),
        _run(manifest, emulator.base_url),
        run_cli("status", str(manifest)),
        run_cli("report", str(manifest)),
    ]
    s3.stop()  # an error message from a store that is down must not carry it either
    (tmp_path / "frames" / "s01.png").write_bytes(render_frame("other"))
    outputs.append(run_cli("upload", str(manifest)))
    assert outputs[-1].code == 2
    for res in outputs:
        assert SECRET_KEY not in res.out + res.err
    for path in (tmp_path / "board.run").rglob("*"):
        if path.is_file():
            assert SECRET_KEY.encode() not in path.read_bytes(), path
    assert ACCESS_KEY in _records(manifest)[0]["url"]  # the key id, as every signed URL names it


def test_public_url_is_the_base_plus_the_key_and_is_checked(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """With upload_public_url nothing is signed; a base that does not serve the bucket stops all."""
    write_frames(tmp_path / "frames", ["s01"])
    manifest = _manifest(tmp_path, ["frames/s01.png"])
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    wrong = run_cli("run", str(manifest), "--api-base", emulator.base_url, *FAST[:-1],
                    "--upload-public-url", s3.endpoint + "/elsewhere/")  # fmt: skip
    assert wrong.code == 2
    assert "but its public URL answers HTTP 404" in wrong.err and "nothing was created" in wrong.err
    assert emulator.stats()["tasks_created"] == 0
    s3.make_public()
    res = _run(manifest, emulator.base_url, "--upload-public-url", s3.endpoint + "/frames/")
    assert res.code == 0, res.err
    last = _records(manifest)[-1]
    assert last["url"] == f"{s3.endpoint}/frames/{last['key']}" and last["expires_at"] is None
    assert emulator.stats()["tasks_created"] == 1 and s3.count("PUT") == 1


def test_without_the_storage_extra_one_line_names_the_install(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No obstore: exit 2, one line naming pip install 'batchkling[storage]'."""
    import sys

    monkeypatch.setitem(sys.modules, "obstore.store", None)  # import fails as if not installed
    write_frames(tmp_path / "frames", ["s01"])
    res = run_cli("upload", str(_manifest(tmp_path, ["frames/s01.png"])))
    assert res.code == 2
    assert res.err.strip().splitlines() == [
        "batchkling: error: uploading local images to s3://frames/ep01/ needs the obstore "
        "library. Install it with: pip install 'batchkling[storage]'"
    ]


def test_a_finished_run_resumes_without_credentials_or_store(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_emulator_factory: Any
) -> None:
    """Every job done: running again needs no credentials and asks the store nothing."""
    write_frames(tmp_path / "frames", ["s01"])
    manifest = _manifest(tmp_path, ["frames/s01.png"])
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=GEN)
    assert _run(manifest, emulator.base_url).code == 0
    before = sum(s3.requests.values())
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    again = _run(manifest, emulator.base_url)
    assert again.code == 0, again.err
    assert sum(s3.requests.values()) == before and emulator.stats()["tasks_created"] == 1


def test_check_applies_the_tail_rule_to_local_frames(
    s3: S3Server, tmp_path: Path, live_emulator_factory: Any
) -> None:
    """A local tail frame of another shape than its start frame is warned about, by path."""
    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "start.png").write_bytes(render_frame("start", 640, 360))
    (frames / "tall.png").write_bytes(render_frame("tall", 360, 640))
    manifest = tmp_path / "board.yaml"
    manifest.write_text(
        "version: 1\nupload_to: s3://frames/ep01/\nshots:\n"
        "  - {id: s01, prompt: p, image: frames/start.png, tail_image_url: frames/tall.png}\n"
    )
    emulator = live_emulator_factory(gen_seconds=GEN)
    res = run_cli("check", str(manifest), "--api-base", emulator.base_url)
    assert res.code == 0, res.err
    assert "shot s01: tail_image_url: warning: the tail image is 360x640" in res.err
    assert sum(s3.requests.values()) == 0
