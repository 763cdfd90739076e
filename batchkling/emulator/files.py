"""The files the emulator serves without a key: task videos and demo frames.

Real output URLs are public CDN links, so these need no ``Authorization``.
Both answer HEAD, ``Range`` and ``If-None-Match`` (``media``); videos can
expire (``--output-url-ttl``) and be cut off mid-body (``--download-fail-rate``).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response

from batchkling.emulator.frames import FRAME_NAME, render_frame
from batchkling.emulator.media import Blob, answer
from batchkling.emulator.wire import CutResponse

if TYPE_CHECKING:
    from batchkling.emulator.app import Emulator

__all__ = ["serve_frame", "serve_video"]


def _not_found() -> Response:
    return Response("not found\n", 404, media_type="text/plain")


async def serve_video(emulator: Emulator, request: Request) -> Response:
    """``GET /files/TASK_ID.mp4``: a completed task's video, at the URL its query gave."""
    now = emulator.clock()
    config = emulator.config
    counters = emulator.counters
    name: str = request.path_params["name"]
    task = emulator.state.tasks.get(name.removesuffix(".mp4")) if name.endswith(".mp4") else None
    if task is None or task.status(now, config) != 1:
        counters.answer("files", 404)
        return _not_found()
    if config.output_url_ttl is not None:
        query = request.query_params
        why = emulator.signer.refusal(task.id, query.get("exp"), query.get("sig"), now)
        if why is not None:
            counters.answer("files", 403)
            return Response(why + "\n", 403, media_type="text/plain")
    blob = emulator.video_blob
    if blob.content_type != config.download_content_type:
        blob = replace(blob, content_type=config.download_content_type)
    ans = answer(blob, request.headers)
    if (
        request.method == "GET"
        and ans.status in (200, 206)
        and len(ans.body) >= 2
        and emulator.faults.cut_download(config.download_fail_rate)
    ):
        counters.fault("download_cut")
        counters.answer("files", "cut")
        return CutResponse(ans.body, ans.status, ans.headers)
    counters.answer("files", ans.status)
    return Response(ans.body, ans.status, ans.headers)


async def serve_frame(emulator: Emulator, request: Request) -> Response:
    """``GET /__emulator/frames/NAME.png``: a sample first or last frame for the demo."""
    name: str = request.path_params["name"]
    stem = name.removesuffix(".png")
    if not name.endswith(".png") or not FRAME_NAME.fullmatch(stem):
        emulator.counters.answer("frames", 404)
        return _not_found()
    blob = emulator.frames.get(stem)
    if blob is None:
        blob = emulator.frames[stem] = Blob.of(render_frame(stem), "image/png", emulator.started_at)
    ans = answer(blob, request.headers)
    emulator.counters.answer("frames", ans.status)
    return Response(ans.body, ans.status, ans.headers)
