"""The ``--state`` file: an append-only journal of state events, one JSON object a line.

Appending one line per change costs the same with ten tasks or ten thousand,
and a server killed without warning loses at most the line it was writing: a
torn last line is skipped when the journal is read back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["FileJournal", "read_journal"]


class FileJournal:
    """Appends events to a file, opening it for each line.

    Opening per line keeps no file handle alive between requests, so an app
    that is dropped without a shutdown (as in-process tests do) leaks nothing.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        # End a line torn by a crash, so the next event starts a line of its own.
        if self.path.exists():
            with self.path.open("rb+") as f:
                size = f.seek(0, os.SEEK_END)
                if size:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        f.write(b"\n")

    def __call__(self, event: dict[str, Any]) -> None:
        line = json.dumps(event, separators=(",", ":")) + "\n"
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line)


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """Every complete event in the file; nothing if it does not exist yet."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    events: list[dict[str, Any]] = []
    for line in text.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line torn by a crash mid-write
        if isinstance(event, dict):
            events.append(event)
    return events
