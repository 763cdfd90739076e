"""The HTML storyboard of a run: one self-contained file that works opened from disk.

Every value that comes from the manifest, the ledger or the API goes through
``_text`` (element content and quoted attributes) or, for URLs, through
``_web_url`` / ``_file_href`` first: only ``http(s)`` links to originals, and
files by a percent-encoded path relative to the report. A Content-Security-Policy
allows only the page's own inline scripts, by their hashes, so that a value that
slipped through escaping still could not run.

``write_html`` writes the page to a stream one shot at a time, so that the page
of a 100,000-job run is never held whole in memory. It shows the review's marks
on each take (picked, rejected, its note) and links the files ``batchkling
export`` recorded in ``exports.json``: the one file rendering reads (all else
comes in the ``Report``), so that every page of a run links what was delivered.

``batchkling review`` serves the same page with a ``PageMode``: its files by
URL from the server, its own style and script added, the policy widened to
the server's origin for them.
"""

from __future__ import annotations

import html
import io
import json
import os
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from pathlib import Path, PurePath
from typing import TextIO

from batchkling._util import of_budget, plural, span, thousands
from batchkling.model import JobState, Shot
from batchkling.report.assets import SCRIPT, STYLE, PageMode, page_policy
from batchkling.report.build import Report, RunSpan, Totals
from batchkling.report.rows import JobRow

__all__ = [
    "EXPORTS_NAME",
    "PageMode",
    "exported_files",
    "file_href",
    "render_card",
    "render_html",
    "web_url",
    "write_html",
]

# A shot with more takes than this wraps them onto further rows.
_TAKES_PER_ROW = 4

_STATE_TEXT = {
    JobState.PENDING: "not submitted yet",
    JobState.IN_DOUBT: "the create's answer was lost: it may have been charged "
    "(batchkling reconcile checks)",
    JobState.RUNNING: "rendering on the server",
    JobState.COMPLETED: "finished on the server, not downloaded yet",
    JobState.DONE: "downloaded",
    JobState.FAILED: "failed",
    JobState.SKIPPED: "skipped",
}

# Where ``batchkling export`` records what it wrote, and the names the page gives them.
EXPORTS_NAME = "exports.json"
_EXPORT_LABELS = {
    "animatic": "animatic",
    "otio": "timeline (OTIO)",
    "contact_sheet": "contact sheet",
}


def _text(value: object) -> str:
    """Escaped for element content and double-quoted attributes alike."""
    return html.escape(str(value), quote=True)


def web_url(url: str | None) -> str | None:
    """``url`` if it is an absolute http(s) URL, else None (no ``javascript:`` or ``data:``)."""
    if url is not None and url.strip().lower().startswith(("http://", "https://")):
        return url.strip()
    return None


def file_href(path: str, base_dir: str) -> str:
    """A percent-encoded URL of ``path`` relative to ``base_dir`` (both absolute)."""
    rel = PurePath(os.path.relpath(path, base_dir)).as_posix()
    # Job keys hold "#" (takes) and ids may hold "?" or spaces: encode everything but "/".
    return urllib.parse.quote(rel, safe="/")


