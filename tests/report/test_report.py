"""Reports: totals from the fold, CSV neutralisation, HTML escaping, links, the command."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import re
import urllib.parse
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from batchkling._util import span
from batchkling.cli import main
from batchkling.ledger import LEDGER_NAME, Ledger, read_ledger
from batchkling.manifest.rules import SHOT_FIELDS
from batchkling.manifest.schemas import load_schema, validator_for
from batchkling.model import Job, JobState, Manifest, Shot
from batchkling.preflight.image_rules import copy_name
from batchkling.report.build import build_report, last_budget, run_spans
from batchkling.report.digest import digest_of
from batchkling.report.formats import CSV_COLUMNS, neutralise_cell, report_json
from batchkling.report.rows import job_rows
from batchkling.report.storyboard import file_href, render_html, web_url
from batchkling.state import fold
from tests.report_fixtures import (
    EVIL_ERROR,
    EVIL_PROMPT,
    EVIL_TAG,
    FORMULA_PROMPT,
    IN_DOUBT_ERROR,
    SKIP_REASON,
    RunDir,
    every_state_run,
    not_downloaded_run,
)

EXPECTED_STATES = {
    "opening": "done",
    "inject": "failed",
    "takes#1": "done",
    "takes#2": "running",
    "waiting": "pending",
    "doubt": "in_doubt",
    "finished": "completed",
    "over": "skipped",
}


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def run(tmp_path: Path) -> RunDir:
    return every_state_run(tmp_path)


def _json_report(run: RunDir, *extra: str) -> dict[str, Any]:
    status, out, err = _cli("report", str(run.manifest_path), "--format", "json", "-o", "-", *extra)
    assert status == 0, err
    doc: dict[str, Any] = json.loads(out)
    return doc


def _html(run: RunDir, *extra: str) -> str:
    status, out, err = _cli("report", str(run.manifest_path), *extra)
    assert status == 0, err
    return Path(out.strip()).read_text(encoding="utf-8")


class _Tags(HTMLParser):
    """Every start tag of a page, with its attributes, and the text of each script."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts[-1] += data

    def find(self, tag: str, **attrs: str) -> Iterator[dict[str, str | None]]:
        for name, got in self.tags:
            if name == tag and all(got.get(k) == v for k, v in attrs.items()):
                yield got


def _parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    parser.close()
    return parser


# -- pure parts -------------------------------------------------------------


def test_run_spans_measure_a_killed_run_to_its_last_event() -> None:
    """A run without run_ended lasts until the last event before the next run started."""
    events: list[dict[str, Any]] = [
        {"ts": "2026-01-01T00:00:00Z", "event": "run_started", "job": None},
        {"ts": "2026-01-01T00:00:12.5Z", "event": "intent", "job": "a", "credits": 1,
         "fingerprint": "f"},
        {"ts": "2026-01-01T01:00:00Z", "event": "run_started", "job": None},
        {"ts": "2026-01-01T01:00:30Z", "event": "run_ended", "job": None, "exit_status": 0,
         "api_calls": 7},
        {"ts": "2026-01-01T02:00:00Z", "event": "run_started", "job": None},
        {"ts": "2026-01-01T02:00:04Z", "event": "created", "job": "a", "task_id": "t"},
    ]  # fmt: skip
    spans = run_spans(fold(events).runs, digest_of(events).run_lasts)
    assert [s.seconds for s in spans] == [12.5, 30.0, 4.0]
    assert [s.interrupted for s in spans] == [True, False, True]
    assert [s.api_calls for s in spans] == [None, 7, None]
    assert spans[0].until == "2026-01-01T00:00:12.5Z"


