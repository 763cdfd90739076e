"""The service's answers as Starlette responses: JSON the way the API writes it, files, drops."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import anyio
from starlette.responses import Response, StreamingResponse

from batchkling.emulator.service import FileReply, Reply
from batchkling.emulator.wire import CutResponse, SilentResponse

__all__ = ["file_response", "json_response", "reply_response"]


def json_response(
    payload: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``payload`` as compact UTF-8 JSON."""
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return Response(body, status, headers, "application/json")


def reply_response(reply: Reply) -> Response:
    """An API answer: JSON, an HTML page, or a dropped connection; maybe sent slowly."""
    if reply.lost:
        return SilentResponse()
    if reply.html is not None:
        response = Response(reply.html, reply.status, reply.headers, "text/html")
    else:
        response = json_response(reply.payload, reply.status, reply.headers)
    if reply.trickle is None:
        return response
    return _trickled(response, reply.trickle)


def _trickled(response: Response, interval: float) -> Response:
    """``response`` sent one byte at a time, ``interval`` seconds apart (its length declared)."""
    body = bytes(response.body)

    async def drip() -> AsyncIterator[bytes]:
        for i in range(len(body)):
            await anyio.sleep(interval)
            yield body[i : i + 1]

    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    headers["content-length"] = str(len(body))
    return StreamingResponse(drip(), response.status_code, headers, response.media_type)


def file_response(reply: FileReply) -> Response:
    """A file, or the part of it sent before the connection is cut."""
    if reply.cut:
        return CutResponse(reply.body, reply.status, reply.headers)
    return Response(reply.body, reply.status, reply.headers, reply.media_type)
