"""The sjinn API routes: each reads what a request says and hands it to the service.

Query and account endpoints answer GET and POST; a create only POST.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from batchkling.emulator.responses import reply_response
from batchkling.emulator.service import ApiRequest, Emulator

__all__ = ["API_PREFIX", "routes"]

API_PREFIX = "/api/un-api/"
_METHODS = {
    "create_tool_task": ["POST"],
    "query_tool_task_status": ["GET", "POST"],
    "query_account_status": ["GET", "POST"],
    "query_credits_usage": ["GET", "POST"],
}


def routes(emulator: Emulator) -> list[Route]:
    """The API routes of one emulator."""
    return [
        Route(API_PREFIX + name, _endpoint(emulator, name), methods=methods)
        for name, methods in _METHODS.items()
    ]


def _bearer(request: Request) -> str:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def _endpoint(emulator: Emulator, name: str) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        url = request.url
        api_request = ApiRequest(
            key=_bearer(request),
            method=request.method,
            body=await request.body(),
            query=dict(request.query_params),
            origin=f"{url.scheme}://{url.netloc}",
        )
        return reply_response(await emulator.call(name, api_request))

    return endpoint