def test_a_run_that_exited_130_is_interrupted() -> None:
    """Exit status 130 (Ctrl-C) counts as interrupted, like a run with no run_ended."""
    events: list[dict[str, Any]] = [
        {"ts": "2026-01-01T00:00:00Z", "event": "run_started", "job": None},
        {"ts": "2026-01-01T00:00:09Z", "event": "run_ended", "job": None, "exit_status": 130,
         "api_calls": 3},
        {"ts": "2026-01-01T01:00:00Z", "event": "run_started", "job": None},
        {"ts": "2026-01-01T01:00:05Z", "event": "run_ended", "job": None, "exit_status": 1,
         "api_calls": 2},
    ]  # fmt: skip
    st = fold(events)
    report = build_report([], st, digest=digest_of(events), title="t", generated="g", run_dir="/r")
    assert [s.interrupted for s in report.runs] == [True, False]
    assert report.totals.interrupted_runs == 1
    assert report.totals.wall_seconds == 14.0
    doc = report_json(report)
    assert [r["interrupted"] for r in doc["runs"]] == [True, False]
    page = render_html(report, base_dir="/r")
    assert "2 runs, 1 interrupted" in page and "130, interrupted" in page


def test_last_budget_is_the_latest_run_started_budget() -> None:
    """The budget shown without --budget is the one the last run was held to."""
    events: list[dict[str, Any]] = [
        {"event": "run_started", "budget": 100},
        {"event": "run_ended"},
        {"event": "run_started", "budget": 250},
    ]
    assert last_budget(events) == 250
    assert last_budget([{"event": "run_started", "budget": None}]) is None
    assert last_budget([]) is None


