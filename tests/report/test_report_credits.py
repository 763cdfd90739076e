"""Credits per shot and credits lost, search, the grid and interrupted runs, from real runs.

One run directory is made against the emulator in three runs: six jobs done,
then one failed (the emulator fails every task), then one in doubt (its create's
answer is lost, and ``--no-reconcile`` leaves it so); the last job is skipped by
the budget. The HTML is checked in headless Chromium, the JSON and CSV as files.
"""

from __future__ import annotations

import csv
import io
import json
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from batchkling.cli import main
from batchkling.emulator import EmulatorConfig
from batchkling.ledger import LEDGER_NAME
from batchkling.manifest.load import load_manifest
from batchkling.manifest.schemas import validator_for
from tests.emulator_fixtures import FAST_GEN, TEST_KEY, LiveEmulator
from tests.report.test_report_browser import require_chromium
from tests.runner_helpers import ledger_lines, spawn_run, write_manifest
from tests.screenshot import launch_chromium, wait_for_media

PRICE = 1000  # 5 s, standard
STATES = {
    "harbor#1": "done", "harbor#2": "done", "lighthouse": "done", "gulls": "done",
    "nets": "done", "tide": "done", "storm": "failed", "fog": "in_doubt", "dawn": "skipped",
}  # fmt: skip
MANIFEST = """\
version: 1
name: credits-check
image_base_url: {base}/__emulator/frames/
defaults:
  duration: 5
shots:
  - id: harbor
    prompt: Boats rock gently in the harbor at dusk
    image: harbor.png
    takes: 2
  - id: lighthouse
    prompt: The beam of the lighthouse sweeps the bay
    image: lighthouse.png
  - id: gulls
    prompt: Gulls circle over the fishing boats
    image: gulls.png
  - id: nets
    prompt: Old hands mend the nets on the quay
    image: nets.png
  - id: tide
    prompt: The tide pulls back from the rocks
    image: tide.png
  - id: storm
    prompt: Waves break over the harbor wall
    image: storm.png
  - id: fog
    prompt: A lantern glows through the fog
    image: fog.png
  - id: dawn
    prompt: Dawn over the quiet sea
    image: dawn.png
"""


def _cli(*argv: str) -> str:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    # A run left with a failed or an in-doubt job answers 1: that is its honest answer.
    assert status in (0, 1), err.getvalue()
    return out.getvalue()


@dataclass(frozen=True)
class CreditsRun:
    manifest: Path
    run_dir: Path


def _make_run(root: Path) -> CreditsRun:
    live = LiveEmulator(EmulatorConfig(gen_seconds=FAST_GEN, seed=3)).start()
    try:
        manifest = root / "credits.yaml"
        manifest.write_text(MANIFEST.format(base=live.base_url), encoding="utf-8")
        api = ["--api-base", live.base_url, "--poll-interval", "0.05,0.2", "--rate", "50/s"]
        flags = ["--allow-partial", "--quiet", "--no-reconcile"]
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SJINN_API_KEY", TEST_KEY)
            mp.setenv("XDG_STATE_HOME", str(root / "state"))
            _cli("run", str(manifest), *api, "--budget", str(6 * PRICE), *flags)
            live.set_config(fail_rate=1.0)
            _cli("run", str(manifest), *api, "--budget", str(7 * PRICE), *flags)
            live.set_config(fail_rate=0.0, lost_response_rate=1.0)
            _cli("run", str(manifest), *api, "--budget", str(8 * PRICE), *flags)
    finally:
        live.stop()
    run = CreditsRun(manifest, root / "credits.run")
    for fmt in ("html", "json", "csv"):
        _cli("report", str(manifest), "--format", fmt)
    return run


@pytest.fixture(scope="module")
def credits_run(tmp_path_factory: pytest.TempPathFactory) -> CreditsRun:
    return _make_run(tmp_path_factory.mktemp("credits-run"))


# -- JSON and CSV -------------------------------------------------------------


