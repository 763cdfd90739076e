"""The review server through httpx.ASGITransport, on the run directory of a real run.

The run renders three shots of two takes each against the emulator; each test
reviews its own copy of the run directory.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from batchkling.ledger import LEDGER_NAME, read_ledger
from batchkling.manifest.load import load_manifest
from batchkling.review.inbox import INBOX_NAME, absorb_if_free, drop
from batchkling.review.page import TOKEN_HEADER
from batchkling.review.server import create_app, refusal
from tests.review.review_helpers import TAKES, Board, make_board
from tests.runner_helpers import ROOT, run_cli

PORT = 8765
TOKEN = "the-session-token"
ORIGIN = f"http://127.0.0.1:{PORT}"


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Board:
    return make_board(tmp_path_factory.mktemp("review-board"))


@pytest.fixture
def board(finished: Board, tmp_path: Path) -> Board:
    """A copy of the finished run directory, for this test alone."""
    run_dir = tmp_path / "board.run"
    shutil.copytree(finished.run_dir, run_dir)
    return Board(finished.manifest, run_dir)


@pytest.fixture
async def client(board: Board) -> AsyncIterator[httpx.AsyncClient]:
    """The app of the board's copy, as 127.0.0.1:PORT, through ``httpx.ASGITransport``."""
    app = create_app(board.run_dir, load_manifest(board.manifest), token=TOKEN, port=PORT)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as c:
        yield c


def _auth(**more: str) -> dict[str, str]:
    return {TOKEN_HEADER: TOKEN, **more}


async def _mark(client: httpx.AsyncClient, **body: object) -> httpx.Response:
    return await client.post("/api/mark", json=body, headers=_auth())


@pytest.mark.anyio
async def test_every_route_refuses_a_missing_or_wrong_token(client: httpx.AsyncClient) -> None:
    """Without the token, or with another one, every route answers 403 and shows nothing."""
    for path in ("/", "/api/state", "/api/card?job=s01%231", "/files/videos/s01%231.mp4"):
        assert (await client.get(path)).status_code == 403, path
        assert (await client.get(path, headers={TOKEN_HEADER: "guess"})).status_code == 403, path
        assert (
            await client.get(path + ("&" if "?" in path else "?") + "token=x")
        ).status_code == 403
    refused = await client.post("/api/mark", json={"event": "picked", "job": "s01#1"})
    assert refused.status_code == 403
    assert "token" in refused.json()["error"]


@pytest.mark.anyio
async def test_the_page_opens_with_the_token_in_its_url(client: httpx.AsyncClient) -> None:
    """With ?token= the page is the storyboard, every take a card, files served by the server."""
    page = await client.get(f"/?token={TOKEN}")
    assert page.status_code == 200
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["referrer-policy"] == "no-referrer"
    html = page.text
    for job in TAKES:
        assert f'data-job="{job}"' in html
    assert f'src="/files/videos/s01%231.mp4?token={TOKEN}"' in html
    assert "connect-src 'self'" in html
    assert html.count("<script>") == 2  # the storyboard's and the review's


@pytest.mark.anyio
async def test_a_host_other_than_loopback_at_the_port_is_refused(client: httpx.AsyncClient) -> None:
    """A rebound name or another port in Host is refused, even with the token."""
    for host in ("evil.example:8765", f"127.0.0.1:{PORT + 1}", "127.0.0.1", "0.0.0.0:8765"):
        answer = await client.get("/api/state", headers=_auth(host=host))
        assert answer.status_code == 403, host
        assert "host" in answer.json()["error"]
    assert (
        await client.get("/api/state", headers=_auth(host=f"localhost:{PORT}"))
    ).status_code == 200


@pytest.mark.anyio
async def test_a_post_must_be_json_from_the_page_origin(
    client: httpx.AsyncClient, board: Board
) -> None:
    """A form-encoded POST and a POST from another origin are refused; nothing is written."""
    form = await client.post(
        "/api/mark", content="event=picked&job=s01%231", headers=_auth(**{
            "content-type": "application/x-www-form-urlencoded"})
    )  # fmt: skip
    assert form.status_code == 415
    other = await client.post(
        "/api/mark",
        json={"event": "picked", "job": "s01#1"},
        headers=_auth(origin="http://evil.example"),
    )
    assert other.status_code == 403
    assert not (board.run_dir / INBOX_NAME).exists() or not os.listdir(board.run_dir / INBOX_NAME)
    assert all(e["event"] != "picked" for e in read_ledger(board.run_dir / LEDGER_NAME).events)


