"""The routes of the files the emulator serves without a key: task videos and demo frames.

Real output URLs are public CDN links, so these need no ``Authorization``.
Both answer HEAD, ``Range`` and ``If-None-Match`` (``media``); videos can
expire (``--output-url-ttl``), be cut off mid-body (``--download-fail-rate``),
and come wrong in ways their framing hides (``--download-short-length``,
``--download-no-length``, ``--download-gzip``): a reply without a length is
streamed, which uvicorn sends with chunked transfer coding.
"""

from __future__ import annotations

from functools import partial

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from batchkling.emulator.responses import file_response
from batchkling.emulator.service import FRAME_PATH, VIDEO_PATH, Emulator

__all__ = ["routes"]


def routes(emulator: Emulator) -> list[Route]:
    """The file routes of one emulator."""
    return [
        Route(VIDEO_PATH, partial(_video, emulator), methods=["GET"]),
        Route(FRAME_PATH, partial(_frame, emulator), methods=["GET"]),
    ]


async def _video(emulator: Emulator, request: Request) -> Response:
    name: str = request.path_params["name"]
    reply = emulator.video(name, request.query_params, request.method, request.headers)
    if reply.chunked and not reply.cut:
        return StreamingResponse(iter([reply.body]), reply.status, reply.headers)
    return file_response(reply)


async def _frame(emulator: Emulator, request: Request) -> Response:
    name: str = request.path_params["name"]
    return file_response(emulator.frame(name, request.headers))