def test_json_has_credits_per_shot_and_credits_lost(credits_run: CreditsRun) -> None:
    """Failed and in-doubt takes count in their shot's credits and in the credits lost."""
    doc = json.loads((credits_run.run_dir / "report.json").read_text(encoding="utf-8"))
    assert not list(validator_for("report.schema.json").iter_errors(doc))
    jobs = {j["job"]: j for j in doc["jobs"]}
    assert {k: j["state"] for k, j in jobs.items()} == STATES
    assert doc["totals"]["credits_lost"] == 2 * PRICE
    assert doc["totals"]["credits_committed"] == 8 * PRICE
    lost = {k: j["credits_lost"] for k, j in jobs.items() if j["credits_lost"]}
    assert lost == {"storm": PRICE, "fog": PRICE}
    shots = {s["shot"]: s for s in doc["shots"]}
    assert list(shots) == ["harbor", "lighthouse", "gulls", "nets", "tide", "storm", "fog", "dawn"]
    assert shots["harbor"] == {"shot": "harbor", "jobs": 2, "credits": 2 * PRICE, "credits_lost": 0}
    assert shots["storm"] == {"shot": "storm", "jobs": 1, "credits": PRICE, "credits_lost": PRICE}
    assert shots["fog"] == {"shot": "fog", "jobs": 1, "credits": PRICE, "credits_lost": PRICE}
    assert shots["dawn"]["credits"] == 0
    assert (jobs["harbor#2"]["shot_credits"], jobs["harbor#2"]["shot_credits_lost"]) == (
        2 * PRICE,
        0,
    )
    assert (jobs["fog"]["shot_credits"], jobs["fog"]["shot_credits_lost"]) == (PRICE, PRICE)


def test_csv_has_credits_per_shot_and_credits_lost(credits_run: CreditsRun) -> None:
    """The CSV carries the same three columns, as numbers."""
    text = (credits_run.run_dir / "report.csv").read_text(encoding="utf-8")
    rows = {r["job"]: r for r in csv.DictReader(io.StringIO(text, newline=""))}
    picked = {
        k: (r["credits"], r["credits_lost"], r["shot_credits"], r["shot_credits_lost"])
        for k, r in rows.items()
    }
    assert picked["storm"] == ("1000", "1000", "1000", "1000")
    assert picked["fog"] == ("1000", "1000", "1000", "1000")
    assert picked["harbor#1"] == ("1000", "0", "2000", "0")
    assert picked["dawn"] == ("0", "0", "0", "0")


def _wait_for_event(ledger: Path, event: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ledger.exists() and f'"event":"{event}"' in ledger.read_text(encoding="utf-8"):
            return
        time.sleep(0.05)
    raise AssertionError(f"no {event} in {ledger}")


def test_a_run_stopped_by_ctrl_c_counts_as_interrupted(
    tmp_path: Path, live_emulator_factory: Callable[..., LiveEmulator]
) -> None:
    """A run that ended with exit status 130 is an interrupted run in every format."""
    emu = live_emulator_factory(gen_seconds=(1.0, 2.0))
    manifest = write_manifest(tmp_path, emu.base_url, 4)
    run_dir = tmp_path / "board.run"
    proc = spawn_run(manifest, emu.base_url, "--concurrency", "2")
    _wait_for_event(run_dir / LEDGER_NAME, "created")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=40)
    assert proc.returncode == 130, out + err
    assert ledger_lines(run_dir)[-1]["exit_status"] == 130
    doc = json.loads(_cli("report", str(manifest), "--format", "json", "-o", "-"))
    assert doc["totals"]["runs"] == 1 and doc["totals"]["interrupted_runs"] == 1
    assert doc["runs"][0]["exit_status"] == 130 and doc["runs"][0]["interrupted"] is True
    page = Path(_cli("report", str(manifest)).strip()).read_text(encoding="utf-8")
    assert "1 run, 1 interrupted" in page and "130, interrupted" in page


# -- the page in Chromium -------------------------------------------------------


@pytest.fixture(scope="module")
def browser(credits_run: CreditsRun) -> Iterator[Browser]:
    require_chromium()
    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        try:
            yield chromium
        finally:
            chromium.close()


OpenPage = Callable[..., Page]


@pytest.fixture
def open_page(browser: Browser, credits_run: CreditsRun) -> Iterator[OpenPage]:
    """Open the report at a viewport width; the page fails the test if it logs an error."""
    pages: list[tuple[Page, list[str]]] = []

    def open_(width: int = 1280) -> Page:
        page = browser.new_page(viewport={"width": width, "height": 900})
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        pages.append((page, errors))
        page.goto((credits_run.run_dir / "report.html").absolute().as_uri())
        wait_for_media(page)
        return page

    yield open_
    for page, errors in pages:
        page.close()
        assert errors == []


def _visible(page: Page) -> list[str]:
    found: list[str] = page.eval_on_selector_all(
        ".card", "cs => cs.filter(c => c.offsetParent !== null).map(c => c.dataset.job)"
    )
    return found


def _search(page: Page, text: str) -> tuple[list[str], str, str]:
    page.fill("#search", text)
    return _visible(page), page.inner_text("#matches"), page.inner_text("#shown")


