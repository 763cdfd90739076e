"""The API key is checked where it is read and never leaves the program in any message or file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

import batchkling.api.client as api_client
from batchkling.api.key import (
    REDACTED,
    checked_key,
    redact,
    remember_secret,
    secrets,
    secrets_scope,
)
from batchkling.errors import UsageError
from tests.emulator_fixtures import InProcessEmulator
from tests.runner_helpers import FAST, run_cli, write_manifest

KEY = "sk-live-Zq8vW3nTt5Kp0aLm9XyR2cB7dE4fG6hJ"
ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("raw", "key"),
    [
        (b"sk-abcdefgh\n", "sk-abcdefgh"),
        (b"sk-abcdefgh  \r\n", "sk-abcdefgh"),
        ("  sk-abcdefgh\t", "sk-abcdefgh"),
        (b"\xef\xbb\xbfsk-abcdefgh\n", "sk-abcdefgh"),
    ],
)
def test_trailing_blanks_and_one_final_newline_are_trimmed(raw: bytes | str, key: str) -> None:
    """A key file as editors write it gives the key alone."""
    assert checked_key(raw, source="--api-key-file k") == key


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        (b"sk-first\nsk-second\n", "a line break"),
        (b"sk-abcdefgh\n\n", "a line break"),
        (b"sk-abc\rdefgh", "a line break"),
        (b"sk-abc\x00defgh", "a NUL character"),
        (b"sk-abc\x1bdefgh", "a control character (U+001B)"),
        (b"sk-abc defgh", "a space"),
        ("sk-abc\u200bdefgh", "a control character (U+200B)"),
        ("sk-abcdéfgh", "outside printable ASCII"),
        (b"sk-abc\xffdefgh", "is not UTF-8"),
        (b"  \n", "is empty"),
    ],
)
def test_a_key_that_cannot_be_sent_is_refused_without_showing_it(
    raw: bytes | str, says: str
) -> None:
    """Control characters, two lines, spaces, non-UTF-8: one UsageError line naming the source."""
    with pytest.raises(UsageError) as refused:
        checked_key(raw, source="--api-key-file keys.txt")
    message = str(refused.value)
    assert says in message and message.startswith("--api-key-file keys.txt: ")
    assert "abc" not in message and "\n" not in message
    assert refused.value.exit_code == 2


def test_redact_removes_every_form_of_the_key() -> None:
    """Plain, Bearer, percent-encoded and JSON-escaped forms; short keys are left alone."""
    key = "sk+/abc=def\\ghi"
    text = f"Bearer {key} {quote(key, safe='')} {json.dumps(key)}"
    clean = redact(text, key)
    assert key not in clean and quote(key, safe="") not in clean
    assert clean.startswith(f"Bearer {REDACTED} {REDACTED} ")
    assert redact("a demo run", "demo") == "a demo run"
    with secrets_scope():
        remember_secret(KEY)
        assert redact(f"x{KEY}x") == f"x{REDACTED}x"
    assert KEY not in secrets()


class _Leaky(httpx.AsyncBaseTransport):
    """The emulator, except that every create's answer is lost with the key in the error."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.leaked = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.url.path.endswith("/create_tool_task"):
            self.leaked += 1
            await response.aclose()
            raise httpx.ReadError(
                f"connection reset after {request.headers['Authorization']} (key {KEY})",
                request=request,
            )
        return response


def _files(*folders: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for folder in folders for p in folder.rglob("*") if p.is_file()}


def test_a_key_in_a_transport_error_leaves_no_trace(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    emulator_factory: Callable[..., InProcessEmulator],
) -> None:
    """An error echoing the key: redacted on stdout, stderr, in the ledger, journal and reports."""
    emu = emulator_factory(api_keys=(KEY,))
    leaky = _Leaky(emu.transport)
    real = api_client.make_http_client
    monkeypatch.setattr(api_client, "make_transport", lambda **_: leaky)
    monkeypatch.setattr(api_client, "make_http_client", lambda **_: real(transport=leaky))
    monkeypatch.setenv("SJINN_API_KEY", KEY)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    manifest = write_manifest(tmp_path, emu.base_url, 2)
    results = [run_cli("run", str(manifest), "--api-base", emu.base_url, *FAST)]
    assert leaky.leaked == 2 and emu.stats()["tasks_created"] == 2
    results += [run_cli("status", str(manifest)), run_cli("status", str(manifest), "--json")]
    for fmt in ("html", "csv", "json"):
        results.append(run_cli("report", str(manifest), "--format", fmt))
    ledger = (tmp_path / "board.run" / "ledger.jsonl").read_text()
    assert REDACTED in ledger  # the error was recorded, without the key
    forms = (KEY.encode(), quote(KEY, safe="").encode())
    for result in results:
        assert KEY not in result.out + result.err
    for path, content in _files(tmp_path).items():
        assert not any(form in content for form in forms), path


def test_the_printer_redacts_what_a_command_prints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A message that happens to hold the key (here, a file name) is printed without it."""
    monkeypatch.setenv("SJINN_API_KEY", KEY)
    result = run_cli("validate", str(tmp_path / f"{KEY}.yaml"))
    assert result.code == 2 and KEY not in result.err and REDACTED in result.err


def test_a_key_file_with_two_lines_is_one_error_line(tmp_path: Path) -> None:
    """`check --api-key-file` with two lines: exit 2, one line, the key never shown."""
    key_file = tmp_path / "key.txt"
    key_file.write_bytes(f"{KEY}\nsecond-line-of-the-file\n".encode())
    manifest = write_manifest(tmp_path, "http://127.0.0.1:9", 1)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "batchkling",
            "check",
            str(manifest),
            "--api-key-file",
            str(key_file),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "line break" in done.stderr
    assert KEY not in done.stderr + done.stdout and "second-line" not in done.stderr
