"""Chained shots in a manifest: both spellings, and the problems validate names with their lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batchkling.errors import ManifestError
from batchkling.manifest.load import load_manifest
from tests.runner_helpers import run_cli

HEAD = "version: 1\nupload_to: s3://frames/ep01/\nimage_base_url: https://img.example/\nshots:\n"


def _yaml(tmp_path: Path, body: str, head: str = HEAD) -> Path:
    path = tmp_path / "board.yaml"
    path.write_text(head + body, encoding="utf-8")
    return path


def _shot(sid: str, image: str, tail: str | None = None) -> str:
    text = f"  - id: {sid}\n    prompt: {sid} moves\n    image: {image}\n"
    return text + (f"    tail_image_url: {tail}\n" if tail else "")


def test_yaml_mapping_and_csv_cell_give_the_same_chain(tmp_path: Path) -> None:
    """{after: s01} in YAML and after:s01 in CSV both wait for s01, costing as any job."""
    yaml_path = _yaml(
        tmp_path, _shot("s01", "a.png") + _shot("s02", "{after: s01}", "{before: s03}")
    )
    (tmp_path / "board.yaml").write_text(
        yaml_path.read_text() + _shot("s03", "c.png"), encoding="utf-8"
    )
    csv_path = tmp_path / "board.csv"
    csv_path.write_text(
        "id,prompt,image,tail_image_url\n"
        "s01,s01 moves,https://img.example/a.png,\n"
        "s02,s02 moves,after:s01,before: s03\n"
        "s03,s03 moves,https://img.example/c.png,\n",
        encoding="utf-8",
    )
    from_yaml = load_manifest(yaml_path)
    from_csv = load_manifest(csv_path, upload_to="s3://frames/ep01/")
    for manifest in (from_yaml, from_csv):
        s02 = manifest.shots[1]
        assert s02.waits_for == (("image", "s01"), ("tail_image_url", "s03"))
        assert (s02.after, s02.before) == ("s01", "s03")
        assert manifest.has_local_images  # its frames are uploaded like local files
        assert manifest.jobs[1].credits == manifest.jobs[0].credits
    assert from_yaml.jobs[1].fingerprint == from_csv.jobs[1].fingerprint


def test_unknown_shot_is_named_with_its_line(tmp_path: Path) -> None:
    """A chain on an id no shot has is an error at the line of the field, exit 2."""
    path = _yaml(tmp_path, _shot("s01", "a.png") + _shot("s02", "{after: s09}"))
    res = run_cli("validate", str(path))
    assert res.code == 2
    assert f"{path}:10: shot s02: image: chains after 's09', but no shot" in res.err
    assert "Traceback" not in res.err


def test_a_cycle_names_every_line_of_it(tmp_path: Path) -> None:
    """s01 after s02 after s01 is one error naming both lines (file:line, shot, field)."""
    path = _yaml(tmp_path, _shot("s01", "{after: s02}") + _shot("s02", "{after: s01}"))
    res = run_cli("validate", str(path))
    assert res.code == 2
    assert f"{path}:7: shot s01: image: chains after s02" in res.err
    assert f"({path}:7, shot s01, image)" in res.err
    assert f"({path}:10, shot s02, image)" in res.err
    assert len(res.err.strip().splitlines()) == 1  # one problem for the one cycle


def test_a_cycle_through_before_is_found(tmp_path: Path) -> None:
    """s01 ends on s02's first frame while s02 starts on s01's last: a cycle, both lines named."""
    path = _yaml(tmp_path, _shot("s01", "a.png", "{before: s02}") + _shot("s02", "{after: s01}"))
    with pytest.raises(ManifestError) as caught:
        load_manifest(path)
    (problem,) = caught.value.problems
    assert (problem.line, problem.shot, problem.field) == (8, "s01", "tail_image_url")
    assert f"{path}:8, shot s01, tail_image_url" in problem.message
    assert f"{path}:11, shot s02, image" in problem.message


def test_a_shot_after_itself_is_a_cycle(tmp_path: Path) -> None:
    """A shot cannot wait for its own video."""
    res = run_cli("validate", str(_yaml(tmp_path, _shot("s01", "{after: s01}"))))
    assert res.code == 2 and "cannot wait for its own video" in res.err


def test_chain_without_upload_to_says_where_to_add_it(tmp_path: Path) -> None:
    """A chained frame with nowhere to go is an error naming upload_to and --upload-to."""
    head = "version: 1\nimage_base_url: https://img.example/\nshots:\n"
    path = _yaml(tmp_path, _shot("s01", "a.png") + _shot("s02", "{after: s01}"), head)
    res = run_cli("validate", str(path))
    assert res.code == 2
    assert f"{path}:9: shot s02: image: chains after s01" in res.err
    assert "no upload_to" in res.err and "--upload-to" in res.err
    ok = run_cli("validate", str(path), "--upload-to", "s3://frames/ep01/")
    assert ok.code == 0, ok.err


def test_wrong_kind_of_chain_is_explained(tmp_path: Path) -> None:
    """image takes {after: ID} and tail_image_url {before: ID}; anything else says so."""
    path = _yaml(
        tmp_path,
        _shot("s01", "a.png")
        + _shot("s02", "{before: s01}")
        + _shot("s03", "a.png", "{after: s01}")
        + _shot("s04", "{after: s01, before: s02}"),
    )
    res = run_cli("validate", str(path))
    assert res.code == 2
    assert "shot s02: image: can only chain after another shot, written {after: ID}" in res.err
    assert "shot s03: tail_image_url: can only chain before another shot" in res.err
    assert "shot s04: image: can only chain after" in res.err
    assert "is not of type" not in res.err  # one problem per field, not a schema echo too


def test_plan_says_which_job_waits_for_which(tmp_path: Path) -> None:
    """plan lists "s02 waits for s01", in text and in --json; the credits are unchanged."""
    path = _yaml(tmp_path, _shot("s01", "a.png") + _shot("s02", "{after: s01}"))
    res = run_cli("plan", str(path))
    assert res.code == 0, res.err
    assert "s02 waits for s01 (starts on its last frame)" in res.out
    doc = json.loads(run_cli("plan", str(path), "--json").out)
    assert doc["waits"] == [{"job": "s02", "waits_for": "s01", "frame": "last", "field": "image"}]
    assert doc["total_credits"] == 2000


def test_a_chain_cannot_be_a_default(tmp_path: Path) -> None:
    """defaults.image chained is one problem at the default's line, never a traceback."""
    head = HEAD.replace("shots:\n", "defaults:\n  image: after:s01\nshots:\n")
    path = _yaml(tmp_path, _shot("s01", "a.png") + "  - id: s02\n    prompt: two\n", head)
    res = run_cli("validate", str(path))
    assert res.code == 2
    assert f"{path}:5: defaults.image: a chained frame is written on the shot" in res.err
    assert "Traceback" not in res.err