@pytest.mark.parametrize(
    ("cell", "expected"),
    [
        ("=1+1", "'=1+1"),
        ("+1", "'+1"),
        ("-1", "'-1"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("a=1", "a=1"),
        ("", ""),
    ],
)
def test_neutralise_cell(cell: str, expected: str) -> None:
    """Text that could start a formula gets a leading quote; other text is untouched."""
    assert neutralise_cell(cell) == expected


def test_web_url_allows_only_http_and_https() -> None:
    """Links to originals never carry javascript:, data: or relative URLs."""
    assert web_url("https://a.example/x.png") == "https://a.example/x.png"
    assert web_url("HTTP://a.example/x.png") == "HTTP://a.example/x.png"
    for bad in ("javascript:alert(1)", " javascript:alert(1)", "data:text/html,x", "x.png", None):
        assert web_url(bad) is None


def test_file_href_is_relative_and_percent_encoded() -> None:
    """A take's '#' and a space are encoded, so the browser asks for the right file."""
    assert file_href("/r/run/videos/a#2.mp4", "/r/run") == "videos/a%232.mp4"
    assert file_href("/r/run/videos/a b.mp4", "/r/out/sub") == "../../run/videos/a%20b.mp4"


def test_wall_times_are_written_as_spans(run: RunDir) -> None:
    """Wall times read as seconds, minutes or hours, the one way every command writes them."""
    report = build_report([], fold([]), title="t", generated="g", run_dir="/r")
    assert f'id="total-wall">{span(0)} ' in render_html(report, base_dir="/r")
    assert f'id="total-wall">{span(96)} ' in _html(run)


# -- a run in every state ---------------------------------------------------


def test_every_state_report_totals(run: RunDir) -> None:
    """Counts, credits, budget, wall time and API calls come from the fold of the ledger."""
    doc = _json_report(run)
    assert {j["job"]: j["state"] for j in doc["jobs"]} == EXPECTED_STATES
    assert [j["job"] for j in doc["jobs"]] == [j.key for j in run.manifest.jobs]
    totals = doc["totals"]
    assert totals["counts"] == {
        "pending": 1, "in_doubt": 1, "running": 1, "completed": 1, "done": 2, "failed": 1,
        "skipped": 1,
    }  # fmt: skip
    # opening 1000 + inject 1000 + takes#1 900 + takes#2 900 + doubt 1000 + finished 2000
    assert totals["credits_committed"] == 6800
    assert totals["credits_planned"] == sum(j.credits for j in run.manifest.jobs)
    assert totals["budget"] == 7500
    # Run 1 lasted 89 s; run 2 was killed 7 s after it started.
    assert totals["wall_seconds"] == 96.0
    assert (totals["runs"], totals["interrupted_runs"], totals["api_calls"]) == (2, 1, 40)
    rows = {j["job"]: j for j in doc["jobs"]}
    assert rows["inject"]["error"] == EVIL_ERROR
    assert rows["doubt"]["error"] == IN_DOUBT_ERROR
    assert rows["over"]["skip_reason"] == SKIP_REASON
    assert rows["takes#1"]["output"] == str(run.run_dir.absolute() / "videos" / "takes#1.mp4")
    assert rows["takes#2"]["take"] == 2 and rows["takes#2"]["model_mode"] == "pro"
    assert rows["opening"]["tags"] == ["act1", "hero"]


def test_json_report_matches_its_schema(run: RunDir) -> None:
    """The JSON report validates against schemas/report.schema.json."""
    doc = _json_report(run)
    errors = [e.message for e in validator_for("report.schema.json").iter_errors(doc)]
    assert errors == []
    no_manifest = report_json(
        build_report([], fold([]), title="t", generated="2026-01-01T00:00:00Z", run_dir="/r")
    )
    assert no_manifest["manifest"] is None
    assert not list(validator_for("report.schema.json").iter_errors(no_manifest))


def test_report_schema_describes_every_field() -> None:
    """The report schema is valid 2020-12 and every property in it carries a description."""
    schema = load_schema("report.schema.json")
    Draft202012Validator.check_schema(schema)
    missing: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                if "description" not in sub:
                    missing.append(f"{where}/{name}")
            for key, sub in node.items():
                walk(sub, f"{where}/{key}")
        elif isinstance(node, list):
            for i, sub in enumerate(node):
                walk(sub, f"{where}/{i}")

    walk(schema, "")
    assert missing == []
    assert set(schema["$defs"]["job"]["required"]) == set(CSV_COLUMNS)


def test_csv_has_every_manifest_field_and_neutralises_formulas(run: RunDir) -> None:
    """One row per job, every Shot field a column, and no cell a spreadsheet would execute."""
    status, out, err = _cli("report", str(run.manifest_path), "--format", "csv", "-o", "-")
    assert status == 0, err
    table = list(csv.DictReader(io.StringIO(out, newline="")))
    assert [r["job"] for r in table] == [j.key for j in run.manifest.jobs]
    # Every field a manifest's shot may hold (the shot schema's); the id is the "shot" column.
    shot_fields = set(SHOT_FIELDS) - {"id"}
    assert shot_fields <= set(table[0])
    rows = {r["job"]: r for r in table}
    assert rows["waiting"]["prompt"] == "'" + FORMULA_PROMPT
    assert rows["takes#1"]["prompt"].startswith("'@SUM(1,2)")
    assert rows["doubt"]["prompt"] == "'-1 the lamp flickers"
    assert rows["finished"]["prompt"] == "'+ the storm arrives"
    assert rows["inject"]["prompt"] == EVIL_PROMPT
    # Numbers are written as numbers, not as text to neutralise.
    assert (rows["finished"]["credits"], rows["finished"]["duration"]) == ("2000", "10")
    assert rows["opening"]["tags"] == "act1;hero"
    assert (
        rows["opening"]["sha256"]
        == hashlib.sha256((run.run_dir / "videos" / "opening.mp4").read_bytes()).hexdigest()
    )
    for row in table:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), cell