@pytest.mark.anyio
async def test_marks_land_in_the_ledger_and_the_state(
    client: httpx.AsyncClient, board: Board
) -> None:
    """A pick, a reject and a note reach the ledger at once and the state endpoint shows them."""
    before = (await client.get("/api/state", headers=_auth())).json()
    same = await client.get("/api/state", params={"since": before["version"]}, headers=_auth())
    assert same.json() == {"same": True, "version": before["version"]}
    assert (await _mark(client, event="picked", job="s01#2")).status_code == 200
    assert (await _mark(client, event="rejected", job="s02#1", on=True)).status_code == 200
    assert (await _mark(client, event="noted", job="s02#1", note="soft focus")).status_code == 200
    events = read_ledger(board.run_dir / LEDGER_NAME).events
    marks = [
        (e["event"], e["job"]) for e in events if e["event"] in ("picked", "rejected", "noted")
    ]
    assert marks == [("picked", "s01#2"), ("rejected", "s02#1"), ("noted", "s02#1")]
    assert next(e for e in events if e["event"] == "picked")["shot"] == "s01"
    assert os.listdir(board.run_dir / INBOX_NAME) == []  # moved, not left waiting

    state = (
        await client.get("/api/state", params={"since": before["version"]}, headers=_auth())
    ).json()
    assert state["version"] != before["version"]
    jobs = {j["job"]: j for j in state["jobs"]}
    assert jobs["s01#2"]["picked"] and not jobs["s01#1"]["picked"]
    assert jobs["s02#1"]["rejected"] and jobs["s02#1"]["note"] == "soft focus"
    # The cut: the pick, else the first done take, never a rejected one.
    assert [(t["shot"], t["job"]) for t in state["cut"]] == [
        ("s01", "s01#2"),
        ("s02", "s02#2"),
        ("s03", "s03#1"),
    ]
    assert all(t["src"].startswith("/files/videos/") for t in state["cut"])
    # `status --json` reads the same marks.
    status = json.loads(run_cli("status", "--run-dir", str(board.run_dir), "--json").out)
    assert {j["job"] for j in status["jobs"] if j["picked"]} == {"s01#2"}


@pytest.mark.anyio
async def test_a_mark_for_an_unknown_take_or_bad_fields_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """Marks name a take of the run, a known event and fields of the right type."""
    assert (await _mark(client, event="picked", job="nope#9")).status_code == 400
    assert (await _mark(client, event="deleted", job="s01#1")).status_code == 400
    assert (await _mark(client, event="noted", job="s01#1", note=5)).status_code == 400
    assert (await _mark(client, event="rejected", job="s01#1", on="yes")).status_code == 400
    bad = await client.post(
        "/api/mark", content=b"{", headers=_auth(**{"content-type": "application/json"})
    )
    assert bad.status_code == 400


@pytest.mark.anyio
async def test_files_are_served_from_the_run_directory_only(
    client: httpx.AsyncClient, board: Board
) -> None:
    """Videos and posters are served with ranges; `..`, encoded slashes and links out are 404."""
    video = await client.get("/files/videos/s01%231.mp4", headers=_auth(range="bytes=0-99"))
    assert video.status_code == 206 and len(video.content) == 100
    assert (await client.get("/files/videos/s01%231.jpg", headers=_auth())).status_code == 200
    outside = board.run_dir.parent / "secret.txt"
    outside.write_text("not for the page")
    (board.run_dir / "link.txt").symlink_to(outside)
    for path in (
        "/files/../secret.txt",
        "/files/..%2Fsecret.txt",
        "/files/videos/..%2F..%2Fsecret.txt",
        "/files/%2e%2e/secret.txt",
        "/files/link.txt",
        "/files/" + str(outside),
        "/files/videos",
        "/files/.lock",
    ):
        answer = await client.get(path, headers=_auth())
        assert answer.status_code in (403, 404), path
        assert b"not for the page" not in answer.content


@pytest.mark.anyio
async def test_a_card_is_rendered_alone_for_the_page_to_redraw(client: httpx.AsyncClient) -> None:
    """/api/card gives one take's card as the storyboard renders it."""
    card = (await client.get("/api/card", params={"job": "s02#2"}, headers=_auth())).json()
    assert card["html"].startswith('<article class="card" data-job="s02#2" data-state="done"')
    assert (await client.get("/api/card", params={"job": "x"}, headers=_auth())).status_code == 404


def test_refusal_rules_in_one_place() -> None:
    """The pure check: host, then token, then method, then JSON and origin for a POST."""
    ok = {"host": "localhost:80", TOKEN_HEADER.lower(): "t"}
    assert refusal("GET", ok, None, token="t", port=80) is None
    assert refusal("GET", {"host": "localhost:80"}, "t", token="t", port=80) is None
    assert refusal("GET", {**ok, "host": "x:80"}, None, token="t", port=80) == (
        403,
        "unknown host: open the URL batchkling review printed",
    )
    assert refusal("DELETE", ok, None, token="t", port=80) == (405, "method not allowed")
    json_post = {**ok, "content-type": "application/json; charset=utf-8"}
    assert refusal("POST", json_post, None, token="t", port=80) is None
    assert (
        refusal("POST", {**json_post, "origin": "http://localhost:80"}, None, token="t", port=80)
        is None
    )
    assert refusal("POST", {**json_post, "origin": "null"}, None, token="t", port=80) is not None


