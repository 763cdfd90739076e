"""The review server: a run directory's storyboard on loopback, where takes are marked.

It reads the ledger as any reader does (no lock: a run may be writing it) and
writes nothing but review events, each dropped into the inbox
(``batchkling.review.inbox``) and moved into the ledger at once when no run
holds it, or by the live run within a second.

A page on another site can reach a loopback port, so every request is checked
before any route sees it (``refusal``):

- its ``Host`` must be ``127.0.0.1:<port>`` or ``localhost:<port>``: a name
  that resolves to loopback later (DNS rebinding) is refused;
- it must carry the session token, in the ``token`` query parameter (the page
  and its files) or the ``X-Batchkling-Token`` header (the page's API calls);
- a POST must be JSON, which no cross-origin form can send, and come from
  the page's own origin when the browser names one.

Files are served read-only from under the run directory only, after resolving
links, so that no path (``..``, an encoded slash, a link) reaches outside it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio.to_thread
from starlette.applications import Starlette
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from batchkling.errors import BatchklingError, UsageError
from batchkling.ledger import LEDGER_NAME
from batchkling.model import Manifest
from batchkling.report.build import Report
from batchkling.report.publish import assemble_report, read_run
from batchkling.report.storyboard import EXPORTS_NAME, PageMode, render_card, render_html
from batchkling.review.inbox import INBOX_NAME, absorb_if_free, drop, marks_with_inbox
from batchkling.review.marks import MARK_EVENTS, Marks, shot_of
from batchkling.review.page import (
    FILES_PREFIX,
    TOKEN_HEADER,
    TOKEN_PARAM,
    review_mode,
    state_document,
)

__all__ = [
    "ReviewSite",
    "bind_loopback",
    "create_app",
    "new_token",
    "refusal",
    "review_url",
    "serve",
]

_MAX_BODY = 64 * 1024
_MAX_NOTE = 10_000
_SAFE_HEADERS = [
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def new_token() -> str:
    """A fresh session token, unguessable."""
    return secrets.token_urlsafe(32)


def review_url(port: int, token: str) -> str:
    """The page's URL, token included."""
    return f"http://127.0.0.1:{port}/?{TOKEN_PARAM}={token}"


