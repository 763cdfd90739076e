"""Pre-flight as one call: the account, then every image; what ``check`` and ``run`` both do.

Nothing here spends a credit. An account that cannot pay raises (``AccountError``);
the images' findings are returned, warnings and errors alike, for the caller to
show and to refuse on.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from batchkling.api.answers import Account
from batchkling.api.client import SjinnClient, make_http_client
from batchkling.errors import Problem
from batchkling.model import DEFAULT_IMAGE_TIMEOUT, Manifest
from batchkling.preflight.account import REACH_TIMEOUT, check_account
from batchkling.preflight.image_fetch import check_images
from batchkling.preflight.image_rules import problems_for

__all__ = ["PreflightReport", "check_manifest_images", "run_preflight"]


@dataclass(frozen=True)
class PreflightReport:
    """What pre-flight found: the account, and every image finding in manifest order."""

    account: Account
    problems: tuple[Problem, ...]

    @property
    def warnings(self) -> tuple[Problem, ...]:
        """Findings to show that do not stop a run."""
        return tuple(p for p in self.problems if p.warning)

    @property
    def errors(self) -> tuple[Problem, ...]:
        """Findings that stop a run before anything is spent."""
        return tuple(p for p in self.problems if not p.warning)


async def run_preflight(
    client: SjinnClient,
    manifest: Manifest,
    *,
    needed: int,
    http: httpx.AsyncClient | None = None,
    run_dir: Path | None = None,
    image_timeout: float = DEFAULT_IMAGE_TIMEOUT,
    rand: Callable[[], float] = random.random,
    reach_timeout: float = REACH_TIMEOUT,
) -> PreflightReport:
    """Check the account for ``needed`` credits (raising ``AccountError``), then every image.

    ``http`` fetches the images (a client of its own when None); ``run_dir`` keeps
    the image cache and the local copies the report shows. An API that cannot be
    reached for ``reach_timeout`` seconds, or that has no account endpoint at its
    base URL, raises ``UnreachableError``.
    """
    account = await check_account(client, needed=needed, rand=rand, reach_timeout=reach_timeout)
    if http is None:
        async with make_http_client() as own:
            problems = await check_manifest_images(
                manifest, http=own, run_dir=run_dir, timeout=image_timeout
            )
    else:
        problems = await check_manifest_images(
            manifest, http=http, run_dir=run_dir, timeout=image_timeout
        )
    return PreflightReport(account=account, problems=tuple(problems))


async def check_manifest_images(
    manifest: Manifest,
    *,
    http: httpx.AsyncClient,
    run_dir: Path | None,
    timeout: float = DEFAULT_IMAGE_TIMEOUT,
) -> list[Problem]:
    """Fetch every distinct image once; the problems found (warnings included)."""
    if run_dir is not None:
        run_dir.mkdir(parents=True, exist_ok=True)
    infos = await check_images(
        manifest.shots, client=http, cache_dir=run_dir, timeout=timeout, keep_copies=True
    )
    return problems_for(manifest, infos)
