"""Run directories to review, the review server in a thread, and the docs' screenshot.

    python -m tests.review.review_helpers docs/review.png

renders a board of three shots of two takes against the emulator, picks one
take and rejects another, serves the review page and saves a PNG of it.
"""

from __future__ import annotations

import argparse
import io
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import uvicorn

from batchkling.cli import main as cli_main
from batchkling.emulator import EmulatorConfig
from batchkling.manifest.load import load_manifest
from batchkling.review.inbox import absorb_if_free, drop
from batchkling.review.server import bind_loopback, create_app, new_token, review_url
from tests.emulator_fixtures import FAST_GEN, TEST_KEY, LiveEmulator
from tests.runner_helpers import FAST, write_manifest

__all__ = ["TAKES", "Board", "ReviewThread", "main", "make_board", "run_board"]

TAKES = ["s01#1", "s01#2", "s02#1", "s02#2", "s03#1", "s03#2"]


@dataclass(frozen=True)
class Board:
    """A manifest of three shots of two takes and the run directory of its run."""

    manifest: Path
    run_dir: Path


def _cli(*argv: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    status = cli_main(list(argv), out=out, err=err)
    return status, out.getvalue() + err.getvalue()


def run_board(manifest: Path, base_url: str, *extra: str, expect: int = 0) -> None:
    """``batchkling run MANIFEST`` against the emulator at ``base_url``, in this process."""
    import os

    before = os.environ.get("SJINN_API_KEY")
    os.environ["SJINN_API_KEY"] = TEST_KEY
    try:
        status, said = _cli("run", str(manifest), "--api-base", base_url, *FAST, *extra)
    finally:
        if before is None:
            del os.environ["SJINN_API_KEY"]
        else:
            os.environ["SJINN_API_KEY"] = before
    assert status == expect, said


def make_board(root: Path) -> Board:
    """Render every take of a three-shot board; the emulator is gone when it returns."""
    live = LiveEmulator(EmulatorConfig(gen_seconds=FAST_GEN, seed=3)).start()
    try:
        manifest = write_manifest(root, live.base_url, 3, takes=2, name="board")
        run_board(manifest, live.base_url)
    finally:
        live.stop()
    return Board(manifest, root / "board.run")


class ReviewThread:
    """The review app served by uvicorn in a thread on a free loopback port."""

    def __init__(self, run_dir: Path, manifest: Path | None = None) -> None:
        self.token = new_token()
        self._sock = bind_loopback(0)
        self.port: int = self._sock.getsockname()[1]
        loaded = load_manifest(manifest) if manifest is not None else None
        app = create_app(run_dir, loaded, token=self.token, port=self.port)
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True
        )

    @property
    def url(self) -> str:
        """The page's URL with the token."""
        return review_url(self.port, self.token)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReviewThread:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the review server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Write the screenshot of the review page of a freshly rendered board."""
    import tempfile

    from playwright.sync_api import sync_playwright

    from tests.screenshot import launch_chromium, wait_for_media

    parser = argparse.ArgumentParser(prog="python -m tests.review.review_helpers")
    parser.add_argument("out", type=Path, metavar="OUT.png")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        board = make_board(Path(tmp))
        drop(board.run_dir, "picked", "s01#2", shot="s01", on=True)
        drop(board.run_dir, "rejected", "s02#1", on=True)
        drop(board.run_dir, "noted", "s02#1", note="the lamp flickers: use take 2")
        absorb_if_free(board.run_dir)
        server = ReviewThread(board.run_dir, board.manifest).start()
        try:
            with sync_playwright() as pw:
                browser = launch_chromium(pw)
                page = browser.new_page(viewport={"width": 1400, "height": 900})
                page.goto(server.url)
                page.wait_for_selector("#live.up")
                wait_for_media(page)
                page.keyboard.press("ArrowRight")
                page.wait_for_timeout(1500)
                page.screenshot(path=str(args.out))
                browser.close()
        finally:
            server.stop()
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
