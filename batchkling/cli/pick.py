"""`batchkling pick`: the take of each shot that goes into the cut.

Only a take with a verified video (state ``done``) can be picked; picking
another take of the same shot replaces the pick, and ``--undo`` takes a pick
back. The marks go through the review inbox (``batchkling.cli._marks_args``).
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
from batchkling.errors import UsageError
from batchkling.model import JobState
from batchkling.review.marks import shot_of

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.cli._marks_args import Takes

__all__ = ["cmd_pick", "register"]


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `pick`."""
    p = add_mark_parser(
        sub,
        "pick",
        "pick takes: the one of each shot that goes into the cut",
        "[MANIFEST] JOB... [--run-dir DIR] [--undo]",
        "Pick each JOB as the take of its shot that goes into the cut, replacing any "
        "earlier pick of that shot. Only a take whose video is downloaded and verified "
        "(done) can be picked. A first word that names a file is the MANIFEST.",
    )
    p.add_argument("--undo", action="store_true", help="take the picks back")
    p.set_defaults(handler=cmd_pick)


def cmd_pick(args: argparse.Namespace, io: IO) -> int:
    """Pick (or with ``--undo`` unpick) every take named; print one line for each."""
    takes, keys = takes_named(args, "pick", io)
    _one_per_shot(keys)
    if not args.undo:
        for key in keys:
            state = takes.rows[key].state
            if state is not JobState.DONE:
                raise UsageError(
                    f"pick: {key} is {state.value}, not done: only a take with a "
                    "verified video can be picked.",
                    hint="Nothing was recorded.",
                )
    events: list[MarkEvent] = []
    said: list[str] = []
    for key in keys:
        _pick_one(takes, key, undo=args.undo, events=events, said=said)
    record_marks(takes, events, said, io)
    return 0


def _one_per_shot(keys: list[str]) -> None:
    """A shot has one pick: two takes of the same shot in one command is a usage error."""
    first: dict[str, str] = {}
    for key in keys:
        other = first.setdefault(shot_of(key), key)
        if other != key:
            raise UsageError(
                f"pick: {other} and {key} are takes of the same shot, {shot_of(key)}; "
                "a shot has one pick.",
                hint="Name one take of each shot. Nothing was recorded.",
            )


def _pick_one(
    takes: Takes, key: str, *, undo: bool, events: list[MarkEvent], said: list[str]
) -> None:
    shot = shot_of(key)
    current = takes.marks.picks.get(shot)
    if undo:
        if current != key:
            said.append(f"{key} is not picked; nothing to undo")
            return
        events.append(MarkEvent("picked", key, {"shot": shot, "on": False}))
        said.append(f"unpicked {key} ({shot} has no pick now)")
        return
    if current == key:
        said.append(f"{key} is already picked")
        return
    events.append(MarkEvent("picked", key, {"shot": shot}))
    was = [f"was {current}"] if current is not None else []
    if key in takes.marks.rejected:
        was.append("no longer rejected")
    said.append(f"picked {key}" + (f" ({'; '.join(was)})" if was else ""))
