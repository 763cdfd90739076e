"""The service's answers as Starlette responses: JSON the way the API writes it, files, drops."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from starlette.responses import Response

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
    """An API answer: JSON, an HTML page, or a dropped connection."""
    if reply.lost:
        return SilentResponse()
    if reply.html is not None:
        return Response(reply.html, reply.status, reply.headers, "text/html")
    return json_response(reply.payload, reply.status, reply.headers)


def file_response(reply: FileReply) -> Response:
    """A file, or the part of it sent before the connection is cut."""
    if reply.cut:
        return CutResponse(reply.body, reply.status, reply.headers)
    return Response(reply.body, reply.status, reply.headers, reply.media_type)
