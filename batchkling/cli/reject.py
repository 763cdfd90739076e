"""`batchkling reject`: takes never chosen for the cut.

Any take can be rejected, whatever its state; rejecting the picked take of a
shot unpicks it, and ``--undo`` takes a rejection back. The marks go through the
review inbox (``batchkling.cli._marks_args``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from batchkling.cli._marks_args import (
    MarkEvent,
    add_mark_parser,
    record_marks,
    takes_named,
)
from batchkling.review.marks import shot_of

if TYPE_CHECKING:
    from batchkling.cli._io import IO

__all__ = ["cmd_reject", "register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `reject`."""
    p = add_mark_parser(
        sub,
        "reject",
        "reject takes: never chosen for the cut",
        "[MANIFEST] JOB... [--run-dir DIR] [--undo]",
        "Reject each JOB: it is never chosen for the cut, and no longer the pick of its "
        "shot if it was. Any take can be rejected. A first word that names a file is the "
        "MANIFEST.",
    )
    p.add_argument("--undo", action="store_true", help="take the rejections back")
    p.set_defaults(handler=cmd_reject)


def cmd_reject(args: argparse.Namespace, io: IO) -> int:
    """Reject (or with ``--undo`` unreject) every take named; print one line for each."""
    takes, keys = takes_named(args, "reject", io)
    events: list[MarkEvent] = []
    said: list[str] = []
    for key in keys:
        rejected = key in takes.marks.rejected
        if args.undo:
            if not rejected:
                said.append(f"{key} is not rejected; nothing to undo")
                continue
            events.append(MarkEvent("rejected", key, {"on": False}))
            said.append(f"unrejected {key}")
            continue
        if rejected:
            said.append(f"{key} is already rejected")
            continue
        events.append(MarkEvent("rejected", key, {}))
        shot = shot_of(key)
        if takes.marks.picks.get(shot) == key:
            said.append(f"rejected {key} (it was the pick of {shot}; {shot} has no pick now)")
        else:
            said.append(f"rejected {key}")
    record_marks(takes, events, said, io)
    return 0