def exported_files(run_dir: str | Path) -> dict[str, tuple[str, str]]:
    """What ``exports.json`` records that is still on disk: kind -> (absolute path, written).

    The file may be absent or any kind missing; an unreadable file counts as none.
    """
    try:
        found = json.loads((Path(run_dir) / EXPORTS_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    out: dict[str, tuple[str, str]] = {}
    for kind, entry in found.items() if isinstance(found, dict) else ():
        path = entry.get("path") if isinstance(entry, dict) else None
        if isinstance(path, str) and os.path.isabs(path) and os.path.isfile(path):
            out[str(kind)] = (path, str(entry.get("written") or ""))
    return out


def _exports(exports: Mapping[str, tuple[str, str]], link: Callable[[str], str]) -> str:
    """The header's line of links to the exported files, the known kinds first."""
    order = [k for k in _EXPORT_LABELS if k in exports] + sorted(set(exports) - set(_EXPORT_LABELS))
    links = []
    for kind in order:
        path, written = exports[kind]
        href = link(path)
        if href:
            title = f"{PurePath(path).name}, written {written}" if written else PurePath(path).name
            label = _EXPORT_LABELS.get(kind, kind.replace("_", " "))
            links.append(
                f'<a href="{_text(href)}" data-export="{_text(kind)}" title="{_text(title)}">'
                f"{_text(label)}</a>"
            )
    return f'<p class="exports">exported: {" · ".join(links)}</p>' if links else ""


def _chained(url: str) -> str | None:
    """What a chained image field waits for, in words (``after:s01``), or None."""
    for kind, words in (("after:", "last frame of {}"), ("before:", "first frame of {}")):
        if url.startswith(kind):
            return words.format(url[len(kind) :])
    return None


def _image(report: Report, url: str | None, label: str, link: Callable[[str], str]) -> str:
    if url is None:
        return ""
    waits = _chained(url)
    if waits is not None:  # a chained frame, not extracted yet: it comes from a video
        frame = f'<div class="noimg">{_text(waits)}</div>'
        return f"<figure>{frame}<figcaption>{_text(label)}</figcaption></figure>"
    copy = report.image_copies.get(url)
    src = link(copy) if copy is not None else web_url(url)
    img = (
        f'<img src="{_text(src)}" alt="{_text(label)}">'
        if src is not None
        else '<div class="noimg">no local copy</div>'
    )
    original = web_url(url) or web_url(report.image_links.get(url))
    if original is not None:
        img = f'<a href="{_text(original)}" title="{_text(url)}">{img}</a>'
    return f"<figure>{img}<figcaption>{_text(label)}</figcaption></figure>"


def _poster(report: Report, row: JobRow, link: Callable[[str], str]) -> str | None:
    """The take's own first frame when it was kept, else the shot's start image."""
    own = report.posters.get(row.key)
    if own is not None:
        return link(own)
    if row.job is None:
        return None
    image = row.job.shot.image
    copy = report.image_copies.get(image)
    return link(copy) if copy is not None else web_url(image)


def _player(report: Report, row: JobRow, link: Callable[[str], str]) -> str | None:
    """The card's video player, or the line saying why it has none; None for other states."""
    if row.state is not JobState.DONE:
        return None
    if row.output is None or row.key not in report.videos:
        return f'<p class="note">video file missing: {_text(row.output or "")}</p>'
    poster = _poster(report, row, link)
    poster_attr = f' poster="{_text(poster)}"' if poster is not None else ""
    return (
        f'<video controls preload="metadata" playsinline '
        f'src="{_text(link(row.output))}"{poster_attr}></video>'
    )


def _video_notes(report: Report, row: JobRow, link: Callable[[str], str]) -> str:
    """A warning about the video, and links to the videos of the job's earlier renders."""
    parts = []
    warning = report.video_warnings.get(row.key)
    if warning is not None:
        parts.append(f'<p class="warn">{_text(warning)}</p>')
    earlier = report.earlier_videos.get(row.key, ())
    if earlier:
        links = ", ".join(
            f'<a href="{_text(link(path))}">{_text(PurePath(path).name)}</a>' for path in earlier
        )
        parts.append(f'<p class="earlier">earlier renders kept: {links}</p>')
    return "".join(parts)


def _explained(row: JobRow) -> bool:
    """Whether the card shows an error or a skip reason (or, in doubt, its own note) below."""
    if row.state is JobState.IN_DOUBT:
        return True
    if row.state is JobState.FAILED:
        return bool(row.error)
    return row.state is JobState.SKIPPED and bool(row.record.skip_reason)


def _marked(row: JobRow) -> tuple[str, str, str]:
    """The card's extra classes, the marks beside its name, and its note."""
    picked, rejected = bool(row.marks.get("picked")), bool(row.marks.get("rejected"))
    classes = (" picked" if picked else "") + (" rejected" if rejected else "")
    badges = ('<span class="pick">picked</span>' if picked else "") + (
        '<span class="reject">rejected</span>' if rejected else ""
    )
    note = row.marks.get("note")
    return classes, badges, f'<p class="take-note">{_text(note)}</p>' if note else ""


def _card(report: Report, row: JobRow, link: Callable[[str], str]) -> str:
    state = row.state.value
    classes, badges, note = _marked(row)
    parts = [
        f'<article class="card{classes}" data-job="{_text(row.key)}" data-state="{state}" '
        f'style="--st:var(--{state})">',
        f"<header><strong>{_text(row.key)}</strong>{badges}"
        f'<span class="badge">{state}</span></header>{note}',
    ]
    player = _player(report, row, link)
    if player is not None:
        parts.append(player)
    elif not _explained(row):
        parts.append(f'<p class="note">{_text(_STATE_TEXT[row.state])}</p>')
    parts.append(_video_notes(report, row, link))
    facts = [("task id", f"<code>{_text(row.task_id)}</code>" if row.task_id else "none")]
    facts.append(("credits", _text(thousands(row.credits))))
    lost = report.credits_lost.get(row.key)
    if lost:
        facts.append(("lost", f'<span class="over">{_text(thousands(lost))}</span>'))
    if row.output is not None:
        shown = row.record.output or row.output
        facts.append(("output", f'<a href="{_text(link(row.output))}">{_text(shown)}</a>'))
    if row.sha256 is not None and row.output is not None:
        facts.append(("sha256", f"<code>{_text(row.sha256[:16])}…</code>"))
    parts.append("<dl>" + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts) + "</dl>")
    if row.state is JobState.IN_DOUBT:
        parts.append(f'<p class="note">{_text(_STATE_TEXT[row.state])}</p>')
    if row.state in (JobState.FAILED, JobState.IN_DOUBT) and row.error:
        parts.append(f'<pre class="error">{_text(row.error)}</pre>')
    if row.state is JobState.SKIPPED and row.record.skip_reason:
        parts.append(f'<p class="note">{_text(row.record.skip_reason)}</p>')
    parts.append("</article>")
    return "".join(parts)


def _groups(rows: Iterable[JobRow]) -> Iterator[tuple[Shot | None, list[JobRow]]]:
    """Rows grouped by shot in manifest order; each job the manifest lacks on its own.

    A manifest's jobs come shot by shot, the takes of a shot together, so a shot's
    group ends where the next shot's rows begin: nothing is held but one group.
    """
    group: list[JobRow] = []
    shot: Shot | None = None
    for row in rows:
        this = row.job.shot if row.job is not None else None
        if group and (this is None or shot is None or this.id != shot.id):
            yield shot, group
            group = []
        shot = this
        group.append(row)
    if group:
        yield shot, group


def _shot(report: Report, shot: Shot | None, rows: list[JobRow], link: Callable[[str], str]) -> str:
    cards = "".join(_card(report, r, link) for r in rows)
    if shot is None:
        return (
            '<section class="shot" data-tags="[]">'
            f"<h2>{_text(rows[0].key)}</h2>"
            '<span class="facts">in the ledger, not in the manifest</span>'
            f'<div class="takes">{cards}</div></section>'
        )
    tags_json = json.dumps(list(shot.tags), ensure_ascii=False)
    facts = [
        shot.model_mode,
        f"{shot.duration:g} s",
        f"multi-shot {'on' if shot.multi_shot else 'off'}",
    ]
    if shot.takes > 1:
        facts.append(plural(shot.takes, "take"))
    if shot.line is not None:
        facts.append(f"line {shot.line}")
    spent = _spent(report, shot)
    tags = "".join(f'<span class="tag">{_text(t)}</span>' for t in shot.tags)
    frames = _image(report, shot.image, "start image", link)
    frames += _image(report, shot.tail_image_url, "tail image", link)
    return (
        f'<section class="shot" data-shot="{_text(shot.id)}" data-tags="{_text(tags_json)}" '
        f'style="--n:{min(len(rows), _TAKES_PER_ROW)}">'
        f'<h2>{_text(shot.id)}</h2><span class="facts">{_text(" · ".join(facts))}</span>{tags}'
        f"{spent}"
        f'<div class="body"><div class="frames">{frames}</div>'
        f'<p class="prompt">{_text(shot.prompt)}</p></div>'
        f'<div class="takes">{cards}</div></section>'
    )


def _spent(report: Report, shot: Shot) -> str:
    """The shot's credits over all its takes, failed and in-doubt ones included; and lost."""
    c = report.shot_credits.get(shot.id)
    if c is None:
        return ""
    lost = f' · <span class="over">{_text(thousands(c.lost))} lost</span>' if c.lost else ""
    return (
        f'<span class="spent" data-credits="{c.spent}" data-lost="{c.lost}">'
        f"{_text(plural(c.spent, 'credit'))} spent{lost}</span>"
    )


def _run_table(runs: Sequence[RunSpan]) -> str:
    if not runs:
        return ""
    lines = []
    for i, s in enumerate(runs, start=1):
        end = _text(s.ended) if s.ended else f"no end recorded (last event {_text(s.until)})"
        calls = "unknown" if s.api_calls is None else thousands(s.api_calls)
        status = str(s.exit_status) if s.exit_status is not None else ""
        if s.interrupted:
            status = f"{status}, interrupted" if status else "interrupted"
        lines.append(
            f"<tr><td>{i}</td><td>{_text(s.started)}</td><td>{end}</td>"
            f"<td>{span(s.seconds)}</td><td>{calls}</td><td>{_text(status)}</td></tr>"
        )
    return (
        '<details class="runs"><summary>runs</summary><table><tr><th>#</th><th>started</th>'
        "<th>ended</th><th>wall time</th><th>API calls</th><th>exit</th></tr>"
        + "".join(lines)
        + "</table></details>"
    )


def _committed(t: Totals) -> str:
    """Credits committed against the budget, with a meter when there is one."""
    if t.budget is None:
        return f"{thousands(t.credits_committed)} (no budget)"
    over = ' class="over"' if t.credits_committed > t.budget else ""
    return (
        f"<span{over}>{of_budget(t.credits_committed, t.budget)}</span> "
        f'<meter min="0" max="{t.budget}" value="{min(t.credits_committed, t.budget)}"></meter>'
    )


def _filters(report: Report) -> str:
    """The state chips, the state and tag selects, and the search box, with their counts."""
    counts = report.totals.counts
    chips = "".join(
        f'<li><button type="button" class="chip{"" if n else " zero"}" data-state="{s}" '
        f'style="background:var(--{s})">{s} {thousands(n)}</button></li>'
        for s, n in counts.items()
    )
    options = "".join(
        f'<option value="{s}">{s} ({thousands(n)})</option>' for s, n in counts.items() if n
    )
    tags = sorted({tag for r in report.rows if r.job is not None for tag in r.job.shot.tags})
    tag_options = "".join(f'<option value="{_text(tag)}">{_text(tag)}</option>' for tag in tags)
    return (
        f'<ul class="counts">{chips}</ul><div class="filters">'
        f'<label>state <select id="filter-state"><option value="">all</option>{options}'
        "</select></label>"
        f'<label>tag <select id="filter-tag"><option value="">all</option>{tag_options}'
        "</select></label>"
        '<label>search <input type="search" id="search" autocomplete="off" '
        'placeholder="shot, job or prompt"></label>'
        '<span id="matches"></span><span id="shown"></span></div>'
    )


def _header(report: Report, exports: str) -> str:
    t = report.totals
    runs = plural(t.runs, "run")
    if t.interrupted_runs:
        runs += f", {thousands(t.interrupted_runs)} interrupted"
    where = [f"run directory {report.run_dir}"]
    if report.manifest_path is not None:
        where.insert(0, f"manifest {report.manifest_path}")
    where.append(f"generated {report.generated}")
    lost = ' class="over"' if t.credits_lost else ""
    return (
        f'<header class="top"><h1>{_text(report.title)}</h1>'
        f'<p class="meta">{_text(" · ".join(where))}</p>{exports}'
        '<dl class="totals">'
        f'<div><dt>jobs</dt><dd id="total-jobs">{thousands(t.jobs)}</dd></div>'
        f'<div><dt>credits committed</dt><dd id="total-credits">{_committed(t)}</dd></div>'
        f"<div><dt>planned</dt><dd>{thousands(t.credits_planned)}</dd></div>"
        f'<div><dt>credits lost</dt><dd id="total-lost"{lost} '
        f'title="in doubt (the price that may have been charged) or failed">'
        f"{thousands(t.credits_lost)}</dd></div>"
        f'<div><dt>wall time</dt><dd id="total-wall">{span(t.wall_seconds)} '
        f"<small>({runs})</small></dd></div>"
        f'<div><dt>API calls</dt><dd id="total-calls">{thousands(t.api_calls)}</dd></div>'
        f"</dl>{_filters(report)}{_run_table(report.runs)}</header>"
    )


def write_html(
    report: Report,
    out: TextIO,
    *,
    base_dir: str,
    mode: PageMode | None = None,
    exports: Mapping[str, tuple[str, str]] | None = None,
) -> None:
    """Write the whole page to ``out``, one shot at a time; file links are relative to
    ``base_dir``, the report's directory, unless ``mode`` gives them.

    ``exports`` (as ``exported_files`` gives them) is read from the run directory
    when not given.
    """
    link: Callable[[str], str] = (
        mode.href if mode is not None else partial(file_href, base_dir=base_dir)
    )
    found = exported_files(report.run_dir) if exports is None else exports
    style = STYLE + (mode.style if mode is not None else "")
    out.write(
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{page_policy(mode)}">'
        '<link rel="icon" href="data:,">'
        f"<title>{_text(report.title)} · batchkling {'review' if mode else 'report'}</title>"
        f"<style>{style}</style></head><body>"
        f"{_header(report, _exports(found, link))}<main>"
    )
    for shot, rows in _groups(report.rows):
        out.write(_shot(report, shot, rows, link))
    out.write(f"</main><script>{SCRIPT}</script>")
    if mode is not None:
        out.write(f"<script>{mode.script}</script>")
    out.write("</body></html>\n")


def render_card(report: Report, row: JobRow, mode: PageMode) -> str:
    """One take's card alone, as the served page shows it (to replace one that changed)."""
    return _card(report, row, mode.href)


def render_html(report: Report, *, base_dir: str, mode: PageMode | None = None) -> str:
    """The whole page as text; file links relative to ``base_dir`` unless ``mode`` gives them."""
    buf = io.StringIO()
    write_html(report, buf, base_dir=base_dir, mode=mode)
    return buf.getvalue()