@pytest.mark.browser
def test_search_finds_shots_jobs_and_prompt_text(open_page: OpenPage) -> None:
    """Typing narrows the cards to those whose shot id, job key or prompt holds the text."""
    page = open_page()
    assert _search(page, "gulls") == (["gulls"], "1 match", "1 of 9 jobs shown")
    assert _search(page, "HARBOR#2")[0] == ["harbor#2"]
    # Prompt text: "harbor" is in two prompts (harbor's takes and storm).
    assert _search(page, "harbor") == (
        ["harbor#1", "harbor#2", "storm"],
        "3 matches",
        "3 of 9 jobs shown",
    )
    assert _search(page, "lantern glows")[0] == ["fog"]
    assert _search(page, "no such thing") == ([], "0 matches", "0 of 9 jobs shown")
    assert not page.locator('section[data-shot="gulls"]').is_visible()
    assert _search(page, "")[0] == list(STATES)
    assert page.inner_text("#matches") == ""


@pytest.mark.browser
def test_search_works_with_the_state_filter(open_page: OpenPage) -> None:
    """The search and the state filter narrow together, and the count says so."""
    page = open_page()
    page.select_option("#filter-state", "done")
    assert _search(page, "harbor") == (["harbor#1", "harbor#2"], "2 matches", "2 of 9 jobs shown")
    page.select_option("#filter-state", "failed")
    assert _visible(page) == ["storm"]
    page.select_option("#filter-state", "")
    assert _visible(page) == ["harbor#1", "harbor#2", "storm"]


def _rows(page: Page) -> dict[str, Any]:
    """Cards per row of the grid (by the top of their shot), cards side by side (by their
    own top), and the page's widths."""
    found: dict[str, Any] = page.evaluate(
        """() => {
          const count = (key) => {
            const rows = {};
            for (const card of document.querySelectorAll(".card")) {
              const top = Math.round(key(card).getBoundingClientRect().top);
              rows[top] = (rows[top] || 0) + 1;
            }
            return Object.keys(rows).map(Number).sort((a, b) => a - b).map(t => rows[t]);
          };
          const cards = Array.from(document.querySelectorAll(".card"))
            .map(c => c.getBoundingClientRect());
          return {
            perRow: count(c => c.closest(".shot")),
            sideBySide: count(c => c),
            right: Math.max(...cards.map(r => r.right)),
            narrowest: Math.min(...cards.map(r => r.width)),
            scroll: document.documentElement.scrollWidth,
            client: document.documentElement.clientWidth,
          };
        }"""
    )
    return found


@pytest.mark.browser
def test_cards_fill_a_wide_window(open_page: OpenPage) -> None:
    """At 1600 px the cards sit more than three to a row, out to the window's right side."""
    grid = _rows(open_page(1600))
    assert grid["perRow"][0] > 3
    assert grid["right"] > grid["client"] - 60
    assert grid["scroll"] <= grid["client"]


@pytest.mark.browser
def test_cards_stack_in_a_narrow_window(open_page: OpenPage) -> None:
    """At 400 px there is one card to a row, as wide as the window allows, with no overflow."""
    grid = _rows(open_page(400))
    assert set(grid["sideBySide"]) == {1}
    assert grid["narrowest"] > 400 - 100
    assert grid["scroll"] <= grid["client"]


@pytest.mark.browser
def test_page_shows_credits_per_shot_and_lost(open_page: OpenPage) -> None:
    """Each shot says what it spent, failed and in-doubt takes included; the header the loss."""
    page = open_page()
    assert page.inner_text("#total-lost") == "2,000"
    spent = page.eval_on_selector_all(
        ".shot .spent",
        "ss => ss.map(s => [s.closest('.shot').dataset.shot, s.innerText])",
    )
    assert dict(spent) == {
        "harbor": "2,000 credits spent",
        "lighthouse": "1,000 credits spent",
        "gulls": "1,000 credits spent",
        "nets": "1,000 credits spent",
        "tide": "1,000 credits spent",
        "storm": "1,000 credits spent · 1,000 lost",
        "fog": "1,000 credits spent · 1,000 lost",
        "dawn": "0 credits spent",
    }
    assert "8,000" in page.inner_text("#total-credits")
    assert "lost" in page.inner_text('.card[data-job="fog"] dl')
    assert "lost" not in page.inner_text('.card[data-job="gulls"] dl')


def test_the_manifest_prices_every_job_alike(tmp_path: Path) -> None:
    """The figures above assume one price per job: 5 s, standard."""
    path = tmp_path / "credits.yaml"
    path.write_text(MANIFEST.format(base="https://i.invalid"), encoding="utf-8")
    assert {j.credits for j in load_manifest(path).jobs} == {PRICE}
