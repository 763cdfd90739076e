"""Telling someone that a run ended: a shell command, or a JSON POST to a URL.

The verdict is a frozen ``Verdict``; ``environment`` and ``payload`` turn it into
what the command's environment and the POST's body hold (pure). The two senders
do the I/O and never raise: each returns None when the verdict was delivered, or
one line saying why not, for the caller to show as a warning. A notifier must
never change how a run ended, nor hold its exit: the command gets
``COMMAND_TIMEOUT`` seconds (then it is killed, with anything it started), the
POST ``POST_TIMEOUT`` seconds and no retry.

The API key never reaches a notifier: it is in no variable this module sets, and
``SJINN_API_KEY`` is removed from the environment the command inherits (a
notifier has no use for it, and a script that logs its environment would leak it).
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from batchkling._util import plural, thousands

if TYPE_CHECKING:
    import subprocess

# subprocess and httpx are imported when a notifier is sent: the command line reads
# this module's defaults for its help, and a run without notifiers never needs them.

__all__ = [
    "COMMAND_TIMEOUT",
    "POST_TIMEOUT",
    "Verdict",
    "child_environment",
    "environment",
    "payload",
    "post_verdict",
    "run_command",
]

COMMAND_TIMEOUT = 60.0
POST_TIMEOUT = 10.0
# Variables of the user's environment a notifier never inherits.
_WITHHELD = ("SJINN_API_KEY",)


@dataclass(frozen=True)
class Verdict:
    """How a run ended, as a notifier is told."""

    exit_status: int
    done: int
    failed: int
    in_doubt: int
    credits: int  # committed by the run directory's ledger, over all its runs
    total: int  # jobs of the manifest
    report: str | None  # the report's absolute path; None when it could not be written
    manifest: str
    run_dir: str

    @property
    def text(self) -> str:
        """One line for a person: ``board: 3 of 4 jobs done, 1 failed; 2,000 credits; exit 1``."""
        name = os.path.basename(self.manifest)
        parts = [f"{self.done} of {plural(self.total, 'job')} done"]
        if self.failed:
            parts.append(f"{self.failed} failed")
        if self.in_doubt:
            parts.append(f"{self.in_doubt} in doubt")
        return (
            f"batchkling run {name}: {', '.join(parts)}; {thousands(self.credits)} credits "
            f"committed; exit {self.exit_status}"
        )


def environment(verdict: Verdict) -> dict[str, str]:
    """The variables a ``--notify`` command gets, ``BATCHKLING_EXIT`` and the rest."""
    return {
        "BATCHKLING_EXIT": str(verdict.exit_status),
        "BATCHKLING_DONE": str(verdict.done),
        "BATCHKLING_FAILED": str(verdict.failed),
        "BATCHKLING_IN_DOUBT": str(verdict.in_doubt),
        "BATCHKLING_CREDITS": str(verdict.credits),
        "BATCHKLING_TOTAL": str(verdict.total),
        "BATCHKLING_REPORT": verdict.report or "",
        "BATCHKLING_MANIFEST": verdict.manifest,
        "BATCHKLING_RUN_DIR": verdict.run_dir,
        "BATCHKLING_SUMMARY": verdict.text,
    }


def child_environment(inherited: Mapping[str, str], verdict: Verdict) -> dict[str, str]:
    """The whole environment of the command: the user's, without the key, plus the verdict."""
    env = {k: v for k, v in inherited.items() if k not in _WITHHELD}
    env.update(environment(verdict))
    return env


def payload(verdict: Verdict) -> dict[str, Any]:
    """The JSON body of ``--notify-url``: every field, and ``text`` for chat webhooks."""
    body: dict[str, Any] = asdict(verdict)
    body["text"] = verdict.text
    return body


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        proc.kill()
    proc.wait()


def run_command(
    command: str,
    verdict: Verdict,
    *,
    inherited: Mapping[str, str],
    timeout: float = COMMAND_TIMEOUT,
    stdout: int | None = None,
) -> str | None:
    """Run ``command`` through the shell with the verdict in its environment.

    Its standard output goes to ``stdout`` (a file descriptor; the caller passes
    its standard error, so that the command's words never mix with a summary
    read by a script); its standard error is inherited and it reads nothing.
    Returns None on exit status 0, else why it failed.
    """
    import subprocess

    try:
        proc = subprocess.Popen(
            command,
            shell=True,
            env=child_environment(inherited, verdict),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            start_new_session=True,  # its own process group, killed whole at the timeout
        )
    except OSError as exc:
        return f"--notify could not be started ({exc.strerror})"
    try:
        status = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        return f"--notify did not finish within {timeout:g} s and was stopped"
    if status == 127:
        return "--notify failed: the shell could not find the command (exit status 127)"
    if status != 0:
        return f"--notify exited with status {status}"
    return None


def _where(url: str) -> str:
    # A webhook's path is often its secret: messages name only the scheme and host.
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.netloc else "the URL"


def post_verdict(url: str, verdict: Verdict, *, timeout: float = POST_TIMEOUT) -> str | None:
    """POST the verdict as JSON to ``url``, once; None when it answered 2xx, else why not."""
    import httpx

    from batchkling.preflight.reach import unreached_reason

    try:
        response = httpx.post(url, json=payload(verdict), timeout=timeout, follow_redirects=False)
    except httpx.TimeoutException:
        return f"--notify-url: {_where(url)} did not answer within {timeout:g} s"
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        why = unreached_reason(exc) or type(exc).__name__
        return f"--notify-url: {_where(url)} could not be reached ({why})"
    if not 200 <= response.status_code < 300:
        return f"--notify-url: {_where(url)} answered HTTP {response.status_code}"
    return None
