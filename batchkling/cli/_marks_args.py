"""What `pick`, `reject` and `note` share: their words, the takes they name, recording marks.

The three commands take ``[MANIFEST] JOB...`` (``note``: ``[MANIFEST] JOB TEXT``).
The first word is the MANIFEST when it names an existing file or holds a path
separator, neither of which a job key can be (a shot id is letters, digits,
``.``, ``_`` and ``-``); every other word is a job. A job whose key is also the
name of a file in the current directory is named after the MANIFEST
(``pick shots.yaml shots.yaml``). The run directory is then found as ``status``
finds it: ``--run-dir``, else the manifest's default one.

A mark is never written into the ledger directly: only the holder of the run
directory's lock writes there. It is dropped into the inbox, then moved into the
ledger at once when no run holds the lock, or by the live run within a second.
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchkling.cli._options import add_run_dir_option
from batchkling.errors import RunDirWriteError, UsageError

if TYPE_CHECKING:
    from batchkling.cli._io import IO
    from batchkling.report.rows import JobRow
    from batchkling.review.marks import Marks

__all__ = [
    "MarkEvent",
    "Takes",
    "add_mark_parser",
    "is_manifest_word",
    "open_takes",
    "record_marks",
    "split_words",
]

# The ledger, the manifest loader and the inbox are imported when a command runs, so
# that building the parser for any command loads none of them.


def add_mark_parser(
    sub: argparse._SubParsersAction[Any],
    name: str,
    help_line: str,
    usage: str,
    description: str,
    *,
    words: str = "job keys (s01#2, or s01 for a one-take shot)",
) -> argparse.ArgumentParser:
    """The parser of one of the three commands: its words and ``--run-dir``."""
    p: argparse.ArgumentParser = sub.add_parser(
        name, help=help_line, usage=f"%(prog)s {usage}", description=description
    )
    p.add_argument(
        "words",
        nargs="+",
        metavar="[MANIFEST] JOB",
        help=f"the manifest (optional: a first word that names a file), then {words}",
    )
    add_run_dir_option(p)
    return p


def is_manifest_word(word: str) -> bool:
    """Whether a first word is a MANIFEST: an existing file, or a path (no job key is)."""
    return "/" in word or os.sep in word or os.path.isfile(word)


def split_words(args: argparse.Namespace, command: str) -> list[str]:
    """Set ``args.manifest`` from the command line's words; return the other words.

    Without a MANIFEST or ``--run-dir`` there is no run directory: a usage error.
    """
    words: list[str] = list(args.words)
    args.manifest = words.pop(0) if words and is_manifest_word(words[0]) else None
    if args.manifest is None and args.run_dir is None:
        raise UsageError(
            f"{command} needs MANIFEST or --run-dir DIR ({args.words[0]} is not a file).",
            hint=f"See batchkling {command} --help.",
        )
    return words


@dataclass(frozen=True)
class MarkEvent:
    """One review event to record: its kind, its take, its own fields."""

    event: str
    job: str
    fields: dict[str, Any]


@dataclass(frozen=True)
class Takes:
    """The takes of a run directory as a mark command sees them, with their current marks."""

    run_dir: Path
    rows: dict[str, JobRow]  # job key -> row, in the order status lists them
    marks: Marks  # the ledger's marks with those still in the inbox

    def job(self, word: str, command: str) -> JobRow:
        """The take ``word`` names; a usage error naming it and the run directory if none."""
        row = self.rows.get(word)
        if row is not None:
            return row
        takes = [k for k in self.rows if "#" in k and k.split("#", 1)[0] == word]
        if takes:
            raise UsageError(
                f"{command}: {word} is a shot of {len(takes)} takes in {self.run_dir}, "
                f"not one take: name one ({takes[0]} to {takes[-1]}).",
            )
        close = difflib.get_close_matches(word, list(self.rows), n=1, cutoff=0.6)
        hint = f"Did you mean {close[0]}?" if close else "`batchkling status` lists the jobs."
        raise UsageError(f"{command}: no job {word} in {self.run_dir}.", hint=hint)


def open_takes(args: argparse.Namespace, command: str, io: IO) -> Takes:
    """The run directory of ``args`` (``args.manifest`` set), its jobs and their marks.

    The jobs are those ``status`` lists: the manifest's (as the latest run loaded
    it), then any only the ledger knows. Nothing has to have run for a manifest's
    jobs to be known, but a mark needs a ledger to go into.
    """
    from batchkling.cli._manifest_args import ledger_of_run, manifest_of_run, run_dir_of
    from batchkling.cli._options import warn_torn_tail
    from batchkling.ledger import fold_ledger
    from batchkling.report.rows import job_rows
    from batchkling.review.inbox import marks_with_inbox

    run_dir = run_dir_of(args, command)
    ledger_path = ledger_of_run(args.manifest, run_dir)
    read = fold_ledger(ledger_path)
    warn_torn_tail(ledger_path, read.torn_tail, io)
    st = read.state
    manifest = manifest_of_run(args, st, run_dir, io, images=False)
    rows = job_rows(manifest.jobs if manifest is not None else None, st, run_dir)
    return Takes(
        run_dir=run_dir,
        rows={r.key: r for r in rows},
        marks=marks_with_inbox(run_dir, st.marks),
    )


def takes_named(args: argparse.Namespace, command: str, io: IO) -> tuple[Takes, list[str]]:
    """The run directory's takes, and the job keys the command line names (each once, in order)."""
    words = split_words(args, command)
    if not words:
        raise UsageError(
            f"{command} needs at least one JOB.", hint=f"See batchkling {command} --help."
        )
    takes = open_takes(args, command, io)
    return takes, list(dict.fromkeys(takes.job(w, command).key for w in words))


def record_marks(takes: Takes, events: Sequence[MarkEvent], said: Sequence[str], io: IO) -> None:
    """Drop ``events`` into the inbox, move it into the ledger if it is free, print ``said``.

    A run directory that cannot be written is a ``RunDirWriteError`` (exit 5) saying
    how many of the marks were recorded before it.
    """
    from batchkling.review.inbox import INBOX_NAME, absorb_if_free, drop, pending

    run_dir = takes.run_dir
    marks: set[str] = set()
    for i, ev in enumerate(events):
        try:
            marks.add(drop(run_dir, ev.event, ev.job, **ev.fields)["mark"])
        except OSError as exc:
            before = f"{i} of {len(events)} marks were recorded" if i else "nothing was recorded"
            raise RunDirWriteError(
                f"cannot write the review inbox of {run_dir} ({exc.strerror or exc}); {before}.",
                hint="Make the run directory writable, then run the same command again.",
            ) from None
    if marks:
        absorb_if_free(run_dir)
    for line in said:
        print(line, file=io.out)
    if marks and any(ev["mark"] in marks for _path, ev in pending(run_dir)):
        print(
            f"A run holds {run_dir}: the marks are recorded in {run_dir / INBOX_NAME} and "
            "the run moves them into the ledger within a second.",
            file=io.out,
        )
