"""``--fetch-images``: a create's images fetched as the provider does, before it is accepted.

The provider downloads ``image`` and ``tail_image_url`` when a task is created; a
URL that does not answer with an image (a 403 from a URL signed wrongly, a 404,
an HTML page, a host that is down) fails the create with error 400. With this
setting the emulator does the same, so a test can follow a local file through
its upload and its signed URL to a video.
"""

from __future__ import annotations

import json

import httpx

from batchkling.preflight.image_rules import SNIFF_BYTES, sniff

__all__ = ["FETCH_TIMEOUT", "image_problem"]

FETCH_TIMEOUT = 10.0
_READ = 64 * 1024


async def image_problem(body: bytes) -> str | None:
    """The ``errorMsg`` of a create whose image cannot be fetched, or None when all can.

    A body that is not JSON, or has no image URL, is left to the create's own
    validation.
    """
    try:
        data = json.loads(body)
        inputs = data.get("input") if isinstance(data, dict) else None
    except ValueError:
        return None
    if not isinstance(inputs, dict):
        return None
    async with httpx.AsyncClient(timeout=FETCH_TIMEOUT, follow_redirects=True) as client:
        for field in ("image", "tail_image_url"):
            url = inputs.get(field)
            if isinstance(url, str) and url.startswith(("http://", "https://")):
                problem = await _fetch(client, url)
                if problem is not None:
                    return f"{field} could not be fetched: {problem}"
    return None


async def _fetch(client: httpx.AsyncClient, url: str) -> str | None:
    try:
        async with client.stream("GET", url) as response:
            if not 200 <= response.status_code < 300:
                return f"the URL answered HTTP {response.status_code}"
            head = b""
            async for chunk in response.aiter_bytes():
                head += chunk
                if len(head) >= _READ:
                    break
    except httpx.HTTPError as exc:
        return f"the URL did not answer ({type(exc).__name__})"
    if len(head) < SNIFF_BYTES or sniff(head) is None:
        return "the URL does not answer with a JPEG, PNG or WebP image"
    return None
