"""What leaves the program: every line redacted, and a closed pipe taken quietly.

``OutputStream`` wraps the command's stdout or stderr: each write has every
secret removed (``batchkling.api.key.redact``) before it leaves, and once the
reader of a pipe has gone (``batchkling status | head``) further writes are
dropped and the file descriptor points at ``/dev/null``, so neither the command
nor the interpreter's last flush fails: the command ends with its usual status.

``install_redaction`` does the same for log records and for the traceback of an
exception nothing caught.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import traceback
from types import TracebackType
from typing import Any, TextIO

from batchkling.api.key import redact

__all__ = ["OutputStream", "install_redaction"]


class OutputStream:
    """A text stream that redacts every secret and turns a closed pipe into a sink."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self.pipe_closed = False

    def write(self, text: str) -> int:
        if not self.pipe_closed:
            try:
                self._stream.write(redact(text))
            except BrokenPipeError:
                self._sink()
        return len(text)

    def flush(self) -> None:
        if not self.pipe_closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._sink()

    def _sink(self) -> None:
        # The reader is gone: later writes, and the interpreter's last flush of the
        # buffered stream, go to /dev/null instead of raising again.
        self.pipe_closed = True
        try:
            fd = self._stream.fileno()
            devnull = os.open(os.devnull, os.O_WRONLY)
        except (AttributeError, OSError, ValueError):
            return
        try:
            os.dup2(devnull, fd)
        finally:
            os.close(devnull)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class _Redacting(logging.Filter):
    """Removes every secret from a log record's message and its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format: logging reports it when the record is emitted
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact("".join(traceback.format_exception(*record.exc_info)))
        return True


_installed = False
_previous_factory = logging.getLogRecordFactory()


def _record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    _Redacting().filter(record)
    return record


def _excepthook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    sys.stderr.write(redact("".join(traceback.format_exception(kind, exc, tb))))


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is not None:
        _excepthook(args.exc_type, args.exc_value, args.exc_traceback)


def install_redaction() -> None:
    """Redact every log record, and the traceback of any exception nothing caught."""
    global _installed, _previous_factory
    if _installed:
        return
    _installed = True
    # A record factory, not a filter on some handler: it sees the records of every
    # logger, including those of libraries that set up their own handlers later.
    _previous_factory = logging.getLogRecordFactory()
    logging.setLogRecordFactory(_record)
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