def test_html_escapes_every_value_from_the_manifest_and_the_api(run: RunDir) -> None:
    """Prompt, tag, error and task id show as text; the page has one script, no handlers."""
    page = _html(run)
    for raw in (EVIL_PROMPT, EVIL_TAG, EVIL_ERROR, "task-<inject>"):
        assert raw not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    parsed = _parse(page)
    assert [t for t, _ in parsed.tags if t == "script"] == ["script"]
    assert not [(t, a) for t, attrs in parsed.tags for a in attrs if a.startswith("on")]
    assert {t for t, _ in parsed.tags} <= {
        "html", "head", "meta", "link", "title", "style", "body", "header", "h1", "h2", "p",
        "dl", "div", "dt", "dd", "small", "span", "meter", "ul", "li", "button", "label",
        "select", "option", "details", "summary", "table", "tr", "th", "td", "main",
        "section", "figure", "a", "img", "figcaption", "article", "strong", "video", "code",
        "pre", "script", "input",
    }  # fmt: skip
    # The escaped values reach the page as their own text.
    cards = {a["data-job"]: a for a in parsed.find("article")}
    assert set(cards) == set(EXPECTED_STATES)
    assert {k: a["data-state"] for k, a in cards.items()} == EXPECTED_STATES
    (inject,) = parsed.find("section", **{"data-shot": "inject"})
    assert json.loads(inject["data-tags"] or "") == [EVIL_TAG]


def test_html_is_self_contained_and_its_script_is_the_only_one_allowed(run: RunDir) -> None:
    """No external script, style or font; the CSP admits exactly the inline script by hash."""
    page = _html(run)
    parsed = _parse(page)
    assert not list(parsed.find("link", rel="stylesheet"))
    assert all("src" not in a for t, a in parsed.tags if t == "script")
    assert "@import" not in page and "url(" not in page
    (csp,) = parsed.find("meta", **{"http-equiv": "Content-Security-Policy"})
    digest = hashlib.sha256(parsed.scripts[0].encode("utf-8")).digest()
    assert f"script-src 'sha256-{base64.b64encode(digest).decode()}'" in (csp["content"] or "")
    assert "default-src 'none'" in (csp["content"] or "")


def test_html_header_shows_totals(run: RunDir) -> None:
    """Name, counts, credits against the budget, wall time and API calls are in the header."""
    page = _html(run)
    assert "<h1>every-state</h1>" in page
    assert re.search(r'id="total-credits"><span>6,800 / 7,500</span>', page)
    assert "1 min 36 s" in page and "2 runs, 1 interrupted" in page
    assert 'id="total-calls">40<' in page
    for state, n in (("done", 2), ("in_doubt", 1), ("skipped", 1)):
        assert f'data-state="{state}" style="background:var(--{state})">{state} {n}<' in page


def test_videos_and_thumbnails_link_relative_to_the_report(run: RunDir) -> None:
    """Done jobs play their file by a relative path; thumbnails are local copies linking out."""
    page = _html(run)
    parsed = _parse(page)
    base = run.run_dir
    videos = {a["src"] or "": a for a in parsed.find("video")}
    assert set(videos) == {"videos/opening.mp4", "videos/takes%231.mp4"}
    for src, attrs in videos.items():
        assert (base / urllib.parse.unquote(src)).is_file()
        poster = attrs["poster"] or ""
        assert poster.startswith("images/") and (base / poster).is_file()
    start = run.job("opening").shot.image
    assert any(a["src"] == f"images/{copy_name(start, 'png')}" for a in parsed.find("img"))
    assert list(parsed.find("a", href=start)), "the start image links to its original URL"
    tail = run.job("opening").shot.tail_image_url
    assert tail is not None
    assert any(a["src"] == f"images/{copy_name(tail, 'png')}" for a in parsed.find("img"))


def test_output_elsewhere_gets_paths_relative_to_it(run: RunDir, tmp_path: Path) -> None:
    """With -o in another directory, video and image paths still resolve from there."""
    target = tmp_path / "elsewhere" / "deep" / "r.html"
    status, out, err = _cli("report", str(run.manifest_path), "-o", str(target))
    assert status == 0, err
    assert out.strip() == str(target)
    parsed = _parse(target.read_text(encoding="utf-8"))
    srcs = [a["src"] or "" for a in parsed.find("video")] + [
        a["src"] or "" for a in parsed.find("img")
    ]
    assert srcs and all(s.startswith("../../every-state.run/") for s in srcs)
    for src in srcs:
        assert (target.parent / urllib.parse.unquote(src)).resolve().is_file()


