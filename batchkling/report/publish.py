"""A run directory's report, assembled from its ledger and written atomically.

``report`` and the end of every ``run`` share it: both read the ledger alone (no
network), so the page a run leaves behind is the one ``report`` would write.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from batchkling._time import now_rfc3339
from batchkling._util import write_atomic
from batchkling.errors import RunDirWriteError
from batchkling.ledger import LEDGER_NAME, read_ledger
from batchkling.model import Manifest
from batchkling.preflight.image_fetch import local_copy_path
from batchkling.preflight.image_rules import distinct_urls
from batchkling.report.build import Report, build_report, last_budget, render_csv, render_json
from batchkling.report.rows import earlier_videos, intact_videos, job_rows, posters
from batchkling.report.storyboard import render_html
from batchkling.state import RunState, fold

__all__ = ["assemble_report", "recorded_sha", "render_report", "run_report", "write_report"]


def recorded_sha(events: Sequence[Mapping[str, Any]]) -> str | None:
    """The sha256 of the manifest the latest run was started with."""
    for ev in reversed(events):
        if ev.get("event") in ("run_started", "header") and ev.get("manifest_sha256"):
            return str(ev["manifest_sha256"])
    return None


def _budget(
    option: int | None, events: Sequence[Mapping[str, Any]], manifest: Manifest | None
) -> int | None:
    """``option``, else the budget the last run was held to, else the manifest's."""
    if option is not None:
        return option
    recorded = last_budget(events)
    if recorded is not None:
        return recorded
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
    run_dir: Path,
    manifest: Manifest | None,
    events: Sequence[Mapping[str, Any]],
    st: RunState,
    *,
    budget: int | None = None,
) -> Report:
    """The report of ``run_dir`` from its ledger's ``events`` (folded into ``st``)."""
    title = run_dir.name
    if manifest is not None:
        title = manifest.name or Path(manifest.path).stem
    videos = intact_videos(run_dir, st)
    return build_report(
        job_rows(manifest.jobs if manifest else None, st, run_dir),
        st,
        events=events,
        title=title,
        generated=now_rfc3339(),
        run_dir=str(run_dir),
        budget=_budget(budget, events, manifest),
        manifest_path=str(Path(manifest.path).absolute()) if manifest else None,
        manifest_sha256=manifest.sha256 if manifest else None,
        image_copies=_image_copies(manifest, run_dir) if manifest else {},
        videos=videos,
        posters=posters(run_dir, st, videos),
        earlier_videos=earlier_videos(run_dir, st),
    )


def render_report(report: Report, fmt: str, base_dir: Path) -> str:
    """The report as text in ``fmt`` (html, csv or json); links relative to ``base_dir``."""
    if fmt == "csv":
        return render_csv(report)
    if fmt == "json":
        return render_json(report)
    return render_html(report, base_dir=str(base_dir))


def write_report(report: Report, fmt: str, target: Path) -> Path:
    """Write ``report`` to ``target`` atomically, readable by all; return its absolute path."""
    target = target.absolute()
    # A report opened in a browser while it is rewritten is never seen half-written;
    # it is for sharing, so readable by all whatever the umask.
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, render_report(report, fmt, target.parent), mode=0o644)
    except OSError as exc:
        raise RunDirWriteError(
            f"the report could not be written to {target} ({exc.strerror}).",
            hint="Write it elsewhere with -o PATH, or print it with -o -.",
        ) from None
    return target


def run_report(run_dir: Path, manifest: Manifest | None, fmt: str = "html") -> Path:
    """Read ``run_dir``'s ledger and write its report beside it as ``report.<fmt>``."""
    read = read_ledger(run_dir / LEDGER_NAME)
    report = assemble_report(run_dir, manifest, read.events, fold(read.events))
    return write_report(report, fmt, run_dir / f"report.{fmt}")
