"""Logging set-up: text or JSON lines, every known secret masked in every record, and the trace id
of the answer being produced on every line logged while it is produced."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import traceback
from collections.abc import Iterable
from contextvars import ContextVar
from types import TracebackType
from typing import Literal

MASK = "***"

LogFormat = Literal["text", "json"]

TRACE_ID: ContextVar[str | None] = ContextVar("bothbot_trace_id", default=None)
"""The trace id of the answer being produced in this task (set by the engine; see ``bot.observability``)."""

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class TraceIdFilter(logging.Filter):
    """Puts the current answer's trace id (or None) on every record as ``record.trace_id``."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.trace_id = TRACE_ID.get()
        return True


class TextFormatter(logging.Formatter):
    """The text format; a line logged while an answer is produced ends with ``[trace <id>]``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        trace_id = getattr(record, "trace_id", None)
        return f"{line} [trace {trace_id}]" if trace_id else line


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    ``trace_id`` (while an answer is produced), ``exc`` (a traceback, if any).

    Non-ASCII and control characters are escaped (``ensure_ascii``), so a message can never break
    the line or forge another record.
    """

    def format(self, record: logging.LogRecord) -> str:
        created = time.gmtime(record.created)
        entry: dict[str, object] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", created) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        trace_id = getattr(record, "trace_id", None)
        if trace_id:
            entry["trace_id"] = trace_id
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=True, default=str)


# C0 controls (newline, CR, ESC of ANSI sequences …), DEL, C1 controls, and the Unicode line and
# paragraph separators: each would let text from a request start a forged log line or repaint one.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]


def _escaped(match: re.Match[str]) -> str:
    char = match.group()
    if char in _NAMED:
        return _NAMED[char]
    return f"\\x{ord(char):02x}" if ord(char) <= 0xFF else f"\\u{ord(char):04x}"


def escape_control(text: str) -> str:
    """``text`` with every control character written out (``\\n``, ``\\r``, ``\\t``, ``\\x1b``,
    ``\\u2028`` …), so it is one line with no terminal escapes in it. Printable text, backslashes
    included, is left alone (escaping twice changes nothing)."""
    return _CONTROL.sub(_escaped, text)


def format_exception(exc_info: ExcInfo) -> str:
    """A traceback whose structure keeps its lines, while each exception's message (which may
    carry request data) is escaped onto its own single line."""
    _, exc, tb = exc_info
    te = traceback.TracebackException(type(exc), exc, tb, compact=True)
    lines: list[str] = []
    _format_chain(te, lines, set())
    return "".join(lines).rstrip("\n")


def _format_chain(te: traceback.TracebackException, out: list[str], seen: set[int]) -> None:
    seen.add(id(te))
    if te.__cause__ is not None and id(te.__cause__) not in seen:
        _format_chain(te.__cause__, out, seen)
        out.append("\nThe above exception was the direct cause of the following exception:\n\n")
    elif te.__context__ is not None and not te.__suppress_context__ and id(te.__context__) not in seen:
        _format_chain(te.__context__, out, seen)
        out.append("\nDuring handling of the above exception, another exception occurred:\n\n")
    if te.stack:
        out.append("Traceback (most recent call last):\n")
        out.extend(te.stack.format())  # file names, line numbers and source lines: the code's own
    out.append(escape_control("".join(te.format_exception_only()).rstrip("\n")) + "\n")
    for number, sub in enumerate(getattr(te, "exceptions", None) or (), start=1):  # an ExceptionGroup's
        out.append(f"+---- sub-exception {number} ----\n")
        _format_chain(sub, out, seen)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a malformed call must not raise into the code that logged it
        return f"{record.msg!r} % {record.args!r}"


class EscapeControlChars(logging.Filter):
    """Escapes control characters in the final message and in the exception text of every record
    (see :func:`escape_control`), so no handler prints a raw newline or terminal escape taken from
    user data. Attach it to each handler (a filter on a logger misses records of its children)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_escaped", False):
            return True
        record.msg, record.args = escape_control(_message(record)), None
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = format_exception(record.exc_info)
        elif record.exc_text:
            record.exc_text = escape_control(record.exc_text)
        setattr(record, "_escaped", True)  # noqa: B010 - a mark for the next handler's copy of this filter
        return True


class RedactSecrets(logging.Filter):
    """Replaces each secret value in the formatted message (args included) with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = _message(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        redacted = message
        for secret in self._secrets:
            redacted = redacted.replace(secret, MASK)
        if record.exc_text:
            for secret in self._secrets:
                record.exc_text = record.exc_text.replace(secret, MASK)
        record.msg, record.args = redacted, None
        return True


def configure_logging(
    level: str,
    secrets: Iterable[str],
    stream: object = None,
    *,
    payload_loggers: Iterable[str] = (),
    fmt: LogFormat = "text",
) -> logging.Handler:
    """Log to ``stream`` (stderr) with every secret masked and every control character escaped
    (:class:`EscapeControlChars`), as text or JSON lines (``fmt``).

    ``payload_loggers``: loggers of client libraries that print raw payloads (message text,
    interaction tokens, webhook URLs) at DEBUG; each platform names its own (``adapters``).
    """
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(EscapeControlChars())  # first: it also formats the traceback, safely
    handler.addFilter(RedactSecrets(secrets))
    handler.addFilter(TraceIdFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in ("httpx", "httpx2", "httpcore", "openai", "aiohttp.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for chatty in payload_loggers:  # never below INFO: at DEBUG they print raw payloads
        logging.getLogger(chatty).setLevel(max(logging.INFO, root.level))
    return handler
