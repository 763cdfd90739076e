"""`batchkling mock-server`: serve the sjinn API emulator with uvicorn.

Starlette and uvicorn (the ``mock`` extra) are imported by the handler only, so
every other command works without them.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from batchkling.cli._types import finite_seconds, port_number, positive_seconds
from batchkling.emulator.clips import CLIP_SIZE
from batchkling.emulator.config import (
    CURSOR_FIELDS,
    DEFAULT_GEN_SECONDS,
    DEFAULT_HOST,
    DEFAULT_PORT,
    ERROR_CODE_FIELDS,
    FAILURE_FIELDS,
    OUTPUT_URL_FIELDS,
    STATUS_STYLES,
    EmulatorConfig,
    parse_range,
    parse_sizes,
)
from batchkling.emulator.usage_variants import USAGE_DEFECTS
from batchkling.errors import UsageError

if TYPE_CHECKING:
    import socket
    from types import FrameType

    import uvicorn

    from batchkling.cli._io import IO

# asyncio, socket and signal are imported where the server starts: building the
# parser (`--help`, any other command) loads none of the serving machinery.

__all__ = ["READY_PREFIX", "config_from_args", "register"]

READY_PREFIX = "batchkling mock-server: listening on "
INSTALL_HINT = "batchkling mock-server: needs starlette and uvicorn: pip install 'batchkling[mock]'"


def _range(text: str) -> tuple[float, float]:
    try:
        return parse_range(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _size(text: str) -> tuple[int, int]:
    from batchkling.emulator.clips import parse_size

    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _sizes(text: str) -> tuple[tuple[int, int], ...]:
    try:
        sizes = parse_sizes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if not sizes:
        raise argparse.ArgumentTypeError("expected one size or more, WxH,WxH")
    return sizes


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a probability, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a probability from 0 to 1, got {text}")
    return value


def register(sub: argparse._SubParsersAction[Any]) -> None:
    """Add ``mock-server`` and its flags."""
    p = sub.add_parser(
        "mock-server",
        help="serve an emulator of the sjinn API for offline runs, tests and benchmarks",
        description="Serve an emulator of the sjinn API (create, query, account, credits usage, "
        "video files) on loopback. Prints one line, 'batchkling mock-server: listening on URL', "
        "once it accepts connections; stops cleanly on Ctrl-C or SIGTERM.",
    )
    p.add_argument(
        "--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST})"
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"0 picks a free port (default {DEFAULT_PORT})",
    )
    _account_flags(p.add_argument_group("accounts and billing"))
    _generation_flags(p.add_argument_group("generation"))
    _variant_flags(p.add_argument_group("variants the API reference leaves open"))
    limits = p.add_argument_group("limits and faults (also settable through /__emulator/config)")
    _limit_flags(limits)
    _fault_flags(limits)
    _video_flags(limits)
    p.add_argument("--state", metavar="FILE", help="keep tasks and records in FILE across restarts")
    p.set_defaults(handler=_handle)


def _account_flags(group: argparse._ArgumentGroup) -> None:
    g = group.add_argument
    g(
        "--api-key",
        action="append",
        default=[],
        dest="api_keys",
        metavar="KEY",
        help="accept only this key (repeatable); without it any non-empty key is accepted",
    )
    g("--balance", type=float, metavar="CREDITS", help="balance of each key (default unlimited)")
    g("--refund-failed", action="store_true", help="refund failed tasks in the credits usage")
    g("--no-membership", action="store_true", help="answer every create with error 101")
    g(
        "--fetch-images",
        action="store_true",
        help="fetch each create's image and tail_image_url as the provider does; error 400 "
        "when one does not answer with an image",
    )


def _generation_flags(group: argparse._ArgumentGroup) -> None:
    g = group.add_argument
    lo, hi = DEFAULT_GEN_SECONDS
    g(
        "--gen-seconds",
        type=_range,
        default=DEFAULT_GEN_SECONDS,
        metavar="MIN,MAX",
        help=f"how long a task generates (default {lo:g},{hi:g})",
    )
    g("--seed", type=int, help="seed the random draws (generation times, failures, faults)")
    g("--fail-rate", type=_rate, default=0.0, metavar="P", help="probability a task fails")


def _variant_flags(group: argparse._ArgumentGroup) -> None:
    g = group.add_argument
    g(
        "--errors-as-http",
        action="store_true",
        help="answer functional errors with the matching HTTP status instead of 200",
    )
    g("--failed-status", type=int, default=-1, metavar="N", help="status of a failed task (-1)")
    g(
        "--extra-status",
        type=int,
        metavar="N",
        help="tasks show this undocumented status for the second half of their generation",
    )
    g(
        "--cursor-field",
        choices=CURSOR_FIELDS,
        default="next_cursor",
        help="name of the next-page cursor in credits usage (default next_cursor)",
    )
    g(
        "--failure-field",
        choices=FAILURE_FIELDS,
        default="error",
        help="where a failed task's reason goes: data.error (default), data.error_msg, "
        "or the top-level errorMsg",
    )
    g("--cover-url", action="store_true", help="list a .png cover URL before the .mp4 one")
    g(
        "--download-content-type",
        default="video/mp4",
        metavar="TYPE",
        help="Content-Type of the videos (e.g. application/octet-stream)",
    )
    _answer_flags(group)


def _answer_flags(group: argparse._ArgumentGroup) -> None:
    g = group.add_argument
    g(
        "--error-code-field",
        choices=ERROR_CODE_FIELDS,
        default="error_code",
        help="where the answers put their error code (default error_code)",
    )
    g(
        "--output-url-field",
        choices=OUTPUT_URL_FIELDS,
        default="output_urls",
        metavar="NAME",
        help="where a query puts the output URLs: " + ", ".join(OUTPUT_URL_FIELDS),
    )
    g("--output-url-single", action="store_true", help="the output URL as one string, not a list")
    g("--bad-output-url", action="store_true", help="the video's output URL is http://[::1")
    g(
        "--status-style",
        choices=STATUS_STYLES,
        default="number",
        help="statuses as numbers (0, 1, -1), floats (1.0) or words (Completed)",
    )
    g(
        "--no-url-polls",
        type=int,
        default=0,
        metavar="N",
        help="a finished task answers status 1 with no output URL to its first N queries",
    )
    g(
        "--error-msg-size",
        type=int,
        metavar="N",
        help="pad every errorMsg and failure reason to N characters",
    )
    g(
        "--query-http-status",
        type=int,
        metavar="N",
        help="answer every query with HTTP status N (a 3xx redirects)",
    )
    g(
        "--query-error-code",
        type=int,
        metavar="N",
        help="answer every query with HTTP 200, success: false and error code N",
    )
    g(
        "--trickle",
        type=positive_seconds,
        metavar="S",
        help="send every API answer one byte at a time, S seconds apart",
    )


def _limit_flags(group: argparse._ArgumentGroup) -> None:
    g = group.add_argument
    g(
        "--rate-limit",
        type=int,
        metavar="N",
        help="requests per second per key; excess gets 429 with Retry-After",
    )
    g("--no-retry-after", action="store_true", help="send 429s without Retry-After")
    g(
        "--max-running",
        type=int,
        metavar="N",
        help="tasks per key generating at once; excess creates get 429",
    )
    g(
        "--max-running-code",
        type=int,
        metavar="N",
        help="refuse excess creates with HTTP 200 and this error_code instead",
    )


def _fault_flags(group: argparse._ArgumentGroup) -> None:
    g = group.add_argument
    g(
        "--error-rate",
        type=_rate,
        default=0.0,
        metavar="P",
        help="probability of a 500/502/503 before doing anything",
    )
    g(
        "--lost-response-rate",
        type=_rate,
        default=0.0,
        metavar="P",
        help="probability a create is done and charged, then the connection dropped",
    )
    g(
        "--latency",
        type=_range,
        default=(0.0, 0.0),
        metavar="MIN,MAX",
        help="seconds added to every API answer",
    )
    g(
        "--download-fail-rate",
        type=_rate,
        default=0.0,
        metavar="P",
        help="probability a video download is cut off mid-body",
    )
    g(
        "--output-url-ttl",
        type=positive_seconds,
        metavar="S",
        help="output URLs stop working after S seconds",
    )
    g(
        "--usage-lag",
        type=finite_seconds,
        default=0.0,
        metavar="S",
        help="credits usage records appear only S seconds after they are made",
    )
    g(
        "--usage-clock-offset",
        type=float,
        default=0.0,
        metavar="S",
        help="the provider's clock, as its credits usage shows it, is S seconds ahead of ours",
    )
    g(
        "--usage-defect",
        choices=sorted(USAGE_DEFECTS),
        metavar="NAME",
        help="answer the credits usage wrongly in one way: " + ", ".join(sorted(USAGE_DEFECTS)),
    )


def _video_flags(group: argparse._ArgumentGroup) -> None:
    g = group.add_argument
    g(
        "--download-short-length",
        action="store_true",
        help="send two thirds of each video, with a Content-Length saying that is all",
    )
    g(
        "--download-no-length",
        action="store_true",
        help="send half of each video, without Content-Length",
    )
    g(
        "--download-gzip",
        action="store_true",
        help="gzip-compress each video, whatever the request's Accept-Encoding says",
    )
    g(
        "--video-duration-offset",
        type=float,
        default=0.0,
        metavar="S",
        help="served clips last S seconds longer than the task asked (negative: shorter)",
    )
    g(
        "--clip-size",
        type=_size,
        default=CLIP_SIZE,
        metavar="WxH",
        help=f"frame size of the served clips (default {CLIP_SIZE[0]}x{CLIP_SIZE[1]})",
    )
    g(
        "--clip-sizes",
        type=_sizes,
        default=(),
        metavar="WxH,WxH",
        help="give each task's clip the next of these sizes, in the order tasks are created, "
        "so that the takes of one storyboard differ (overrides --clip-size)",
    )


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    """The emulator settings the parsed flags ask for."""
    try:
        return EmulatorConfig(
            api_keys=tuple(args.api_keys),
            balance=args.balance,
            refund_failed=args.refund_failed,
            no_membership=args.no_membership,
            fetch_images=args.fetch_images,
            gen_seconds=args.gen_seconds,
            seed=args.seed,
            fail_rate=args.fail_rate,
            errors_as_http=args.errors_as_http,
            failed_status=args.failed_status,
            extra_status=args.extra_status,
            cursor_field=args.cursor_field,
            failure_field=args.failure_field,
            cover_url=args.cover_url,
            download_content_type=args.download_content_type,
            error_code_field=args.error_code_field,
            output_url_field=args.output_url_field,
            output_url_single=args.output_url_single,
            bad_output_url=args.bad_output_url,
            status_style=args.status_style,
            no_url_polls=args.no_url_polls,
            error_msg_size=args.error_msg_size,
            query_http_status=args.query_http_status,
            query_error_code=args.query_error_code,
            trickle=args.trickle,
            rate_limit=args.rate_limit,
            retry_after=not args.no_retry_after,
            max_running=args.max_running,
            max_running_code=args.max_running_code,
            error_rate=args.error_rate,
            lost_response_rate=args.lost_response_rate,
            latency=args.latency,
            download_fail_rate=args.download_fail_rate,
            download_short_length=args.download_short_length,
            download_no_length=args.download_no_length,
            download_gzip=args.download_gzip,
            video_duration_offset=args.video_duration_offset,
            clip_size=args.clip_size,
            clip_sizes=args.clip_sizes,
            output_url_ttl=args.output_url_ttl,
            usage_lag=args.usage_lag,
            usage_clock_offset=args.usage_clock_offset,
            usage_defect=args.usage_defect,
            state_file=args.state,
        )
    except ValueError as exc:
        raise UsageError(f"mock-server: {exc}.") from None


def _bind(host: str, port: int) -> socket.socket:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only
    # when the listening socket says TCP, and without it every answer waits
    # ~40 ms for a delayed ACK (headers and body are two writes).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise UsageError(
            f"mock-server: cannot listen on {host}:{port}: {exc.strerror}.",
            hint="Choose another --port, or --port 0 for a free one.",
        ) from None
    return sock


def _handle(args: argparse.Namespace, io: IO) -> int:
    import asyncio
    import signal

    config = config_from_args(args)
    try:
        import uvicorn

        from batchkling.emulator.app import create_app
    except ImportError:
        print(INSTALL_HINT, file=io.err)
        return 2
    sock = _bind(args.host, args.port)
    host, port = sock.getsockname()[:2]
    url = f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(config),
            log_level="warning",
            lifespan="off",
            workers=1,
            timeout_graceful_shutdown=3,
        )
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        # Before uvicorn installs its own handlers, and again when it re-raises
        # the signal after its shutdown: either way, just ask it to stop.
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        asyncio.run(_serve(server, sock, url, io))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        sock.close()
    return 0


async def _serve(server: uvicorn.Server, sock: socket.socket, url: str, io: IO) -> None:
    import asyncio

    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serving.done():
        await asyncio.sleep(0.01)
    if server.started:
        print(READY_PREFIX + url, file=io.out, flush=True)
    await serving
