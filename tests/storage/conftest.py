"""A real S3-protocol server on loopback (moto's threaded server), and local frames to upload.

``s3`` starts the server on a free port, creates the bucket ``frames``, points the
standard ``AWS_*`` variables at it (fake credentials, plain HTTP on 127.0.0.1)
and counts the requests it serves by method; it is stopped at teardown.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from batchkling.emulator.frames import render_frame

__all__ = ["ACCESS_KEY", "SECRET_KEY", "S3Server", "write_frames"]

ACCESS_KEY = "AKIAEXAMPLETESTKEY01"
SECRET_KEY = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
BUCKET = "frames"
# A request line as werkzeug logs it, maybe coloured: ``"\x1b[33mHEAD /frames/k HTTP/1.1"``.
_REQUEST = re.compile(r"(?:^|[^A-Z])(GET|PUT|HEAD|POST|DELETE) /([^ ?]*)")


@dataclass
class S3Server:
    """The running server: its endpoint, the requests it served, a way to stop it early."""

    endpoint: str
    server: object
    requests: Counter[str] = field(default_factory=Counter)
    running: bool = True

    def count(self, method: str, prefix: str = f"{BUCKET}/") -> int:
        """Requests of ``method`` on paths under ``prefix`` (the bucket, by default)."""
        return sum(
            n for (m, p), n in self._by_path().items() if m == method and p.startswith(prefix)
        )

    def _by_path(self) -> Counter[tuple[str, str]]:
        out: Counter[tuple[str, str]] = Counter()
        for line, n in self.requests.items():
            found = _REQUEST.search(line)
            if found:
                out[found.group(1), found.group(2)] += n
        return out

    def stop(self) -> None:
        """Take the store down (connections are refused from now on)."""
        if self.running:
            self.server.stop()  # type: ignore[attr-defined]
            self.running = False

    def make_public(self) -> None:
        """Let anyone read the bucket's objects (a bucket policy), as a public bucket does."""
        import json

        import boto3

        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": "*",
                    "Action": "s3:GetObject",
                    "Resource": f"arn:aws:s3:::{BUCKET}/*",
                }
            ],
        }
        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(policy))

    def objects(self) -> list[str]:
        """The keys in the bucket."""
        import boto3

        client = boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")
        listed = client.list_objects_v2(Bucket=BUCKET)
        return sorted(o["Key"] for o in listed.get("Contents", []))


class _Count(logging.Handler):
    def __init__(self, counter: Counter[str]) -> None:
        super().__init__()
        self.counter = counter

    def emit(self, record: logging.LogRecord) -> None:
        self.counter[record.getMessage()] += 1


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1, the bucket ``frames`` in it, the AWS variables set."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.aws of the machine's
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("AWS_ALLOW_HTTP", "true")
    import boto3
    import httpx

    # moto keeps its buckets in the process, across servers: every test starts empty.
    httpx.post(endpoint + "/moto-api/reset").raise_for_status()
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
    handle = S3Server(endpoint, server)
    counter = _Count(handle.requests)
    logger = logging.getLogger("werkzeug")
    logger.addHandler(counter)
    logger.setLevel(logging.INFO)
    try:
        yield handle
    finally:
        logger.removeHandler(counter)
        handle.stop()


def write_frames(directory: Path, names: list[str], *, size: tuple[int, int] | None = None) -> None:
    """Sample frames drawn by the emulator, as PNG files ``<name>.png`` in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    for name in names:
        data = render_frame(name) if size is None else render_frame(name, *size)
        (directory / f"{name}.png").write_bytes(data)
