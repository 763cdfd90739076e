"""Dropping a connection from inside an ASGI app, as a failing real server would.

ASGI has no message for "close the connection without answering": an app that
returns without a response gets a 500 from uvicorn, and an exception does the
same. So the emulator closes the socket itself. uvicorn's ``send`` is a bound
method of the request cycle, which holds the asyncio transport; closing it and
waiting for the disconnect makes uvicorn skip its own 500. With no socket
(``httpx.ASGITransport`` in-process), the app raises the exception httpx raises
over a socket, so a client sees the same thing either way:

    lost answer    httpx.RemoteProtocolError: Server disconnected without sending a response.
    cut-off body   httpx.RemoteProtocolError: peer closed connection without sending
                   complete message body (received N bytes, expected M)

A handler asks for a drop by returning ``SilentResponse`` or ``CutResponse``;
``DroppingApp`` (the outermost layer, which holds the server's own ``send``)
carries it out once the handler has returned.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
from starlette.applications import Starlette
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

__all__ = [
    "DISCONNECT_WAIT",
    "CutResponse",
    "DroppingApp",
    "SilentResponse",
    "drop_connection",
    "find_transport",
]

# How long to wait for the server to notice the closed socket.
DISCONNECT_WAIT = 2.0
_WIRE = "batchkling.emulator.wire"


class _Wire:
    """Set by a response that wants the connection dropped after it returns."""

    __slots__ = ("drop", "expected", "sent")

    def __init__(self) -> None:
        self.drop = False
        self.sent: int | None = None
        self.expected: int | None = None


class SilentResponse(Response):
    """Sends nothing: the connection is dropped instead of answering."""

    def __init__(self) -> None:
        super().__init__(b"")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[_WIRE].drop = True


class CutResponse(Response):
    """Headers with the full Content-Length, then half the body, then a dropped connection."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        half = len(self.body) // 2
        start = {"type": "http.response.start", "status": self.status_code}
        await send({**start, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body[:half], "more_body": True})
        wire: _Wire = scope[_WIRE]
        wire.drop, wire.sent, wire.expected = True, half, len(self.body)


def find_transport(send: Send) -> Any | None:
    """The asyncio transport behind uvicorn's ``send``, or None."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    return transport if callable(getattr(transport, "close", None)) else None


async def drop_connection(
    send: Send, receive: Receive, *, sent: int | None = None, expected: int | None = None
) -> None:
    """Close the client's connection now; ``sent``/``expected`` describe a body cut short."""
    transport = find_transport(send)
    if transport is None:
        if sent is None:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.")
        raise httpx.RemoteProtocolError(
            "peer closed connection without sending complete message body "
            f"(received {sent} bytes, expected {expected})"
        )
    # asyncio flushes what was already written (a partial body) before closing.
    transport.close()
    with anyio.move_on_after(DISCONNECT_WAIT):
        while (await receive())["type"] != "http.disconnect":
            pass


class DroppingApp(Starlette):
    """A Starlette app whose handlers can have the connection dropped."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        wire = scope[_WIRE] = _Wire()
        await super().__call__(scope, receive, send)
        if wire.drop:
            await drop_connection(send, receive, sent=wire.sent, expected=wire.expected)
