"""Render a run's HTML report to a PNG with headless Chromium (the README's screenshot).

    python -m tests.screenshot RUN_DIR OUT.png [--width 1280] [--height 900] [--full-page]

Opens ``RUN_DIR/report.html`` from disk (write it first with ``batchkling report``),
waits until every video shows its first frame, and saves the page. Uses Debian's
``chromium`` (``apt-get install -y chromium``), never a downloaded browser.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page, Playwright

__all__ = [
    "CHROMIUM",
    "CHROMIUM_ARGS",
    "INSTALL_HINT",
    "launch_chromium",
    "main",
    "screenshot",
    "wait_for_media",
]

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_HINT = "apt-get update && apt-get install -y chromium"
# No network side channels: the report must work from disk alone, and a sandboxed
# CI machine has no network to give anyway.
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)

# True once every <video> can show a frame and every <img> has finished (loaded or not).
_MEDIA_READY = """() =>
  Array.from(document.querySelectorAll("video")).every(v => v.readyState >= 2 || v.error) &&
  Array.from(document.images).every(i => i.complete)
"""


def launch_chromium(pw: Playwright) -> Browser:
    """Debian's Chromium, headless, with no background network traffic."""
    return pw.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))


def wait_for_media(page: Page, timeout_ms: float = 15_000) -> None:
    """Wait until videos show a frame and images are decoded (or have failed)."""
    page.wait_for_function(_MEDIA_READY, timeout=timeout_ms)


def screenshot(
    report: Path,
    out: Path,
    *,
    width: int = 1280,
    height: int = 900,
    full_page: bool = False,
    browser: Browser | None = None,
) -> None:
    """Save a PNG of the report file ``report`` as Chromium shows it.

    Without ``browser``, Chromium is started for this one picture.
    """
    if browser is None:
        from playwright.sync_api import sync_playwright

        with sync_playwright() as pw:
            own = launch_chromium(pw)
            try:
                screenshot(
                    report, out, width=width, height=height, full_page=full_page, browser=own
                )
            finally:
                own.close()
        return
    page = browser.new_page(viewport={"width": width, "height": height})
    try:
        page.goto(report.absolute().as_uri())
        wait_for_media(page)
        # Chromium keeps drawing its loading spinner over a video for a moment after
        # the first frame is ready; a picture taken at once shows the spinner.
        page.wait_for_timeout(1500)
        page.screenshot(path=str(out), full_page=full_page)
    finally:
        page.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.screenshot", description=__doc__)
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument("out", type=Path, metavar="OUT.png")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--full-page", action="store_true", help="the whole page, not the viewport")
    args = parser.parse_args(argv)
    report = args.run_dir / "report.html"
    if not report.is_file():
        print(
            f"no {report}: write it first with `batchkling report --run-dir {args.run_dir}`.",
            file=sys.stderr,
        )
        return 2
    if not CHROMIUM.exists():
        print(f"no {CHROMIUM}: install it with `{INSTALL_HINT}`.", file=sys.stderr)
        return 2
    screenshot(report, args.out, width=args.width, height=args.height, full_page=args.full_page)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
