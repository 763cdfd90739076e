"""`make bench BENCH=uploads`: local images uploaded to moto's S3 server on loopback.

100 frames of about 1 MB each (a PNG with a private chunk of random bytes, so
nothing compresses them away) are uploaded with ``batchkling upload``, in one
process, timed from the command line in to the last URL printed: pre-flight of
every file, HEAD and PUT of each object (8 at a time), signing, and the ranged
GET of each URL. Then the same command again, as a resumed run sees it: nothing
to upload, every recorded URL still valid. Then once more with every recorded URL
expired, so each is signed again. And the manifest load alone, which hashes every
file (the fingerprint uses the content).

moto is a Python server (werkzeug, one thread per request): the figures are a
floor for batchkling's own cost, and a real store's throughput is set by the
uplink instead.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tempfile
import time
import zlib
from pathlib import Path

__all__ = ["main"]

FRAMES = 100
PADDING = 1_000_000


def _frame(name: str) -> bytes:
    from batchkling.emulator.frames import render_frame

    png = render_frame(name)
    pad = os.urandom(PADDING)
    chunk = struct.pack(">I", len(pad)) + b"zzZz" + pad
    chunk += struct.pack(">I", zlib.crc32(b"zzZz" + pad) & 0xFFFFFFFF)
    ihdr_end = 8 + 25  # signature, then IHDR (length, type, 13 bytes, CRC)
    return png[:ihdr_end] + chunk + png[ihdr_end:]


def _setup(directory: Path) -> tuple[Path, object, int]:
    import boto3
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        AWS_ACCESS_KEY_ID="AKIABENCHMARK0000000",
        AWS_SECRET_ACCESS_KEY="bench-secret",
        AWS_REGION="us-east-1",
        AWS_ENDPOINT_URL=endpoint,
        AWS_ALLOW_HTTP="true",
    )
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket="frames"
    )
    frames = directory / "frames"
    frames.mkdir()
    size = 0
    lines = ["version: 1", "upload_to: s3://frames/bench/", "shots:"]
    for i in range(1, FRAMES + 1):
        data = _frame(f"f{i:03d}")
        (frames / f"f{i:03d}.png").write_bytes(data)
        size += len(data)
        lines.append(f"  - {{id: s{i:03d}, prompt: shot {i}, image: frames/f{i:03d}.png}}")
    manifest = directory / "board.yaml"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, server, size


def _upload(manifest: Path) -> tuple[float, dict[str, int]]:
    from batchkling.cli import main as cli

    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    code = cli(["upload", str(manifest), "--json"], out=out, err=err)
    elapsed = time.perf_counter() - started
    if code != 0:
        raise SystemExit(err.getvalue())
    events: dict[str, int] = {}
    for image in json.loads(out.getvalue())["images"]:
        events[image["event"]] = events.get(image["event"], 0) + 1
    return elapsed, events


def _timed_check(manifest: object, run_dir: Path) -> float:
    import anyio
    import httpx

    from batchkling.preflight.image_fetch import check_images

    async def check() -> None:
        async with httpx.AsyncClient() as http:
            await check_images(manifest.shots, client=http, cache_dir=run_dir)  # type: ignore[attr-defined]

    started = time.perf_counter()
    anyio.run(check)
    return time.perf_counter() - started


def _expire(manifest: Path) -> None:
    log = manifest.parent / "board.run" / "uploads.jsonl"
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    with log.open("a") as stream:
        for record in lines:
            stream.write(json.dumps(dict(record, expires_at="2020-01-01T00:00:00.000Z")) + "\n")


def main() -> None:
    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    from batchkling.manifest.load import load_manifest

    with tempfile.TemporaryDirectory() as tmp:
        manifest, server, size = _setup(Path(tmp))
        try:
            first, events = _upload(manifest)
            print(
                f"first upload: {FRAMES} frames, {size / 1e6:.0f} MB in {first:.2f} s: "
                f"{size / 1e6 / first:.0f} MB/s, {FRAMES / first:.0f} frames/s {events}"
            )
            again, events = _upload(manifest)
            print(f"resumed (URLs still valid): {again:.2f} s {events}")
            _expire(manifest)
            resigned, events = _upload(manifest)
            print(f"resumed (every URL expired): {resigned:.2f} s {events}")
            started = time.perf_counter()
            loaded = load_manifest(manifest, require_upload=True)
            hashed = time.perf_counter() - started
            print(f"of which the manifest load, hashing {size / 1e6:.0f} MB: {hashed:.2f} s")
            checked = _timed_check(loaded, manifest.parent / "board.run")
            print(f"of which pre-flight of the {FRAMES} local files: {checked:.2f} s")
        finally:
            server.stop()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