def test_without_local_copies_thumbnails_use_the_original_url(tmp_path: Path) -> None:
    """When pre-flight kept no copy, the thumbnail falls back to the image's own URL."""
    run = every_state_run(tmp_path, copies=False)
    parsed = _parse(_html(run))
    srcs = {a["src"] for a in parsed.find("img")}
    assert run.job("opening").shot.image in srcs
    assert not any((s or "").startswith("images/") for s in srcs)


def test_unsafe_image_urls_are_neither_linked_nor_loaded(tmp_path: Path) -> None:
    """A javascript: URL in a shot gives no link and no image source."""
    shot = Shot(id="s", prompt="p", image="javascript:alert(1)", tail_image_url="data:x")
    manifest = Manifest(path=str(tmp_path / "m.yaml"), sha256="0" * 64, shots=(shot,))
    st = fold([])
    report = build_report(
        job_rows(manifest.jobs, st, tmp_path), st, title="t", generated="g",
        run_dir=str(tmp_path),
    )  # fmt: skip
    page = render_html(report, base_dir=str(tmp_path))
    assert "javascript:" not in page and "data:x" not in page
    assert page.count('class="noimg"') == 2


def test_done_job_whose_video_is_gone_says_so(tmp_path: Path) -> None:
    """A done job without its file on disk shows a note, not a broken player."""
    run = every_state_run(tmp_path, videos=False)
    page = _html(run)
    assert "<video" not in page
    assert page.count("video file missing") == 2


def test_report_of_a_run_with_no_videos_downloaded_yet(tmp_path: Path) -> None:
    """Completed jobs are listed without players, and the report creates no videos/."""
    run = not_downloaded_run(tmp_path)
    page = _html(run)
    parsed = _parse(page)
    assert "<video" not in page
    cards = {a["data-job"]: a["data-state"] for a in parsed.find("article")}
    assert cards == {"alpha#1": "completed", "alpha#2": "completed", "beta": "completed"}
    assert page.count("finished on the server, not downloaded yet") == 3
    assert not (run.run_dir / "videos").exists()
    doc = _json_report(run)
    assert all(j["output"] is None and j["sha256"] is None for j in doc["jobs"])
    assert doc["totals"]["budget"] is None and doc["totals"]["api_calls"] == 9
    # The two takes of alpha sit side by side in one shot.
    (alpha,) = parsed.find("section", **{"data-shot": "alpha"})
    assert alpha["style"] == "--n:2"


# -- the command ------------------------------------------------------------


def test_report_needs_a_manifest_or_a_run_dir() -> None:
    """Without either, the command says what it needs."""
    status, _, err = _cli("report")
    assert status == 2
    assert "MANIFEST or --run-dir" in err


def test_run_dir_alone_uses_the_manifest_the_ledger_names(run: RunDir) -> None:
    """--run-dir without MANIFEST still shows prompts and images, from the header's manifest."""
    status, out, err = _cli("report", "--run-dir", str(run.run_dir))
    assert status == 0, err
    page = (run.run_dir / "report.html").read_text(encoding="utf-8")
    assert out.strip() == str(run.run_dir / "report.html")
    assert "<h1>every-state</h1>" in page and "the lighthouse" in page


def test_run_dir_alone_without_its_manifest_shows_the_ledger(run: RunDir) -> None:
    """If the manifest is gone, the report still lists every job the ledger knows."""
    run.manifest_path.unlink()
    status, out, err = _cli("report", "--run-dir", str(run.run_dir), "--format", "json", "-o", "-")
    assert status == 0, err
    assert "cannot read the manifest" in err
    doc = json.loads(out)
    assert doc["manifest"] is None and doc["title"] == "every-state.run"
    states = {j["job"]: j["state"] for j in doc["jobs"]}
    assert states == {k: v for k, v in EXPECTED_STATES.items() if k != "waiting"}
    assert doc["totals"]["budget"] == 7500  # as the last run recorded it


