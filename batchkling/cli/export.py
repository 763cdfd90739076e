"""`batchkling export`: the chosen takes of a run as an animatic, a timeline, a contact sheet.

Offline, from the manifest and the run directory's ledger (and the review's
marks still in its inbox); it never takes the lock, so it works while a run is
going, on the takes done so far. It only reads the run's ``videos/`` and never
writes there; each output is written whole (a temporary file beside it,
fsynced, renamed) and then noted in ``<run-dir>/exports.json``. One line per
output on stdout. Exit 2 for bad usage or a manifest problem, 1 for a chosen
take that does not decode, 5 for an output that cannot be written.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from batchkling.cli._manifest_args import add_shot_overrides, run_dir_of
from batchkling.cli._options import add_manifest_or_run_dir
from batchkling.cli._types import positive_seconds
from batchkling.errors import UsageError

if TYPE_CHECKING:
    from tqdm import tqdm

    from batchkling.cli._io import IO
    from batchkling.export.takes import Cut

# PyAV, Pillow and OpenTimelineIO are imported when the command runs, so that
# building the parser for any command loads none of them.

__all__ = ["OUTPUTS", "cmd_export", "register"]

HELP = "deliver the chosen takes: an animatic, an OpenTimelineIO timeline, a contact sheet"
# Each output: its option, its attribute, and its name in exports.json.
OUTPUTS = (
    ("--animatic", "animatic", "animatic"),
    ("--otio", "otio", "otio"),
    ("--contact-sheet", "contact_sheet", "contact_sheet"),
)
_USAGE = (
    "export needs at least one of --animatic PATH.mp4, --otio PATH.otio, --contact-sheet PATH.png."
)


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `export`."""
    p = sub.add_parser(
        "export",
        help=HELP,
        description="Write the chosen takes of a run, in manifest order, as an H.264 animatic, "
        "an OpenTimelineIO timeline and a PNG contact sheet (any of them), and print one line "
        "per file written. No network; the run's videos/ is only read.",
    )
    add_manifest_or_run_dir(p)
    p.add_argument("--animatic", type=Path, metavar="PATH.mp4", help="write the animatic here")
    p.add_argument("--otio", type=Path, metavar="PATH.otio", help="write the timeline here")
    p.add_argument(
        "--contact-sheet", type=Path, metavar="PATH.png", help="write the contact sheet here"
    )
    p.add_argument(
        "--takes",
        choices=("picked", "first", "all"),
        default="picked",
        help="picked (default): each shot's picked take, else its first usable one; first: the "
        "first usable take; all: every usable take. Rejected takes never",
    )
    p.add_argument(
        "--card-seconds",
        type=positive_seconds,
        metavar="N",
        help="length of the title card of a shot with no take (default: the shot's duration)",
    )
    add_shot_overrides(p)
    p.set_defaults(handler=cmd_export, strict=False)


def cmd_export(args: argparse.Namespace, io: IO) -> int:
    """Write each output asked for, print one line for each, and record them."""
    from batchkling.export.files import check_target
    from batchkling.export.record import record_exports

    wanted = {kind: getattr(args, attr) for opt, attr, kind in OUTPUTS if getattr(args, attr)}
    if not wanted:
        raise UsageError(_USAGE)
    run_dir = run_dir_of(args, "export")
    targets = {
        kind: _checked(check_target(path, run_dir, opt), run_dir, opt)
        for opt, _attr, kind in OUTPUTS
        if (path := wanted.get(kind)) is not None
    }
    cut, st, name = _cut(args, run_dir, io)
    written: dict[str, Path] = {}
    for kind, target in targets.items():
        line = _write(kind, target, cut, st, name, args, io)
        written[kind] = target
        print(line, file=io.out, flush=True)
    record_exports(run_dir, written)
    return 0


def _checked(target: Path, run_dir: Path, option: str) -> Path:
    """Refuse the files a run keeps (ledger, lock, image cache) as targets."""
    from batchkling.cli.report import PROTECTED_NAMES
    from batchkling.ledger import LEDGER_NAME

    what = PROTECTED_NAMES.get(target.name)
    if what is not None and (target.parent / LEDGER_NAME).exists():
        raise UsageError(f"{option} {target}: that is {what}; an export never writes over it.")
    if target.resolve() == (run_dir / "exports.json").resolve():
        raise UsageError(f"{option} {target}: that is where exports are recorded.")
    return target


