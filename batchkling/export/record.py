"""``<run-dir>/exports.json``: where a run's latest exports are, so its report can link them.

One object, one entry per kind of output (``animatic``, ``otio``,
``contact_sheet``), each the absolute path written and when (RFC 3339, UTC).
An export merges its entries into what the file holds, so exporting only a
timeline keeps the animatic recorded before; the file is replaced atomically.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from batchkling._time import now_rfc3339
from batchkling.errors import ExportWriteError
from batchkling.export.files import write_whole

__all__ = ["EXPORTS_NAME", "KINDS", "read_exports", "record_exports"]

EXPORTS_NAME = "exports.json"
KINDS = ("animatic", "otio", "contact_sheet")


def read_exports(run_dir: Path) -> dict[str, Any]:
    """What ``exports.json`` records; empty when there is none or it does not read."""
    try:
        found = json.loads((run_dir / EXPORTS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def record_exports(
    run_dir: Path, written: Mapping[str, Path], *, when: str | None = None
) -> dict[str, Any]:
    """Merge ``written`` (kind -> path) into ``exports.json``; return the whole record."""
    stamp = when or now_rfc3339()
    doc = read_exports(run_dir)
    for kind, path in written.items():
        if kind not in KINDS:
            raise ValueError(f"not a kind of export: {kind!r}")
        doc[kind] = {"path": str(Path(path).absolute()), "written": stamp}
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    try:
        write_whole(run_dir / EXPORTS_NAME, text.encode("utf-8"))
    except ExportWriteError as exc:
        exc.hint = (
            "The outputs were written; only the record of them in the run directory is missing."
        )
        raise
    return doc
