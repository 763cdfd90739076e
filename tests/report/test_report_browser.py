"""The HTML report in headless Chromium: opened from disk after a real run against the emulator.

The run renders six jobs in two runs: four done, one failed (the emulator fails
every task of the second run), one skipped by the budget. The emulator is
stopped before the page opens, so every image must come from the local copies
kept in the run directory.
"""

from __future__ import annotations

import io
import json
import os
import struct
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

from batchkling.cli import main
from batchkling.emulator import EmulatorConfig
from tests.emulator_fixtures import FAST_GEN, TEST_KEY, LiveEmulator
from tests.report_fixtures import EVIL_PROMPT, every_state_run
from tests.screenshot import CHROMIUM, INSTALL_HINT, launch_chromium, screenshot, wait_for_media

pytestmark = pytest.mark.browser

JOBS = {"hero": "done", "crowd#1": "done", "crowd#2": "done", "lamp": "done"}
JOBS_RUN_2 = {"storm": "failed", "coda": "skipped"}
ALL_JOBS = {**JOBS, **JOBS_RUN_2}


def require_chromium(path: Path = CHROMIUM) -> None:
    """Skip without Chromium on a developer's machine; in CI (``$CI`` set), fail instead."""
    if path.exists():
        return
    message = f"{path} is missing: install it with `{INSTALL_HINT}`"
    if os.environ.get("CI"):
        pytest.fail(f"browser tests must run in CI, but {message}.")
    pytest.skip(f"browser tests need Chromium; {message}.")


@dataclass(frozen=True)
class FinishedRun:
    manifest: Path
    run_dir: Path
    report: Path


def _cli(*argv: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), out=out, err=err)
    # The second run ends with a failed job: exit status 1 is its honest answer.
    assert status in (0, 1), err.getvalue()


def _finished_run(root: Path) -> FinishedRun:
    live = LiveEmulator(EmulatorConfig(gen_seconds=FAST_GEN, seed=1)).start()
    try:
        manifest = root / "browser.yaml"
        manifest.write_text(
            textwrap.dedent(
                f"""\
                version: 1
                name: browser-check
                image_base_url: {live.base_url}/__emulator/frames/
                shots:
                  - id: hero
                    prompt: {json.dumps(EVIL_PROMPT)}
                    image: hero.png
                    tail_image_url: hero-end.png
                    tags: [lead]
                  - id: crowd
                    prompt: The crowd parts as the lantern passes
                    image: crowd.png
                    takes: 2
                    tags: [wide]
                  - id: lamp
                    prompt: The lamp turns and its beam sweeps the fog
                    image: lamp.png
                    tags: [lead]
                  - id: storm
                    prompt: Waves break over the rocks
                    image: storm.png
                    tags: [wide]
                  - id: coda
                    prompt: Dawn over the quiet sea
                    image: coda.png
                """
            ),
            encoding="utf-8",
        )
        api = ["--api-base", live.base_url, "--poll-interval", "0.05,0.2", "--rate", "50/s"]
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("SJINN_API_KEY", TEST_KEY)
            _cli("run", str(manifest), *api, "--budget", "4000", "--allow-partial", "--quiet")
            live.set_config(fail_rate=1.0)
            _cli("run", str(manifest), *api, "--budget", "5000", "--allow-partial", "--quiet")
    finally:
        # From here on the image host is gone: thumbnails must be the local copies.
        live.stop()
    run_dir = root / "browser.run"
    _cli("report", str(manifest))
    return FinishedRun(manifest, run_dir, run_dir / "report.html")


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> FinishedRun:
    require_chromium()
    return _finished_run(tmp_path_factory.mktemp("browser-run"))


@pytest.fixture(scope="module")
def browser(finished_run: FinishedRun) -> Iterator[Browser]:
    # After the run: the run uses its own event loop, which must not meet Playwright's.
    require_chromium()
    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        try:
            yield chromium
        finally:
            chromium.close()


@dataclass
class Watched:
    """A page and what it said: console errors, uncaught exceptions, dialogs it opened."""

    page: Page
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)


OpenReport = Callable[[Path], Watched]


@pytest.fixture
def open_report(browser: Browser) -> Iterator[OpenReport]:
    """Open a report file in a fresh page that records errors and dialogs; closed after."""
    pages: list[Page] = []

    def open_(report: Path) -> Watched:
        page = browser.new_page()
        pages.append(page)
        watched = Watched(page)

        def on_console(msg: ConsoleMessage) -> None:
            if msg.type == "error":
                watched.errors.append(msg.text)

        def on_dialog(dialog: Dialog) -> None:
            watched.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda exc: watched.errors.append(str(exc)))
        page.on("dialog", on_dialog)
        page.goto(report.absolute().as_uri())
        wait_for_media(page)
        return watched

    yield open_
    for page in pages:
        page.close()


def _visible_jobs(page: Page) -> dict[str, str]:
    found: dict[str, str] = page.evaluate(
        """() => Object.fromEntries(Array.from(document.querySelectorAll(".card"))
              .filter(c => c.offsetParent !== null)
              .map(c => [c.dataset.job, c.dataset.state]))"""
    )
    return found


def test_every_card_is_present_in_manifest_order(
    finished_run: FinishedRun, open_report: OpenReport
) -> None:
    """One card per job, in manifest order, in the state the runs left it in."""
    w = open_report(finished_run.report)
    order = w.page.eval_on_selector_all(".card", "cs => cs.map(c => c.dataset.job)")
    assert order == list(ALL_JOBS)
    assert _visible_jobs(w.page) == ALL_JOBS
    assert w.errors == [] and w.dialogs == []


