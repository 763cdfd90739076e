"""`batchkling note`: a free-text note on a take, replacing its earlier one.

Any take can carry a note, whatever its state; ``--clear`` removes it. The note
goes through the review inbox (``batchkling.cli._marks_args``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from batchkling.cli._marks_args import (
    MarkEvent,
    add_mark_parser,
    open_takes,
    record_marks,
    split_words,
)
from batchkling.errors import UsageError

if TYPE_CHECKING:
    from batchkling.cli._io import IO

__all__ = ["cmd_note", "register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `note`."""
    p = add_mark_parser(
        sub,
        "note",
        "write a note on a take",
        "[MANIFEST] JOB (TEXT | --clear) [--run-dir DIR]",
        "Write TEXT as the note of JOB, replacing its earlier note; --clear removes it. "
        "Any take can carry a note. A first word that names a file is the MANIFEST; "
        "a TEXT that starts with - follows --.",
        words="JOB (s01#2, or s01 for a one-take shot) and TEXT",
    )
    p.add_argument("--clear", action="store_true", help="remove the note instead of writing one")
    p.set_defaults(handler=cmd_note)


def cmd_note(args: argparse.Namespace, io: IO) -> int:
    """Write or clear the note of one take; print one line."""
    words = split_words(args, "note")
    wanted = "JOB" if args.clear else "JOB TEXT"
    if len(words) != (1 if args.clear else 2):
        given = " ".join(words) or "nothing"
        raise UsageError(
            f"note takes [MANIFEST] {wanted}{'' if args.clear else ' (or JOB --clear)'}, "
            f"not {given}.",
            hint="Quote a TEXT of several words.",
        )
    text = "" if args.clear else words[1]
    if not args.clear and not text.strip():
        raise UsageError("note: the TEXT is empty.", hint="--clear removes a note.")
    takes = open_takes(args, "note", io)
    key = takes.job(words[0], "note").key
    before = takes.marks.notes.get(key)
    if args.clear:
        if before is None:
            record_marks(takes, [], [f"{key} has no note; nothing to clear"], io)
            return 0
        record_marks(
            takes, [MarkEvent("noted", key, {"note": ""})], [f"cleared the note of {key}"], io
        )
        return 0
    if before == text:
        record_marks(takes, [], [f"{key} already has that note"], io)
        return 0
    said = f"noted {key}" + (" (replacing its earlier note)" if before is not None else "")
    record_marks(takes, [MarkEvent("noted", key, {"note": text})], [said], io)
    return 0
