"""A run directory's report, assembled from its ledger and written atomically.

``report`` and the end of every ``run`` share it: both read the ledger alone (no
network), so the page a run leaves behind is the one ``report`` would write.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TextIO

from batchkling._time import now_rfc3339
from batchkling._util import atomic_file
from batchkling.errors import RunDirWriteError
from batchkling.ledger import LEDGER_NAME, fold_ledger
from batchkling.model import Manifest
from batchkling.preflight.image_fetch import local_copy_path
from batchkling.preflight.image_rules import distinct_urls
from batchkling.report.build import Report, build_report
from batchkling.report.digest import LedgerDigest
from batchkling.report.formats import write_csv, write_json
from batchkling.report.rows import earlier_videos, intact_videos, job_rows, posters
from batchkling.report.storyboard import write_html
from batchkling.state import RunState
from batchkling.storage.records import object_links

__all__ = [
    "RunRead",
    "assemble_report",
    "read_run",
    "render_report",
    "run_report",
    "stream_report",
    "write_report",
]


@dataclass(frozen=True)
class RunRead:
    """A run directory's ledger as a report reads it: folded, with the digest kept beside."""

    state: RunState
    digest: LedgerDigest
    torn_tail: bytes | None


def read_run(ledger_path: Path) -> RunRead:
    """Read and fold the ledger once, keeping what a report needs besides the state.

    No list of events is kept: the fold and the digest take each event as it is read.
    """
    digest = LedgerDigest()
    read = fold_ledger(ledger_path, observe=digest.see)
    return RunRead(read.state, digest, read.torn_tail)


def _budget(option: int | None, digest: LedgerDigest, manifest: Manifest | None) -> int | None:
    """``option``, else the budget the last run was held to, else the manifest's."""
    if option is not None:
        return option
    if digest.budget is not None:
        return digest.budget
    return manifest.budget if manifest is not None else None


def _image_copies(manifest: Manifest, run_dir: Path) -> dict[str, str]:
    """Each image URL of the manifest that pre-flight kept a copy of -> the copy's path."""
    copies: dict[str, str] = {}
    for url in distinct_urls(manifest.shots):
        copy = local_copy_path(run_dir, url)
        if copy is not None:
            copies[url] = str(copy.absolute())
    return copies


def assemble_report(
    run_dir: Path, manifest: Manifest | None, read: RunRead, *, budget: int | None = None
) -> Report:
    """The report of ``run_dir`` from its ledger as ``read_run`` read it."""
    title = run_dir.name
    if manifest is not None:
        title = manifest.name or Path(manifest.path).stem
    st = read.state
    videos = intact_videos(run_dir, st)
    report = build_report(
        job_rows(manifest.jobs if manifest else None, st, run_dir),
        st,
        digest=read.digest,
        title=title,
        generated=now_rfc3339(),
        run_dir=str(run_dir),
        budget=_budget(budget, read.digest, manifest),
        manifest_path=str(Path(manifest.path).absolute()) if manifest else None,
        manifest_sha256=manifest.sha256 if manifest else None,
        image_copies=_image_copies(manifest, run_dir) if manifest else {},
        videos=videos,
        posters=posters(run_dir, st, videos),
        earlier_videos=earlier_videos(run_dir, st),
    )
    # Local images: the copy pre-flight kept links to the object it was uploaded to.
    return replace(report, image_links=object_links(run_dir))


def stream_report(report: Report, fmt: str, out: TextIO, base_dir: Path) -> None:
    """Write the report in ``fmt`` (html, csv or json) to ``out`` piece by piece; links
    relative to ``base_dir``. CSV line ends are CRLF: ``out`` must not translate them."""
    if fmt == "csv":
        write_csv(report, out)
    elif fmt == "json":
        write_json(report, out)
    else:
        write_html(report, out, base_dir=str(base_dir))


def render_report(report: Report, fmt: str, base_dir: Path) -> str:
    """The report as text in ``fmt`` (html, csv or json); links relative to ``base_dir``."""
    buf = io.StringIO()
    stream_report(report, fmt, buf, base_dir)
    return buf.getvalue()


def write_report(report: Report, fmt: str, target: Path) -> Path:
    """Write ``report`` to ``target`` atomically, readable by all; return its absolute path."""
    target = target.absolute()
    # A report opened in a browser while it is rewritten is never seen half-written;
    # it is for sharing, so readable by all whatever the umask. It is written as it
    # is rendered, so that a large one is never held whole in memory.
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_file(target, mode=0o644) as raw:
            out = io.TextIOWrapper(raw, encoding="utf-8", newline="")
            stream_report(report, fmt, out, target.parent)
            out.flush()
            out.detach()  # the file itself is closed, then renamed, by atomic_file
    except OSError as exc:
        raise RunDirWriteError(
            f"the report could not be written to {target} ({exc.strerror}).",
            hint="Write it elsewhere with -o PATH, or print it with -o -.",
        ) from None
    return target


def run_report(run_dir: Path, manifest: Manifest | None, fmt: str = "html") -> Path:
    """Read ``run_dir``'s ledger and write its report beside it as ``report.<fmt>``."""
    report = assemble_report(run_dir, manifest, read_run(run_dir / LEDGER_NAME))
    return write_report(report, fmt, run_dir / f"report.{fmt}")
