"""The storyboard page's style sheet and script, inline in every page it writes.

Kept apart from the markup (``batchkling.report.storyboard``) that they style
and drive; the page's Content-Security-Policy admits the script by its hash.
A page served by ``batchkling review`` adds its own style and script
(``PageMode``), and its policy admits those too.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SCRIPT", "STYLE", "PageMode", "page_policy"]


@dataclass(frozen=True)
class PageMode:
    """What a served page changes of the storyboard: ``href`` gives each file's URL
    (an empty one for a file it does not serve); ``style`` and ``script`` are added
    after the storyboard's own, and the page may fetch from its own origin."""

    # A path on disk -> the URL the page fetches it by.
    href: Callable[[str], str]
    style: str = ""
    script: str = ""


def _hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"


def page_policy(mode: PageMode | None) -> str:
    """The page's Content-Security-Policy: only its own inline scripts run, by their
    hashes; a file from disk loads its media from disk, a served page from its server."""
    if mode is None:
        return (
            "default-src 'none'; img-src file: http: https: data:; media-src file: http: https:; "
            f"style-src 'unsafe-inline'; script-src {_hash(SCRIPT)}"
        )
    return (
        "default-src 'none'; img-src 'self' http: https: data:; media-src 'self'; "
        f"style-src 'unsafe-inline'; script-src {_hash(SCRIPT)} {_hash(mode.script)}; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'"
    )


# The shots fill the window in a grid of columns at least 320 px wide: a new column
# every 336 px (a column and its gap) past the page's padding. A shot with several
# takes spans as many columns as it has takes (up to four), never more than there
# are; a browser without min() in a span gives it one column, its takes wrapping.
# A picked take is ringed, a rejected one dimmed (clearer again under the pointer);
# its note sits under its name. On a narrow screen the header scrolls away instead
# of covering half of it. A shot off screen is not laid out until it nears the
# window (content-visibility), so that a page of 100,000 cards opens, scrolls and
# filters without laying out all.
STYLE = """
:root{--bg:#f6f6f4;--fg:#1d1d1f;--dim:#6b6b70;--card:#fff;--line:#dcdcd8;
--pending:#8a8a90;--in_doubt:#c77700;--running:#1f6fd1;--completed:#0d8f8f;
--done:#23883a;--failed:#c62828;--skipped:#7a52b3}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
background:var(--bg);color:var(--fg)}
[hidden]{display:none!important}
.top{padding:16px 24px;background:var(--card);border-bottom:1px solid var(--line);
position:sticky;top:0;z-index:1}
@media (max-width:703px){.top{position:static}}
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
input[type=search]{font:inherit;padding:2px 6px;min-width:16em}
main{padding:16px 24px;display:grid;--cols:1;gap:16px;align-items:start;
grid-template-columns:repeat(var(--cols),minmax(0,1fr))}
@media (min-width:704px){main{--cols:2}}
@media (min-width:1040px){main{--cols:3}}
@media (min-width:1376px){main{--cols:4}}
@media (min-width:1712px){main{--cols:5}}
@media (min-width:2048px){main{--cols:6}}
@media (min-width:2384px){main{--cols:7}}
@media (min-width:2720px){main{--cols:8}}
.shot{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;
min-width:0;grid-column:span 1;grid-column:span min(var(--n,1),var(--cols));
content-visibility:auto;contain-intrinsic-size:auto 420px}
.shot h2{display:inline;margin:0 8px 0 0;font-size:16px}
.facts{color:var(--dim)}
.spent{display:block;color:var(--dim);font-size:12px}
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
.takes{display:grid;grid-template-columns:repeat(auto-fill,minmax(min(100%,260px),1fr));
align-items:start;gap:12px;margin-top:10px}
.card{min-width:0;border:1px solid var(--line);border-left:6px solid var(--st);border-radius:6px;
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
.exports{margin:4px 0 0;font-size:13px}
.exports a{margin-right:4px}
.card.picked{box-shadow:0 0 0 2px var(--done)}
.card.rejected{opacity:.45}
.card.rejected:hover,.card.rejected:focus-within{opacity:.8}
.pick,.reject{margin-left:auto;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600}
.pick{background:#e3f4e6;color:#175c27}
.reject{background:#f2e1e1;color:#8e1b1b}
.pick+.reject{margin-left:0}
.take-note{margin:0;padding:4px 8px;background:#fffbe6;border-left:3px solid #e0c341;
border-radius:3px;font-size:12px;white-space:pre-wrap;overflow-wrap:anywhere}
"""

# Plain DOM code, no library: select a state or a tag, or type in the search box,
# hide the other cards, and a shot whose cards are all hidden. What each card is
# found by is read once from the page, lower-cased; a change touches only the
# cards whose visibility changes, so that 100,000 cards filter at each keystroke.
SCRIPT = """
(function () {
  "use strict";
  var state = document.getElementById("filter-state");
  var tag = document.getElementById("filter-tag");
  var search = document.getElementById("search");
  var shown = document.getElementById("shown");
  var matches = document.getElementById("matches");
  var each = Array.prototype.map;
  var total = 0;
  var shots = each.call(document.querySelectorAll(".shot"), function (shot) {
    var prompt = shot.querySelector(".prompt");
    var cards = each.call(shot.querySelectorAll(".card"), function (card) {
      return {
        el: card,
        state: card.getAttribute("data-state"),
        key: (card.getAttribute("data-job") || "").toLowerCase()
      };
    });
    total += cards.length;
    return {
      el: shot,
      tags: JSON.parse(shot.getAttribute("data-tags") || "[]"),
      text: ((shot.getAttribute("data-shot") || "") + " " +
             (prompt ? prompt.textContent : "")).toLowerCase(),
      cards: cards
    };
  });
  function number(n) { return n.toLocaleString("en-US"); }
  function apply() {
    var query = search.value.trim().toLowerCase();
    var n = 0;
    shots.forEach(function (shot) {
      var tagOk = !tag.value || shot.tags.indexOf(tag.value) >= 0;
      var shotFound = !query || shot.text.indexOf(query) >= 0;
      var any = false;
      shot.cards.forEach(function (card) {
        var ok = tagOk && (!state.value || card.state === state.value) &&
          (shotFound || card.key.indexOf(query) >= 0);
        if (card.el.hidden === ok) { card.el.hidden = !ok; }
        if (ok) { any = true; n += 1; }
      });
      if (shot.el.hidden === any) { shot.el.hidden = !any; }
    });
    shown.textContent = number(n) + " of " + number(total) +
      (total === 1 ? " job" : " jobs") + " shown";
    matches.textContent = query ? number(n) + (n === 1 ? " match" : " matches") : "";
  }
  state.addEventListener("change", apply);
  tag.addEventListener("change", apply);
  search.addEventListener("input", apply);
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