def _cut(args: argparse.Namespace, run_dir: Path, io: IO) -> tuple[Cut, Any, str]:
    """The cut of the run, its state, and a name for the timeline."""
    from batchkling.cli._manifest_args import ledger_of_run, manifest_of_run
    from batchkling.cli._options import warn_torn_tail
    from batchkling.export.takes import cut_of
    from batchkling.ledger import fold_ledger
    from batchkling.review.inbox import marks_with_inbox
    from batchkling.review.marks import TakesMode

    ledger_path = ledger_of_run(args.manifest, run_dir)
    read = fold_ledger(ledger_path)
    warn_torn_tail(ledger_path, read.torn_tail, io)
    st = read.state
    manifest = manifest_of_run(args, st, run_dir, io, images=False)
    if manifest is None:
        raise UsageError(
            f"export needs the manifest of {run_dir}: the ledger names none that reads.",
            hint="Give MANIFEST on the command line.",
        )
    marks = marks_with_inbox(run_dir, st.marks)
    cut = cut_of(manifest, st, marks, run_dir, TakesMode(args.takes))
    return cut, st, manifest.name or Path(manifest.path).stem


def _write(
    kind: str, target: Path, cut: Cut, st: Any, name: str, args: argparse.Namespace, io: IO
) -> str:
    """Write one output and say what it holds in one line."""
    from batchkling._util import plural

    shots = plural(len(cut.shots), "shot")
    takes = len(cut.takes)
    if kind == "animatic":
        from batchkling.export.animatic import write_animatic

        with _bar(io, takes + len(cut.missing), "animatic") as bar:
            a = write_animatic(cut, target, card_seconds=args.card_seconds, progress=_moves(bar))
        how = "stream copy" if a.copied else f"re-encoded to {a.size[0]}x{a.size[1]}"
        cards = f", {plural(a.cards, 'title card')}" if a.cards else ""
        return (
            f"animatic: {a.path}: {shots}, {plural(a.takes, 'take')}{cards}, "
            f"{a.duration:.2f} s at {float(a.rate):g} fps ({how})"
        )
    if kind == "otio":
        from batchkling.export.timeline import write_timeline

        with _bar(io, takes, "timeline") as bar:
            t = write_timeline(cut, st, target, name, probed=_steps(bar))
        gaps = f", {plural(t.gaps, 'gap')}" if t.gaps else ""
        return f"otio: {t.path}: {shots}, {plural(t.takes, 'take')}{gaps}, {t.duration:.2f} s"
    from batchkling.export.contact import write_contact_sheet

    with _bar(io, takes + len(cut.missing), "contact sheet") as bar:
        c = write_contact_sheet(cut, target, tick=_steps(bar))
    missing = f", {c.missing} missing" if c.missing else ""
    return (
        f"contact_sheet: {c.path}: {shots}, {plural(c.takes, 'take')}{missing}, "
        f"{c.columns}x{c.rows} tiles, {c.size[0]}x{c.size[1]} px"
    )


@contextmanager
def _bar(io: IO, total: int, what: str) -> Iterator[tqdm[None] | None]:
    """A tqdm bar on stderr when it is a terminal, else None (no output)."""
    if not (hasattr(io.err, "isatty") and io.err.isatty()) or total <= 0:
        yield None
        return
    from tqdm import tqdm

    bar: tqdm[None] = tqdm(total=total, file=io.err, desc=what, leave=False, dynamic_ncols=True)
    try:
        yield bar
    finally:
        bar.close()


def _steps(bar: tqdm[None] | None) -> Callable[[], None] | None:
    """A callback moving ``bar`` one step."""
    if bar is None:
        return None

    def step() -> None:
        bar.update(1)

    return step


def _moves(bar: tqdm[None] | None) -> Callable[[int, int], None] | None:
    """A callback setting ``bar`` to (done, total)."""
    if bar is None:
        return None

    def move(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()

    return move
