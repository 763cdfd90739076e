"""The demo storyboard rendered end to end from frames on disk, through a real S3-protocol store.

The emulator's sample frames are written to a folder beside a copy of
``manifests/storyboard.yaml`` whose image names are local paths (no
``image_base_url``), with ``upload_to`` set. The emulator fetches every image
URL at create time (``--fetch-images``), so each of the 30 videos proves that
its frames went from the disk through an upload and a signed URL to the provider.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from batchkling.emulator.frames import render_frame
from batchkling.manifest.load import load_manifest
from tests.runner_helpers import FAST, ROOT, run_cli, status_json
from tests.storage.conftest import S3Server

STORYBOARD = ROOT / "manifests" / "storyboard.yaml"


def _local_storyboard(directory: Path) -> tuple[Path, set[str]]:
    """The storyboard with its images in ``directory/frames/``; the file names."""
    text = STORYBOARD.read_text(encoding="utf-8")
    names = set(re.findall(r"(?:image|tail_image_url): (\S+\.png)", text))
    frames = directory / "frames"
    frames.mkdir()
    for name in names:
        (frames / name).write_bytes(render_frame(name.removesuffix(".png")))
    text = re.sub(r"^image_base_url: .*$", "upload_to: s3://frames/ep01/", text, flags=re.M)
    text = re.sub(r"(image|tail_image_url): (\S+\.png)", r"\1: frames/\2", text)
    path = directory / "storyboard.yaml"
    path.write_text(text, encoding="utf-8")
    return path, names


@pytest.mark.slow
def test_storyboard_renders_from_local_frames(
    s3: S3Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, live_emulator_factory: Any
) -> None:
    """30 jobs from local frames: each frame uploaded once, every create fetched its images."""
    monkeypatch.setenv("SJINN_API_KEY", "test-key")
    manifest, names = _local_storyboard(tmp_path)
    emulator = live_emulator_factory(fetch_images=True, gen_seconds=(0.05, 0.3))
    res = run_cli(
        "run", str(manifest), "--api-base", emulator.base_url, *FAST, "--concurrency", "8"
    )
    assert res.code == 0, res.err
    jobs = status_json(manifest)["jobs"]
    assert len(jobs) == 30 and {j["state"] for j in jobs} == {"done"}
    assert s3.count("PUT") == len(names) and len(s3.objects()) == len(names)
    stats = emulator.stats()
    assert stats["tasks_created"] == 30 and "image_unfetchable" not in stats["faults"]
    # Every create sent a URL into the bucket, and asked the store for each of its frames.
    fetched = s3.count("GET", "frames/ep01/")
    tails = sum(1 for j in load_manifest(manifest).jobs if j.shot.tail_image_url)
    assert fetched >= 30 + tails + len(names)  # the creates' fetches, and the checks after upload
    # The fingerprint is the content: the same manifest with the same frames is unchanged.
    again = run_cli("run", str(manifest), "--api-base", emulator.base_url, *FAST)
    assert again.code == 0 and emulator.stats()["tasks_created"] == 30
    report = run_cli("report", str(manifest))
    assert report.code == 0, report.err
    # The report shows each frame's local copy, linked to its object in the bucket.
    html = (tmp_path / "storyboard.run" / "report.html").read_text(encoding="utf-8")
    links = re.findall(r'<a href="([^"]+)" title="file://[^"]+"><img src="images/', html)
    shots = load_manifest(manifest).shots
    assert len(links) == len(shots) + sum(1 for s in shots if s.tail_image_url)  # one per frame
    assert all(link.startswith(s3.endpoint + "/frames/ep01/") for link in links)
