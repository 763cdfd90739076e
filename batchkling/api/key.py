"""The API key: checked once where it is read, and kept out of every message.

``checked_key`` turns what a key file or the environment holds into a key that
can go into an ``Authorization`` header, or refuses it with one line that never
shows it. ``redact`` removes a key (and every secret ``remember_secret`` was
given) from a text, in the forms a message could carry it: as it is, as
``Bearer <key>``, percent-encoded or JSON-escaped. Keys shorter than
``MIN_SECRET_LENGTH`` are not redacted: they cannot be secret, and removing them
would mangle ordinary words (the emulator accepts any key, such as ``demo``).
"""

from __future__ import annotations

import json
import threading
import unicodedata
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from urllib.parse import quote

from batchkling.errors import BatchklingError, UsageError

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "checked_key",
    "forget_secrets",
    "redact",
    "redact_exception",
    "remember_secret",
    "secrets",
    "secrets_scope",
]

MIN_SECRET_LENGTH = 8
REDACTED = "[redacted]"

_secrets: set[str] = set()
_lock = threading.Lock()


def _describe(char: str) -> str:
    if char in "\r\n":
        return "a line break (the key must be alone on one line)"
    if char == "\0":
        return "a NUL character"
    if char.isspace():
        return "a space"
    if unicodedata.category(char) in ("Cc", "Cf", "Cs", "Co", "Cn"):
        return f"a control character (U+{ord(char):04X})"
    return f"a character outside printable ASCII (U+{ord(char):04X})"


def _trimmed(text: str) -> str:
    # Trailing blanks, one final newline (LF or CRLF), blanks again; leading blanks.
    text = text.rstrip(" \t")
    if text.endswith("\r\n"):
        text = text[:-2]
    elif text.endswith("\n"):
        text = text[:-1]
    return text.rstrip(" \t").lstrip(" \t")


def checked_key(raw: bytes | str, *, source: str) -> str:
    """The API key ``raw`` holds (a key file's bytes, or an environment variable's value).

    Trailing blanks and one final newline are trimmed. A key that is empty, not
    UTF-8, or holds any character other than printable ASCII (a line break, a NUL,
    a control character, a space) raises ``UsageError`` naming ``source`` (such as
    ``--api-key-file PATH`` or ``SJINN_API_KEY``); the message never shows the key.
    """
    if isinstance(raw, bytes):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(
                f"{source}: the API key is not UTF-8 text (byte {exc.start + 1} of the file).",
                hint="Write the key alone, as plain text, on one line.",
            ) from None
    else:
        text = raw
    key = _trimmed(text.removeprefix("\ufeff"))
    if not key:
        raise UsageError(f"{source}: the API key is empty.")
    for position, char in enumerate(key, 1):
        if not ("!" <= char <= "~"):
            raise UsageError(
                f"{source}: the API key contains {_describe(char)} at character {position}; "
                "it was not used.",
                hint="Write the key alone, as plain text, on one line.",
            )
    return key


def remember_secret(key: str) -> str:
    """Have ``redact`` remove ``key`` from every text from now on; returns ``key``."""
    if len(key) >= MIN_SECRET_LENGTH:
        with _lock:
            _secrets.add(key)
    return key


def forget_secrets() -> None:
    """Forget every secret ``remember_secret`` was given."""
    with _lock:
        _secrets.clear()


@contextmanager
def secrets_scope() -> Iterator[None]:
    """Secrets remembered inside the block are forgotten when it ends."""
    saved = secrets()
    try:
        yield
    finally:
        with _lock:
            _secrets.clear()
            _secrets.update(saved)


def secrets() -> frozenset[str]:
    """The secrets ``redact`` removes besides the key it is given."""
    with _lock:
        return frozenset(_secrets)


def _forms(key: str) -> Iterable[str]:
    yield key
    yield quote(key, safe="")
    yield json.dumps(key)[1:-1]


def redact(text: str, key: str | None = None) -> str:
    """``text`` with ``key`` and every remembered secret replaced by ``[redacted]``.

    ``Bearer <key>`` becomes ``Bearer [redacted]``; percent-encoded and
    JSON-escaped forms of a key are replaced too.
    """
    keys = set(secrets())
    if key is not None and len(key) >= MIN_SECRET_LENGTH:
        keys.add(key)
    if not keys:
        return text
    for secret in sorted(keys, key=len, reverse=True):
        for form in _forms(secret):
            if form in text:
                text = text.replace(form, REDACTED)
    return text


def redact_exception(exc: BatchklingError, key: str | None = None) -> BatchklingError:
    """``exc`` with ``key`` and every remembered secret removed from its message and hint."""
    message = redact(exc.message, key)
    hint = None if exc.hint is None else redact(exc.hint, key)
    if message != exc.message or hint != exc.hint:
        exc.message, exc.hint = message, hint
        exc.args = (message, *exc.args[1:])
    return exc
