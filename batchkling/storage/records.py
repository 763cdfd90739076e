"""What was uploaded: ``uploads.jsonl`` in the run directory, one JSON object a line.

Each line records one local file put in (or found in) the store, or one URL signed
for it: ``{"at", "event", "path", "sha256", "store", "key", "url", "expires_at"}``
with ``event`` one of ``uploaded`` (this run put it), ``found`` (the key was there
already) and ``signed`` (a new URL for an object recorded earlier). ``expires_at``
is RFC 3339 UTC, or null for a public URL. The latest line of a ``store`` and
``key`` wins, so a resumed run puts nothing again and re-signs only URLs that
expire too soon. A torn last line (a crash mid-write) is ignored.

The file holds no credential: a signed URL names the access key id and carries a
signature for that one object, nothing from which the secret can be learnt.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from batchkling._time import parse_rfc3339

__all__ = [
    "UPLOADS_FILE",
    "UploadRecord",
    "append_records",
    "latest_by_key",
    "latest_by_path",
    "object_links",
    "read_records",
    "url_usable",
]

UPLOADS_FILE = "uploads.jsonl"


@dataclass(frozen=True)
class UploadRecord:
    """One line of ``uploads.jsonl``."""

    at: str
    event: str
    path: str
    sha256: str
    store: str
    key: str
    url: str
    expires_at: str | None

    def to_json(self) -> dict[str, Any]:
        """The record as one line holds it."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any) -> UploadRecord | None:
        """The record of one line; None for anything else (a damaged line is skipped)."""
        if not isinstance(data, dict):
            return None
        names = [f.name for f in fields(cls)]
        values = {name: data.get(name) for name in names}
        if not all(isinstance(values[n], str) for n in names if n != "expires_at"):
            return None
        if values["expires_at"] is not None and not isinstance(values["expires_at"], str):
            return None
        return cls(**values)  # type: ignore[arg-type]  # each value's type checked above


def url_usable(record: UploadRecord, *, now: datetime, validity: timedelta) -> bool:
    """True when the record's URL can be given to the API again.

    A public URL always can. A signed one must stay valid for at least half the
    validity asked for, so a create sent late in a long run still gets a URL the
    provider can fetch.
    """
    if record.expires_at is None:
        return True
    try:
        expires = parse_rfc3339(record.expires_at)
    except ValueError:
        return False
    return expires - now >= validity / 2


def latest_by_key(records: Iterable[UploadRecord]) -> dict[tuple[str, str], UploadRecord]:
    """The last record of each (store, key)."""
    return {(r.store, r.key): r for r in records}


def latest_by_path(records: Iterable[UploadRecord]) -> dict[str, UploadRecord]:
    """The last record of each local path: what the file held when it was last uploaded."""
    return {r.path: r for r in records}


def object_links(run_dir: Path) -> dict[str, str]:
    """Each uploaded local file (by its ``file:`` URL) -> the URL of its object, last recorded."""
    return {Path(r.path).as_uri(): r.url for r in read_records(run_dir)}


def read_records(run_dir: Path) -> list[UploadRecord]:
    """Every whole, readable line of ``uploads.jsonl``; none when the file is absent."""
    try:
        data = (run_dir / UPLOADS_FILE).read_bytes()
    except FileNotFoundError:
        return []
    out: list[UploadRecord] = []
    for line in data.split(b"\n"):
        try:
            record = UploadRecord.from_json(json.loads(line)) if line.strip() else None
        except ValueError:
            continue  # a torn last line, or a line damaged by hand
        if record is not None:
            out.append(record)
    return out


def append_records(run_dir: Path, records: Iterable[UploadRecord]) -> None:
    """Append records, fsynced: once they are written, a crash does not lose them."""
    lines = "".join(json.dumps(r.to_json(), ensure_ascii=False) + "\n" for r in records)
    if not lines:
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / UPLOADS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        # A torn last line left by a crash would swallow the next record: end it first.
        if os.fstat(fd).st_size and not _ends_with_newline(path):
            lines = "\n" + lines
        os.write(fd, lines.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as stream:
        stream.seek(-1, os.SEEK_END)
        return stream.read(1) == b"\n"