def test_done_videos_load_from_disk(finished_run: FinishedRun, open_report: OpenReport) -> None:
    """Every done job's <video> reaches a ready state from its file beside the report."""
    w = open_report(finished_run.report)
    videos = w.page.eval_on_selector_all(
        ".card[data-state=done] video",
        "vs => vs.map(v => [v.closest('.card').dataset.job, v.readyState, v.currentSrc,"
        " v.videoWidth])",
    )
    assert [v[0] for v in videos] == list(JOBS)
    for job, ready, src, width in videos:
        assert ready >= 2, job
        assert src.startswith("file://") and src.endswith(".mp4"), src
        assert width > 0, job
    assert w.page.locator(".card[data-state=failed] video").count() == 0
    assert w.errors == []


def test_thumbnails_resolve_from_local_copies_after_the_host_is_gone(
    finished_run: FinishedRun,
    open_report: OpenReport,
) -> None:
    """Start and tail images load from the run directory and link to their originals."""
    w = open_report(finished_run.report)
    images = w.page.eval_on_selector_all(
        "figure img", "is => is.map(i => [i.currentSrc, i.naturalWidth])"
    )
    assert len(images) == 6  # five start images and one tail image
    for src, width in images:
        assert src.startswith((finished_run.run_dir / "images").as_uri()), src
        assert width > 0, src
    hrefs = w.page.eval_on_selector_all("figure a", "as => as.map(a => a.href)")
    assert all(h.startswith("http://127.0.0.1:") for h in hrefs)
    assert w.errors == []


def test_filter_by_state_and_by_tag_hides_the_other_cards(
    finished_run: FinishedRun,
    open_report: OpenReport,
) -> None:
    """Choosing a state or a tag leaves only the matching cards visible."""
    w = open_report(finished_run.report)
    page = w.page
    page.select_option("#filter-state", "failed")
    assert _visible_jobs(page) == {"storm": "failed"}
    assert page.locator("#shown").inner_text() == "1 of 6 jobs shown"
    page.select_option("#filter-state", "done")
    assert _visible_jobs(page) == JOBS
    # A shot with no visible card is hidden with its prompt and images.
    assert not page.locator('section[data-shot="storm"]').is_visible()
    page.select_option("#filter-tag", "wide")
    assert _visible_jobs(page) == {"crowd#1": "done", "crowd#2": "done"}
    page.select_option("#filter-state", "")
    assert _visible_jobs(page) == {"crowd#1": "done", "crowd#2": "done", "storm": "failed"}
    page.select_option("#filter-tag", "")
    page.click('.chip[data-state="skipped"]')
    assert _visible_jobs(page) == {"coda": "skipped"}
    page.click('.chip[data-state="skipped"]')
    assert _visible_jobs(page) == ALL_JOBS
    assert w.errors == []


def test_injected_script_prompt_is_text_and_never_runs(
    finished_run: FinishedRun,
    open_report: OpenReport,
) -> None:
    """The prompt `<script>alert(1)</script>...` shows as text; no dialog opens."""
    w = open_report(finished_run.report)
    page = w.page
    assert page.locator('section[data-shot="hero"] .prompt').inner_text() == EVIL_PROMPT
    assert page.locator("script").count() == 1
    page.hover('section[data-shot="hero"]')
    assert w.dialogs == [] and w.errors == []


def test_failed_job_shows_the_error_from_the_api(
    finished_run: FinishedRun, open_report: OpenReport
) -> None:
    """The failed card carries its task id and the error text the API gave."""
    w = open_report(finished_run.report)
    card = w.page.locator('.card[data-job="storm"]')
    assert card.locator(".error").inner_text().strip()
    assert card.locator("code").first.inner_text().strip()
    assert "failed" in w.page.locator('.chip[data-state="failed"]').inner_text()


def test_every_state_run_renders_without_errors(
    tmp_path: Path,
    open_report: OpenReport,
) -> None:
    """A run with all seven states shows eight cards; its take's video (`#` in the name) plays."""
    run = every_state_run(tmp_path)
    _cli("report", str(run.manifest_path))
    w = open_report(run.run_dir / "report.html")
    assert w.page.locator(".card").count() == 8
    states = set(w.page.eval_on_selector_all(".card", "cs => cs.map(c => c.dataset.state)"))
    assert states == {"pending", "in_doubt", "running", "completed", "done", "failed", "skipped"}
    ready = w.page.eval_on_selector_all("video", "vs => vs.map(v => v.readyState)")
    assert ready and all(r >= 2 for r in ready)
    assert w.errors == [] and w.dialogs == []


def test_screenshot_writes_a_png_of_the_report(
    finished_run: FinishedRun, browser: Browser, tmp_path: Path
) -> None:
    """tests.screenshot renders the report to a PNG of the requested width."""
    out = tmp_path / "report.png"
    screenshot(finished_run.report, out, width=1000, height=700, browser=browser)
    data = out.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n")
    assert struct.unpack(">II", data[16:24]) == (1000, 700)


def test_missing_chromium_skips_locally_and_fails_in_ci(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without Chromium the tests skip naming the install command, unless $CI is set."""
    missing = tmp_path / "no-chromium"
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        require_chromium(missing)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="must run in CI"):
        require_chromium(missing)
