"""The HTML storyboard of a run: one self-contained file that works opened from disk. Pure.

Every value that comes from the manifest, the ledger or the API goes through
``_text`` (element content and quoted attributes) or, for URLs, through
``_web_url`` / ``_file_href`` first: only ``http(s)`` links to originals, and
files by a percent-encoded path relative to the report. A Content-Security-Policy
allows only the one inline script, by its hash, so that a value that slipped
through escaping still could not run.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import urllib.parse
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import PurePath

from batchkling._util import thousands
from batchkling.model import JobState, Shot
from batchkling.report.build import Report, RunSpan
from batchkling.report.rows import JobRow

__all__ = ["file_href", "format_seconds", "render_html", "web_url"]

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

_CSS = """
:root{--bg:#f6f6f4;--fg:#1d1d1f;--dim:#6b6b70;--card:#fff;--line:#dcdcd8;
--pending:#8a8a90;--in_doubt:#c77700;--running:#1f6fd1;--completed:#0d8f8f;
--done:#23883a;--failed:#c62828;--skipped:#7a52b3}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
background:var(--bg);color:var(--fg)}
[hidden]{display:none!important}
.top{padding:16px 24px;background:var(--card);border-bottom:1px solid var(--line);
position:sticky;top:0;z-index:1}
h1{margin:0 0 4px;font-size:20px}
.meta{margin:0;color:var(--dim);font-size:12px;word-break:break-all}
.totals{display:flex;flex-wrap:wrap;gap:8px 28px;margin:12px 0 8px}
.totals div{display:flex;flex-direction:column}
.totals dt{color:var(--dim);font-size:11px;text-transform:uppercase;letter-spacing:.04em}
.totals dd{margin:0;font-size:16px;font-weight:600}
meter{width:160px;height:10px}
.over{color:var(--failed)}
.counts{display:flex;flex-wrap:wrap;gap:6px;margin:8px 0;padding:0;list-style:none}
.chip{border:0;border-radius:12px;padding:2px 10px;color:#fff;font:inherit;cursor:pointer}
.chip.zero{opacity:.35}
.filters{display:flex;flex-wrap:wrap;gap:16px;align-items:center;color:var(--dim)}
select{font:inherit}
details.runs{margin-top:8px;color:var(--dim);font-size:12px}
details.runs table{border-collapse:collapse}
details.runs td,details.runs th{padding:2px 10px 2px 0;text-align:left}
main{padding:16px 24px;display:flex;flex-wrap:wrap;align-items:flex-start;gap:16px}
.shot{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;
width:calc(var(--n,1) * 312px + 20px);max-width:100%}
.shot h2{display:inline;margin:0 8px 0 0;font-size:16px}
.facts{color:var(--dim)}
.tag{display:inline-block;background:#ececea;border-radius:4px;padding:0 6px;margin-left:4px;
font-size:12px}
.body{display:flex;flex-direction:column;gap:8px;margin-top:8px}
.frames{display:flex;gap:8px}
figure{margin:0;width:144px}
figure img,.noimg{width:144px;height:81px;object-fit:cover;border-radius:4px;display:block;
background:#e4e4e0}
.noimg{display:flex;align-items:center;justify-content:center;color:var(--dim);font-size:12px}
figcaption{font-size:11px;color:var(--dim)}
.prompt{margin:0;white-space:pre-wrap;overflow-wrap:anywhere}
.takes{display:flex;flex-wrap:wrap;align-items:flex-start;gap:12px;margin-top:10px}
.card{width:300px;border:1px solid var(--line);border-left:6px solid var(--st);border-radius:6px;
padding:8px 10px;display:flex;flex-direction:column;gap:6px}
.card header{display:flex;justify-content:space-between;gap:8px}
.badge{color:#fff;background:var(--st);border-radius:10px;padding:0 8px;font-size:12px}
.card video{width:100%;border-radius:4px;background:#000}
.card dl{margin:0;display:grid;grid-template-columns:auto 1fr;gap:0 8px;font-size:12px}
.card dt{color:var(--dim)}
.card dd{margin:0;overflow-wrap:anywhere}
.note{margin:0;color:var(--dim);font-size:12px}
.warn{margin:0;padding:4px 8px;background:#fff4e0;color:#7a4a00;border-radius:4px;font-size:12px}
.earlier{margin:0;font-size:12px;color:var(--dim);overflow-wrap:anywhere}
.error{margin:0;padding:6px 8px;background:#fdecea;color:#8e1b1b;border-radius:4px;
white-space:pre-wrap;overflow-wrap:anywhere;font:12px/1.4 ui-monospace,monospace}
"""

# Plain DOM code, no library: select a state or a tag, hide the other cards, and
# a shot whose cards are all hidden.
_JS = """
(function () {
  "use strict";
  var state = document.getElementById("filter-state");
  var tag = document.getElementById("filter-tag");
  var shown = document.getElementById("shown");
  var cards = document.querySelectorAll(".card");
  function apply() {
    var n = 0;
    document.querySelectorAll(".shot").forEach(function (shot) {
      var tags = JSON.parse(shot.getAttribute("data-tags") || "[]");
      var tagOk = !tag.value || tags.indexOf(tag.value) >= 0;
      var any = false;
      shot.querySelectorAll(".card").forEach(function (card) {
        var ok = tagOk && (!state.value || card.getAttribute("data-state") === state.value);
        card.hidden = !ok;
        if (ok) { any = true; n += 1; }
      });
      shot.hidden = !any;
    });
    shown.textContent = n + " of " + cards.length + " jobs shown";
  }
  state.addEventListener("change", apply);
  tag.addEventListener("change", apply);
  document.querySelectorAll(".chip").forEach(function (chip) {
    chip.addEventListener("click", function () {
      var s = chip.getAttribute("data-state");
      state.value = state.value === s ? "" : s;
      apply();
    });
  });
  apply();
})();
"""

_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_JS.encode("utf-8")).digest()).decode("ascii")
_CSP = (
    "default-src 'none'; img-src file: http: https: data:; media-src file: http: https:; "
    f"style-src 'unsafe-inline'; script-src 'sha256-{_SCRIPT_HASH}'"
)


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


def format_seconds(seconds: float) -> str:
    """A wall time for people: ``45.2 s``, ``3 min 05 s``, ``2 h 07 min``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def _number(value: float) -> str:
    # A narrow no-break space groups digits without a comma that reads as a decimal point.
    return thousands(value, sep="\u202f")


def _image(report: Report, url: str | None, label: str, base_dir: str) -> str:
    if url is None:
        return ""
    copy = report.image_copies.get(url)
    src = file_href(copy, base_dir) if copy is not None else web_url(url)
    img = (
        f'<img src="{_text(src)}" alt="{_text(label)}">'
        if src is not None
        else '<div class="noimg">no local copy</div>'
    )
    link = web_url(url)
    if link is not None:
        img = f'<a href="{_text(link)}" title="{_text(url)}">{img}</a>'
    return f"<figure>{img}<figcaption>{_text(label)}</figcaption></figure>"


def _poster(report: Report, row: JobRow, base_dir: str) -> str | None:
    """The take's own first frame when it was kept, else the shot's start image."""
    own = report.posters.get(row.key)
    if own is not None:
        return file_href(own, base_dir)
    if row.job is None:
        return None
    image = row.job.shot.image
    copy = report.image_copies.get(image)
    return file_href(copy, base_dir) if copy is not None else web_url(image)


def _player(report: Report, row: JobRow, base_dir: str) -> str | None:
    """The card's video player, or the line saying why it has none; None for other states."""
    if row.state is not JobState.DONE:
        return None
    if row.output is None or row.key not in report.videos:
        return f'<p class="note">video file missing: {_text(row.output or "")}</p>'
    poster = _poster(report, row, base_dir)
    poster_attr = f' poster="{_text(poster)}"' if poster is not None else ""
    return (
        f'<video controls preload="metadata" playsinline '
        f'src="{_text(file_href(row.output, base_dir))}"{poster_attr}></video>'
    )


def _video_notes(report: Report, row: JobRow, base_dir: str) -> str:
    """A warning about the video, and links to the videos of the job's earlier renders."""
    parts = []
    warning = report.video_warnings.get(row.key)
    if warning is not None:
        parts.append(f'<p class="warn">{_text(warning)}</p>')
    earlier = report.earlier_videos.get(row.key, ())
    if earlier:
        links = ", ".join(
            f'<a href="{_text(file_href(path, base_dir))}">{_text(PurePath(path).name)}</a>'
            for path in earlier
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


def _card(report: Report, row: JobRow, base_dir: str) -> str:
    state = row.state.value
    parts = [
        f'<article class="card" data-job="{_text(row.key)}" data-state="{state}" '
        f'style="--st:var(--{state})">',
        f'<header><strong>{_text(row.key)}</strong><span class="badge">{state}</span></header>',
    ]
    player = _player(report, row, base_dir)
    if player is not None:
        parts.append(player)
    elif not _explained(row):
        parts.append(f'<p class="note">{_text(_STATE_TEXT[row.state])}</p>')
    parts.append(_video_notes(report, row, base_dir))
    facts = [("task id", f"<code>{_text(row.task_id)}</code>" if row.task_id else "none")]
    facts.append(("credits", _text(_number(row.credits))))
    if row.output is not None:
        shown = row.record.output or row.output
        facts.append(
            ("output", f'<a href="{_text(file_href(row.output, base_dir))}">{_text(shown)}</a>')
        )
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


def _groups(rows: Sequence[JobRow]) -> Iterator[tuple[Shot | None, list[JobRow]]]:
    """Rows grouped by shot in manifest order; each job the manifest lacks on its own."""
    by_shot: dict[str, list[JobRow]] = defaultdict(list)
    order: list[tuple[Shot | None, str]] = []
    for row in rows:
        if row.job is None:
            order.append((None, row.key))
            by_shot["\0" + row.key].append(row)
            continue
        shot = row.job.shot
        if shot.id not in by_shot:
            order.append((shot, shot.id))
        by_shot[shot.id].append(row)
    for known, key in order:
        yield known, by_shot[key if known is not None else "\0" + key]


def _shot(report: Report, shot: Shot | None, rows: list[JobRow], base_dir: str) -> str:
    cards = "".join(_card(report, r, base_dir) for r in rows)
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
        facts.append(f"{shot.takes} takes")
    if shot.line is not None:
        facts.append(f"line {shot.line}")
    tags = "".join(f'<span class="tag">{_text(t)}</span>' for t in shot.tags)
    frames = _image(report, shot.image, "start image", base_dir)
    frames += _image(report, shot.tail_image_url, "tail image", base_dir)
    return (
        f'<section class="shot" data-shot="{_text(shot.id)}" data-tags="{_text(tags_json)}" '
        f'style="--n:{min(len(rows), _TAKES_PER_ROW)}">'
        f'<h2>{_text(shot.id)}</h2><span class="facts">{_text(" · ".join(facts))}</span>{tags}'
        f'<div class="body"><div class="frames">{frames}</div>'
        f'<p class="prompt">{_text(shot.prompt)}</p></div>'
        f'<div class="takes">{cards}</div></section>'
    )


def _run_table(runs: Sequence[RunSpan]) -> str:
    if not runs:
        return ""
    lines = []
    for i, s in enumerate(runs, start=1):
        end = _text(s.ended) if s.ended else f"no end recorded (last event {_text(s.until)})"
        calls = "unknown" if s.api_calls is None else str(s.api_calls)
        status = "interrupted" if s.interrupted else str(s.exit_status)
        lines.append(
            f"<tr><td>{i}</td><td>{_text(s.started)}</td><td>{end}</td>"
            f"<td>{format_seconds(s.seconds)}</td><td>{calls}</td><td>{_text(status)}</td></tr>"
        )
    return (
        '<details class="runs"><summary>runs</summary><table><tr><th>#</th><th>started</th>'
        "<th>ended</th><th>wall time</th><th>API calls</th><th>exit</th></tr>"
        + "".join(lines)
        + "</table></details>"
    )


def _header(report: Report) -> str:
    t = report.totals
    credits = f"{_number(t.credits_committed)}"
    if t.budget is not None:
        over = ' class="over"' if t.credits_committed > t.budget else ""
        credits = (
            f"<span{over}>{credits} of {_number(t.budget)}</span> "
            f'<meter min="0" max="{t.budget}" value="{min(t.credits_committed, t.budget)}">'
            f"</meter>"
        )
    else:
        credits += " (no budget)"
    wall = format_seconds(t.wall_seconds)
    runs = f"{t.runs} run{'s' if t.runs != 1 else ''}"
    if t.interrupted_runs:
        runs += f", {t.interrupted_runs} interrupted"
    chips = "".join(
        f'<li><button type="button" class="chip{"" if n else " zero"}" data-state="{s}" '
        f'style="background:var(--{s})">{s} {n}</button></li>'
        for s, n in t.counts.items()
    )
    options = "".join(f'<option value="{s}">{s} ({n})</option>' for s, n in t.counts.items() if n)
    tags = sorted({tag for r in report.rows if r.job is not None for tag in r.job.shot.tags})
    tag_options = "".join(f'<option value="{_text(tag)}">{_text(tag)}</option>' for tag in tags)
    where = [f"run directory {report.run_dir}"]
    if report.manifest_path is not None:
        where.insert(0, f"manifest {report.manifest_path}")
    where.append(f"generated {report.generated}")
    return (
        f'<header class="top"><h1>{_text(report.title)}</h1>'
        f'<p class="meta">{_text(" · ".join(where))}</p>'
        '<dl class="totals">'
        f'<div><dt>jobs</dt><dd id="total-jobs">{t.jobs}</dd></div>'
        f'<div><dt>credits committed</dt><dd id="total-credits">{credits}</dd></div>'
        f"<div><dt>planned</dt><dd>{_number(t.credits_planned)}</dd></div>"
        f'<div><dt>wall time</dt><dd id="total-wall">{wall} <small>({runs})</small></dd></div>'
        f'<div><dt>API calls</dt><dd id="total-calls">{t.api_calls}</dd></div>'
        f'</dl><ul class="counts">{chips}</ul>'
        '<div class="filters">'
        f'<label>state <select id="filter-state"><option value="">all</option>{options}'
        "</select></label>"
        f'<label>tag <select id="filter-tag"><option value="">all</option>{tag_options}'
        '</select></label><span id="shown"></span></div>'
        f"{_run_table(report.runs)}</header>"
    )


def render_html(report: Report, *, base_dir: str) -> str:
    """The whole page; file links are relative to ``base_dir``, the report's directory."""
    shots = "".join(_shot(report, shot, rows, base_dir) for shot, rows in _groups(report.rows))
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
        '<link rel="icon" href="data:,">'
        f"<title>{_text(report.title)} · batchkling report</title>"
        f"<style>{_CSS}</style></head><body>"
        f"{_header(report)}<main>{shots}</main>"
        f"<script>{_JS}</script></body></html>\n"
    )
