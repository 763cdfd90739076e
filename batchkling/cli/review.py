"""`batchkling review`: the storyboard of a run served on loopback, to mark takes in it.

The server (``batchkling.review.server``) needs the ``review`` extra, starlette
and uvicorn: they are imported when the command runs, never to build its
parser, and their absence is one line saying what to install (exit 2, as for
any other missing piece of the setup). It listens on 127.0.0.1 only, prints
its URL with the session's token, and serves until Ctrl-C or SIGTERM, its
normal end (exit 0): nothing is left to resume.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from batchkling.cli._manifest_args import (
    add_shot_overrides,
    ledger_of_run,
    manifest_of_run,
    run_dir_of,
)
from batchkling.cli._options import add_manifest_or_run_dir, warn_torn_tail
from batchkling.cli._types import port_number

if TYPE_CHECKING:
    from batchkling.cli._io import IO

__all__ = ["EXIT_MISSING_EXTRA", "INSTALL_HINT", "cmd_review", "register"]

INSTALL_HINT = "batchkling review: needs starlette and uvicorn: pip install 'batchkling[review]'"
EXIT_MISSING_EXTRA = 2


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add `review`."""
    p = sub.add_parser(
        "review",
        help="serve the storyboard on loopback to pick, reject and note takes in the browser",
        description="Serve the storyboard of a run on 127.0.0.1, live while a run goes on, "
        "to pick, reject and note takes; print its URL (with this session's token) and "
        "open it in the browser. Ctrl-C stops it.",
    )
    add_manifest_or_run_dir(p)
    p.add_argument(
        "--port",
        type=port_number,
        default=0,
        metavar="N",
        help="the loopback port to listen on (default: a free one)",
    )
    p.add_argument(
        "--no-browser",
        action="store_true",
        help="print the URL only; do not open a browser",
    )
    add_shot_overrides(p)
    p.set_defaults(handler=cmd_review, strict=False)


def cmd_review(args: argparse.Namespace, io: IO) -> int:
    """Serve the review page until interrupted."""
    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print(INSTALL_HINT, file=io.err)
        return EXIT_MISSING_EXTRA
    from batchkling.ledger import fold_ledger
    from batchkling.review import server

    run_dir = run_dir_of(args, "review")
    ledger_path = ledger_of_run(args.manifest, run_dir)
    read = fold_ledger(ledger_path)
    warn_torn_tail(ledger_path, read.torn_tail, io)
    # As the latest run loaded it, so that images resolve to the copies it kept.
    manifest = manifest_of_run(
        args, read.state, run_dir, io, show_warnings=args.manifest is not None
    )
    sock = server.bind_loopback(args.port)
    port = sock.getsockname()[1]
    token = server.new_token()
    url = server.review_url(port, token)
    app = server.create_app(run_dir, manifest, token=token, port=port)

    def ready() -> None:
        print(url, file=io.out, flush=True)
        print(f"batchkling review: serving {run_dir}; Ctrl-C stops.", file=io.err, flush=True)
        if not args.no_browser:
            import threading
            import webbrowser

            # Apart from the server's loop: a browser in the terminal would hold it.
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()

    try:
        server.serve(app, sock, ready)
    finally:
        sock.close()
    return 0
