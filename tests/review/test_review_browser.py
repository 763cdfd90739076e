"""The review page in headless Chromium, served by the real app under uvicorn on loopback.

Each test serves its own copy of a finished run of three shots of two takes,
marks takes by keyboard and by click, and checks what the page shows, what it
keeps over a reload and what reached the ledger. One test follows a run that
is still rendering.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from batchkling.ledger import LEDGER_NAME, read_ledger
from batchkling.review.inbox import absorb_if_free, drop
from tests.emulator_fixtures import LiveEmulator
from tests.report.test_report_browser import require_chromium
from tests.review.review_helpers import TAKES, Board, ReviewThread, make_board
from tests.runner_helpers import spawn_run, write_manifest
from tests.screenshot import launch_chromium, wait_for_media

pytestmark = pytest.mark.browser

MARK_EVENTS = ("picked", "rejected", "noted")


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Board:
    require_chromium()
    return make_board(tmp_path_factory.mktemp("review-browser"))


@pytest.fixture(scope="module")
def browser(finished: Board) -> Iterator[Browser]:
    # After the run: the run's event loop must not meet Playwright's.
    with sync_playwright() as pw:
        chromium = launch_chromium(pw)
        try:
            yield chromium
        finally:
            chromium.close()


class Review:
    """A served copy of the board and a page open on it, recording its errors."""

    def __init__(self, run_dir: Path, manifest: Path, page: Page) -> None:
        self.run_dir = run_dir
        self.server = ReviewThread(run_dir, manifest).start()
        self.page = page
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def open(self) -> Page:
        self.page.goto(self.server.url)
        self.page.wait_for_selector("#live.up")
        wait_for_media(self.page)
        return self.page

    def card(self, job: str) -> Any:
        return self.page.locator(f'.card[data-job="{job}"]')

    def marks(self) -> list[tuple[str, str, Any]]:
        """The review events of the ledger: (event, job, on or note)."""
        events = read_ledger(self.run_dir / LEDGER_NAME).events
        return [
            (e["event"], e["job"], e.get("note", e.get("on")))
            for e in events
            if e["event"] in MARK_EVENTS
        ]

    def wait_marks(self, count: int, timeout: float = 10) -> list[tuple[str, str, Any]]:
        deadline = time.monotonic() + timeout
        while len(found := self.marks()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return found


@pytest.fixture
def review(finished: Board, browser: Browser, tmp_path: Path) -> Iterator[Callable[..., Review]]:
    """Serve a copy of the board (or the run directory given) and open a page on it."""
    made: list[Review] = []

    def make(run_dir: Path | None = None, manifest: Path | None = None) -> Review:
        if run_dir is None:
            run_dir = tmp_path / "board.run"
            shutil.copytree(finished.run_dir, run_dir)
        r = Review(run_dir, manifest or finished.manifest, browser.new_page())
        made.append(r)
        return r

    yield make
    for r in made:
        r.page.close()
        r.server.stop()


def _classes(page: Page) -> dict[str, str]:
    found: dict[str, str] = page.evaluate(
        """() => Object.fromEntries(Array.from(document.querySelectorAll(".card")).map(
              c => [c.dataset.job, ["picked", "rejected"].filter(k => c.classList.contains(k))
                                  .join(" ")]))"""
    )
    return found


def test_marks_by_keyboard_and_click_are_kept_over_a_reload(
    review: Callable[..., Review],
) -> None:
    """Arrow + p picks, a click picks and rejects, a note is saved; a reload shows them all."""
    r = review()
    page = r.open()
    assert page.eval_on_selector(".card.current", "c => c.dataset.job") == "s01#1"
    page.keyboard.press("ArrowRight")
    assert page.eval_on_selector(".card.current", "c => c.dataset.job") == "s01#2"
    page.keyboard.press("p")
    r.card("s03#2").locator(".do-pick").click()
    r.card("s02#1").locator(".do-reject").click()
    r.card("s02#2").locator(".note-input").fill("warmer grade, keep the flare")
    r.card("s02#2").locator(".do-note").click()
    marks = r.wait_marks(4)
    assert marks == [
        ("picked", "s01#2", True),
        ("picked", "s03#2", True),
        ("rejected", "s02#1", True),
        ("noted", "s02#2", "warmer grade, keep the flare"),
    ]
    page.reload()
    page.wait_for_selector("#live.up")
    expected = {job: "" for job in TAKES}
    expected.update({"s01#2": "picked", "s03#2": "picked", "s02#1": "rejected"})
    assert _classes(page) == expected
    assert r.card("s01#2").locator(".pick").inner_text() == "picked"
    assert r.card("s02#1").locator(".reject").inner_text() == "rejected"
    assert r.card("s02#2").locator(".take-note").inner_text() == "warmer grade, keep the flare"
    assert r.card("s02#2").locator(".note-input").input_value() == "warmer grade, keep the flare"
    assert r.errors == []


def test_one_pick_per_shot_and_x_unpicks(review: Callable[..., Review]) -> None:
    """Picking another take of a shot replaces the pick; rejecting the picked take unpicks it."""
    r = review()
    page = r.open()
    page.keyboard.press("p")  # s01#1
    page.keyboard.press("ArrowRight")
    page.keyboard.press("p")  # s01#2 replaces it
    assert _classes(page)["s01#1"] == "" and _classes(page)["s01#2"] == "picked"
    page.keyboard.press("x")  # rejecting the pick unpicks it
    r.wait_marks(3)
    page.wait_for_timeout(1500)  # a poll in between must not bring the old marks back
    assert _classes(page)["s01#2"] == "rejected"
    assert _classes(page)["s01#1"] == ""
    assert r.marks()[-1] == ("rejected", "s01#2", True)
    assert r.errors == []


def test_space_plays_and_pauses_the_current_take(review: Callable[..., Review]) -> None:
    """Space starts the current take's video and pauses it again."""
    r = review()
    page = r.open()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")  # s02#1
    video = '.card[data-job="s02#1"] video'
    page.keyboard.press(" ")
    page.wait_for_function(f"() => !document.querySelector('{video}').paused")
    page.keyboard.press(" ")
    page.wait_for_function(f"() => document.querySelector('{video}').paused")
    assert r.errors == []