def test_missing_ledger_with_run_dir_is_an_error(tmp_path: Path) -> None:
    """A run directory with no ledger is reported, not turned into an empty report."""
    status, _, err = _cli("report", "--run-dir", str(tmp_path))
    assert status == 2
    assert "no ledger" in err
    assert not (tmp_path / "report.html").exists()


def test_budget_option_overrides_the_recorded_budget(run: RunDir) -> None:
    """--budget is what the credits are compared against."""
    assert _json_report(run, "--budget", "9000")["totals"]["budget"] == 9000


def test_report_reads_a_locked_run_without_changing_it(run: RunDir) -> None:
    """A report works while a run holds the lock, and leaves the ledger as it was."""
    before = (run.run_dir / LEDGER_NAME).read_bytes()
    with Ledger.open(run.run_dir):
        status, _, err = _cli("report", str(run.manifest_path), "--format", "csv")
    assert status == 0, err
    assert (run.run_dir / LEDGER_NAME).read_bytes() == before
    assert (run.run_dir / "report.csv").read_text(encoding="utf-8").startswith("job,shot,")
    assert not list(run.run_dir.glob(".report.*"))


def test_a_job_the_manifest_no_longer_has_gets_its_own_card(run: RunDir) -> None:
    """Jobs only the ledger knows come after the manifest's, as cards without a shot."""
    st = fold(read_ledger(run.run_dir / LEDGER_NAME).events)
    jobs: tuple[Job, ...] = tuple(j for j in run.manifest.jobs if j.key != "inject")
    rows = job_rows(jobs, st, run.run_dir)
    report = build_report(rows, st, title="t", generated="g", run_dir=str(run.run_dir))
    page = render_html(report, base_dir=str(run.run_dir))
    parsed = _parse(page)
    order = [a["data-job"] for a in parsed.find("article")]
    assert order[-1] == "inject"
    assert "in the ledger, not in the manifest" in page
    assert rows[-1].state is JobState.FAILED


def test_report_of_a_manifest_never_run_lists_every_job_pending(tmp_path: Path) -> None:
    """Before any run, report MANIFEST is exit 2 naming where it looked; once a run directory
    exists that sent nothing, the storyboard shows every job pending, written there."""
    manifest = tmp_path / "fresh.yaml"
    manifest.write_text(
        "version: 1\nshots:\n  - id: a\n    prompt: p\n    image: https://i.invalid/a.png\n",
        encoding="utf-8",
    )
    status, out, err = _cli("report", str(manifest))
    assert status == 2 and "no run of" in err and not (tmp_path / "fresh.run").exists()
    sha = hashlib.sha256(manifest.read_bytes()).hexdigest()
    with Ledger.open(tmp_path / "fresh.run") as led:
        led.append_sync(
            "header", None, version="0", format=1, manifest=str(manifest), manifest_sha256=sha
        )
    status, out, err = _cli("report", str(manifest))
    assert status == 0, err
    written = Path(out.strip())
    assert written == tmp_path / "fresh.run" / "report.html"
    assert written.stat().st_mode & 0o777 == 0o644
    page = written.read_text(encoding="utf-8")
    assert "<h1>fresh</h1>" in page
    assert {a["data-job"]: a["data-state"] for a in _parse(page).find("article")} == {
        "a": "pending"
    }


def test_a_manifest_changed_since_the_run_is_flagged(run: RunDir) -> None:
    """Prompts shown may differ from what was sent: the report says so on stderr."""
    with run.manifest_path.open("a", encoding="utf-8") as fh:
        fh.write("# edited after the run\n")
    status, _, err = _cli("report", str(run.manifest_path))
    assert status == 0, err
    assert "changed since the last run" in err