def bind_loopback(port: int) -> socket.socket:
    """A socket bound to 127.0.0.1:``port`` (0: a free one); a UsageError when taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"review: cannot listen on 127.0.0.1:{port}: {exc.strerror}.",
            hint="Choose another --port, or leave it out for a free one.",
        ) from None
    return sock


def refusal(
    method: str, headers: Mapping[str, str], query_token: str | None, *, token: str, port: int
) -> tuple[int, str] | None:
    """Why a request is refused (status, reason), or None when it may go on. Pure.

    ``headers`` are looked up by lower-case name.
    """
    hosts = {f"127.0.0.1:{port}", f"localhost:{port}"}
    if headers.get("host", "").lower() not in hosts:
        return 403, "unknown host: open the URL batchkling review printed"
    given = headers.get(TOKEN_HEADER.lower()) or query_token or ""
    if not secrets.compare_digest(given.encode("utf-8"), token.encode("utf-8")):
        return 403, "missing or wrong token: open the URL batchkling review printed"
    if method not in ("GET", "HEAD", "POST"):
        return 405, "method not allowed"
    if method == "POST":
        kind = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if kind != "application/json":
            return 415, "a POST must be application/json"
        origin = headers.get("origin")
        if origin is not None and origin.lower() not in {f"http://{h}" for h in hosts}:
            return 403, "a POST from another origin"
    return None


class _Guard:
    """ASGI middleware: ``refusal`` before any route, and the same safe headers on every answer."""

    def __init__(self, app: ASGIApp, *, token: str, port: int) -> None:
        self.app, self.token, self.port = app, token, port

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query = Request(scope).query_params.get(TOKEN_PARAM)
        refused = refusal(
            scope["method"], Headers(scope=scope), query, token=self.token, port=self.port
        )

        async def send_safe(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *_SAFE_HEADERS]
            await send(message)

        if refused is not None:
            status, reason = refused
            await JSONResponse({"error": reason}, status_code=status)(scope, receive, send_safe)
            return
        await self.app(scope, receive, send_safe)


@dataclass(frozen=True)
class _Snapshot:
    report: Report
    marks: Marks
    version: str  # another each time the run directory is read again


class ReviewSite:
    """What the routes share: the run directory, its manifest, and its latest reading.

    The ledger is read again only when it, the inbox or ``exports.json`` changed,
    so that polling a quiet run costs a few ``stat`` calls a second.
    """

    def __init__(self, run_dir: Path, manifest: Manifest | None, *, token: str) -> None:
        self.run_dir = run_dir.absolute()
        self.manifest = manifest
        self.token = token
        self.mode: PageMode = review_mode(self.run_dir, token)
        self._key: tuple[object, ...] | None = None
        self._snapshot: _Snapshot | None = None
        self._count = 0
        self._lock = threading.Lock()

    def _stamp(self) -> tuple[object, ...]:
        def stat(name: str) -> tuple[int, int] | None:
            try:
                st = os.stat(self.run_dir / name)
            except OSError:
                return None
            return st.st_size, st.st_mtime_ns

        try:
            waiting = tuple(sorted(os.listdir(self.run_dir / INBOX_NAME)))
        except OSError:
            waiting = ()
        return stat(LEDGER_NAME), stat(EXPORTS_NAME), waiting

    def snapshot(self) -> _Snapshot:
        """The report and the marks as they are now (blocking: run in a worker thread)."""
        with self._lock:  # the routes' worker threads share one reading
            return self._read()

    def _read(self) -> _Snapshot:
        key = self._stamp()
        if self._snapshot is None or key != self._key:
            read = read_run(self.run_dir / LEDGER_NAME)
            report = assemble_report(self.run_dir, self.manifest, read)
            marks = marks_with_inbox(self.run_dir, read.state.marks)
            self._count += 1
            self._snapshot, self._key = _Snapshot(report, marks, str(self._count)), key
        return self._snapshot

    def mark(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """Drop the review event ``body`` asks for; the event, or a ValueError saying why not."""
        event, job = body.get("event"), body.get("job")
        if event not in MARK_EVENTS or not isinstance(job, str):
            raise ValueError("give event (picked, rejected or noted) and job")
        rows = {r.key: r for r in self.snapshot().report.rows}
        if job not in rows:
            raise ValueError(f"no take {job} in this run")
        fields: dict[str, Any] = {}
        if event == "noted":
            note = body.get("note")
            if not isinstance(note, str) or len(note) > _MAX_NOTE:
                raise ValueError(f"note must be text of at most {_MAX_NOTE} characters")
            fields["note"] = note
        else:
            on = body.get("on", True)
            if not isinstance(on, bool):
                raise ValueError("on must be true or false")
            fields["on"] = on
            if event == "picked":
                shot = rows[job].job
                fields["shot"] = shot.shot.id if shot is not None else shot_of(job)
        ev = drop(self.run_dir, str(event), job, **fields)
        # When it cannot be moved now, it waits in the inbox for the next mark or run.
        with contextlib.suppress(BatchklingError, OSError):
            absorb_if_free(self.run_dir)
        return ev


async def _page(request: Request) -> Response:
    site: ReviewSite = request.app.state.site
    snap = await anyio.to_thread.run_sync(site.snapshot)
    page = render_html(snap.report, base_dir=str(site.run_dir), mode=site.mode)
    return HTMLResponse(page, headers={"content-security-policy": "frame-ancestors 'none'"})


async def _state(request: Request) -> Response:
    site: ReviewSite = request.app.state.site
    snap = await anyio.to_thread.run_sync(site.snapshot)
    if request.query_params.get("since") == snap.version:
        return JSONResponse({"same": True, "version": snap.version})
    doc = state_document(snap.report, snap.marks, site.mode)
    return JSONResponse({**doc, "version": snap.version})


async def _card(request: Request) -> Response:
    site: ReviewSite = request.app.state.site
    snap = await anyio.to_thread.run_sync(site.snapshot)
    job = request.query_params.get("job")
    row = next((r for r in snap.report.rows if r.key == job), None)
    if row is None:
        return JSONResponse({"error": f"no take {job} in this run"}, status_code=404)
    return JSONResponse({"job": row.key, "html": render_card(snap.report, row, site.mode)})


async def _mark(request: Request) -> Response:
    site: ReviewSite = request.app.state.site
    raw = await request.body()
    if len(raw) > _MAX_BODY:
        return JSONResponse({"error": "request too large"}, status_code=413)
    try:
        body = json.loads(raw)
        if not isinstance(body, dict):
            raise ValueError("the body must be a JSON object")
        ev = await anyio.to_thread.run_sync(site.mark, body)
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    except OSError as exc:
        reason = f"the run directory cannot be written ({exc.strerror})"
        return JSONResponse({"error": reason}, status_code=507)
    return JSONResponse({"ok": True, "event": ev})


def _served_file(run_dir: Path, rel: str) -> Path | None:
    """The regular file ``rel`` names under ``run_dir``, links resolved; None if outside."""
    if any(part.startswith(".") for part in Path(rel).parts):
        return None  # the lock, files half-written, and any way up
    root = run_dir.resolve()
    try:
        target = (root / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if root not in target.parents or not target.is_file():
        return None
    return target


async def _file(request: Request) -> Response:
    site: ReviewSite = request.app.state.site
    target = _served_file(site.run_dir, request.path_params["path"])
    if target is None:
        return JSONResponse({"error": "no such file in the run directory"}, status_code=404)
    return FileResponse(target)


async def _unreadable(request: Request, exc: Exception) -> Response:
    # A ledger that cannot be read now (a bad line): the page says so and polls on.
    reason = exc.message if isinstance(exc, BatchklingError) else str(exc)
    return JSONResponse({"error": reason}, status_code=503)


def create_app(run_dir: Path, manifest: Manifest | None, *, token: str, port: int) -> ASGIApp:
    """The review app of ``run_dir``, answering only as ``127.0.0.1:<port>`` with ``token``."""
    app = Starlette(
        exception_handlers={BatchklingError: _unreadable},
        routes=[
            Route("/", _page, methods=["GET"]),
            Route("/api/state", _state, methods=["GET"]),
            Route("/api/card", _card, methods=["GET"]),
            Route("/api/mark", _mark, methods=["POST"]),
            Route(FILES_PREFIX + "{path:path}", _file, methods=["GET"]),
        ],
    )
    app.state.site = ReviewSite(run_dir, manifest, token=token)
    return _Guard(app, token=token, port=port)


def serve(app: ASGIApp, sock: socket.socket, on_ready: Callable[[], None]) -> None:
    """Serve ``app`` on ``sock`` until Ctrl-C or SIGTERM; ``on_ready`` once it listens.

    uvicorn logs only warnings and no access lines: the terminal keeps the URL.
    """
    import asyncio
    import signal

    import uvicorn

    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)

    def stop(signum: int, frame: object) -> None:
        # Before uvicorn installs its own handlers, and when it re-raises the signal
        # after shutting down: either way, just ask it to stop.
        server.should_exit = True

    async def run() -> None:
        serving = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started and not serving.done():
            await asyncio.sleep(0.01)
        if server.started:
            on_ready()
        await serving

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(run())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