def test_play_the_cut_plays_the_chosen_take_of_each_shot(review: Callable[..., Review]) -> None:
    """The cut: the pick, else the first done take, never a rejected one; one after another."""
    r = review()
    page = r.open()
    r.card("s01#1").locator(".do-reject").click()
    r.card("s02#2").locator(".do-pick").click()
    r.wait_marks(2)
    page.wait_for_function("() => !document.querySelector('#play-cut').disabled", timeout=5000)
    page.wait_for_timeout(1200)  # the poll after the marks
    page.click("#play-cut")
    cut = page.locator("#cut")
    assert cut.get_attribute("data-cut") == "s01#2 s02#2 s03#1"
    assert cut.get_attribute("data-playing") == "s01#2"
    page.wait_for_function("() => document.querySelector('#cut-video').readyState >= 2")
    src = page.eval_on_selector("#cut-video", "v => v.currentSrc")
    assert "/files/videos/s01%232.mp4?token=" in src
    # At the end of a take the next one plays.
    page.eval_on_selector("#cut-video", "v => { v.currentTime = v.duration; }")
    page.wait_for_function("() => document.querySelector('#cut').dataset.playing === 's02#2'")
    page.keyboard.press("Escape")
    assert not cut.is_visible()
    assert r.errors == []


def test_marks_made_elsewhere_show_without_a_reload(review: Callable[..., Review]) -> None:
    """A pick dropped into the inbox by another program shows within a poll or two."""
    r = review()
    page = r.open()
    drop(r.run_dir, "picked", "s03#1", shot="s03", on=True)
    drop(r.run_dir, "noted", "s03#1", note="from the command line")
    absorb_if_free(r.run_dir)
    page.wait_for_selector('.card[data-job="s03#1"].picked', timeout=5000)
    assert r.card("s03#1").locator(".take-note").inner_text() == "from the command line"
    assert r.errors == []


def test_a_fetch_without_the_token_is_refused(review: Callable[..., Review]) -> None:
    """From the page itself, the API answers 403 without the token header and 200 with it."""
    r = review()
    page = r.open()
    codes = page.evaluate(
        """async () => {
             const token = new URLSearchParams(location.search).get("token");
             const bare = await fetch("/api/state");
             const post = await fetch("/api/mark", {method: "POST",
               headers: {"Content-Type": "application/json"},
               body: JSON.stringify({event: "picked", job: "s01#1"})});
             const file = await fetch("/files/videos/s01%231.mp4");
             const good = await fetch("/api/state", {headers: {"X-Batchkling-Token": token}});
             return [bare.status, post.status, file.status, good.status];
           }"""
    )
    assert codes == [403, 403, 403, 200]
    assert r.marks() == []


def test_a_run_in_progress_updates_the_page_live(
    review: Callable[..., Review],
    live_emulator_factory: Callable[..., LiveEmulator],
    tmp_path: Path,
) -> None:
    """Takes still rendering turn done, with their videos, while the page stays open."""
    emu = live_emulator_factory(gen_seconds=(1.5, 2.0))
    root = tmp_path / "live"
    root.mkdir()
    manifest = write_manifest(root, emu.base_url, 1, takes=2, name="live")
    # In another process: this one's event loop is Playwright's.
    submit = spawn_run(manifest, emu.base_url, "--no-wait")
    said = submit.communicate(timeout=30)
    assert submit.returncode == 0, said
    r = review(root / "live.run", manifest)
    page = r.open()
    states = page.eval_on_selector_all(".card", "cs => cs.map(c => c.dataset.state)")
    assert states == ["running", "running"]
    assert page.locator(".card video").count() == 0
    collect = spawn_run(manifest, emu.base_url)
    try:
        page.wait_for_function(
            """() => Array.from(document.querySelectorAll(".card")).every(
                 c => c.dataset.state === "done" && c.querySelector("video") &&
                      c.querySelector("video").readyState >= 2)""",
            timeout=30_000,
        )
    finally:
        said = collect.communicate(timeout=30)
    assert collect.returncode == 0, said
    assert page.locator('.chip[data-state="done"]').inner_text() == "done 2"
    # The redrawn cards keep their controls, and a pick still works on them.
    r.card("s01#2").locator(".do-pick").click()
    assert r.wait_marks(1) == [("picked", "s01#2", True)]
    assert r.errors == []