def _serve(
    run_dir: Path, *flags: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start `batchkling review --run-dir RUN_DIR FLAGS`; the process and the URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "batchkling", "review", "--run-dir", str(run_dir), *flags],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        ready = sel.select(30)
    return proc, proc.stdout.readline().strip() if ready else ""


def _interrupt(proc: subprocess.Popen[str]) -> str:
    """Ctrl-C the server; what it wrote on stderr."""
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=20)
    return err


def test_review_command_serves_until_interrupted(board: Board) -> None:
    """`batchkling review --no-browser` prints a token URL on 127.0.0.1 and exits 0 on Ctrl-C."""
    proc, url = _serve(board.run_dir, "--no-browser")
    try:
        assert url.startswith("http://127.0.0.1:") and "/?token=" in url
        base, token = url.split("/?token=")
        assert len(token) >= 40
        assert httpx.get(url).status_code == 200
        assert httpx.get(base + "/api/state").status_code == 403
        state = httpx.get(base + "/api/state", headers={TOKEN_HEADER: token}).json()
        assert [j["job"] for j in state["jobs"]] == TAKES
    finally:
        err = _interrupt(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_review_opens_its_url_in_the_browser(board: Board, tmp_path: Path) -> None:
    """Without --no-browser the URL goes to the browser ($BROWSER here), on the port asked."""
    opened = tmp_path / "opened.txt"
    opener = tmp_path / "opener.sh"
    opener.write_text(f'#!/bin/sh\necho "$1" > {opened}\n')
    opener.chmod(0o755)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc, url = _serve(board.run_dir, "--port", str(port), env={"BROWSER": str(opener)})
    try:
        assert url.startswith(f"http://127.0.0.1:{port}/?token=")
        deadline = time.monotonic() + 10
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert opened.read_text().strip() == url
    finally:
        err = _interrupt(proc)
    assert proc.returncode == 0, err


def test_review_without_the_extra_says_what_to_install(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without starlette: one line naming `pip install 'batchkling[review]'`, exit 2."""
    monkeypatch.setitem(sys.modules, "starlette", None)
    res = run_cli("review", "--run-dir", str(board.run_dir), "--no-browser")
    assert res.code == 2
    assert res.err.strip().splitlines() == [
        "batchkling review: needs starlette and uvicorn: pip install 'batchkling[review]'"
    ]
    assert res.out == ""


def test_review_of_a_directory_where_nothing_ran(tmp_path: Path) -> None:
    """No ledger: the one line every reader gives, exit 2, and nothing is served."""
    res = run_cli("review", "--run-dir", str(tmp_path), "--no-browser")
    assert res.code == 2
    assert "nothing has run" in res.err and "Traceback" not in res.err


def test_the_report_file_shows_marks_and_links_the_exports(board: Board) -> None:
    """report.html: a picked badge, a dimmed rejected take, the note; exported files linked."""
    drop(board.run_dir, "picked", "s01#2", shot="s01", on=True)
    drop(board.run_dir, "rejected", "s02#1", on=True)
    drop(board.run_dir, "noted", "s02#1", note="<b>too dark</b>")
    absorb_if_free(board.run_dir)
    animatic = board.run_dir / "exports" / "animatic.mp4"
    animatic.parent.mkdir()
    shutil.copy(board.run_dir / "videos" / "s01#1.mp4", animatic)
    exports = {
        "animatic": {"path": str(animatic), "written": "2026-01-02T03:04:05Z"},
        "otio": {"path": str(board.run_dir / "exports" / "gone.otio"), "written": "x"},
    }
    (board.run_dir / "exports.json").write_text(json.dumps(exports), encoding="utf-8")
    res = run_cli("report", "--run-dir", str(board.run_dir))
    assert res.code == 0, res.err
    html = (board.run_dir / "report.html").read_text(encoding="utf-8")
    assert '<article class="card picked" data-job="s01#2"' in html
    assert '<article class="card rejected" data-job="s02#1"' in html
    assert '<article class="card" data-job="s01#1"' in html
    assert html.count('<span class="pick">picked</span>') == 1
    assert html.count('<span class="reject">rejected</span>') == 1
    assert '<p class="take-note">&lt;b&gt;too dark&lt;/b&gt;</p>' in html
    assert '<a href="exports/animatic.mp4" data-export="animatic"' in html
    assert "gone.otio" not in html  # recorded, but no longer on disk
    assert html.count("<script>") == 1


def test_a_broken_exports_file_links_nothing(board: Board) -> None:
    """An exports.json that is not JSON, or not the expected shape, is ignored."""
    for text in ("{", "[1, 2]", '{"animatic": "x"}', '{"animatic": {"path": "rel.mp4"}}'):
        (board.run_dir / "exports.json").write_text(text, encoding="utf-8")
        assert run_cli("report", "--run-dir", str(board.run_dir)).code == 0
        assert 'class="exports"' not in (board.run_dir / "report.html").read_text()
