"""Image fields that name a file on this machine: which ones do, where the file is, its sha256.

The rule, one for every reader: a ``file:`` URL is always a local file. When
``image_base_url`` is set, any other value without a scheme is a URL relative to
it (as it always was); without it, a value without a scheme is a local path:
relative to the manifest's directory (``frames/s01.png``, ``./s01.png``),
absolute (``/home/me/s01.png``) or under the home directory (``~/s01.png``).

Resolving reads the file system (the file must exist and be a regular file) and
hashes each distinct file once per manifest, since the request's fingerprint
uses the content: editing the file is a changed manifest entry, uploading it
somewhere else is not.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

__all__ = ["LocalFile", "LocalFiles", "is_local_name", "local_path"]

_CHUNK = 1 << 20


@dataclass(frozen=True)
class LocalFile:
    """A resolved local image: its ``file:`` URL (the shot's ``image``) and its sha256."""

    url: str
    sha256: str


def is_local_name(value: str, *, base: str | None) -> bool:
    """Whether an image value names a local file under the rule above."""
    if value.startswith("file:"):
        return True
    if base is not None:
        return False
    if value.startswith(("/", "~")) or os.path.isabs(value):
        return True
    try:
        return not urlsplit(value).scheme
    except ValueError:
        return False


def local_path(value: str, directory: Path) -> Path:
    """The absolute path a local image value stands for (``directory``: the manifest's)."""
    if value.startswith("file:"):
        parts = urlsplit(value)
        raw = unquote(parts.path)
        path = Path(raw)
        return path if path.is_absolute() else directory / path
    path = Path(value).expanduser()
    return path if path.is_absolute() else directory / path


class LocalFiles:
    """Resolves local image values against one manifest's directory, hashing each file once."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._seen: dict[Path, LocalFile | str] = {}

    def resolve(self, value: str) -> LocalFile:
        """The file ``value`` names; raises ``ValueError`` with a message for the user."""
        path = Path(os.path.abspath(local_path(value, self.directory)))
        found = self._seen.get(path)
        if found is None:
            found = self._seen[path] = _examine(value, path)
        if isinstance(found, str):
            raise ValueError(found)
        return found


def _examine(value: str, path: Path) -> LocalFile | str:
    """The file at ``path`` resolved and hashed, or the problem to report."""
    try:
        if path.is_dir():
            return f"{value!r} is a directory ({path}); name an image file in it"
        digest = hashlib.sha256()
        with open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    except FileNotFoundError:
        return (
            f"{value!r} is a local file that does not exist ({path}); a name without "
            "a scheme is a path relative to the manifest's directory, unless "
            "image_base_url is set (or --image-base-url is given)"
        )
    except OSError as exc:
        return f"{value!r} cannot be read ({exc.strerror or exc}): {path}"
    if not path.is_file():
        return f"{value!r} is not a regular file ({path})"
    return LocalFile(path.as_uri(), digest.hexdigest())
