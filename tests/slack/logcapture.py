"""The process's real log output (``configure_logging`` at INFO, as ``bothbot slack`` runs it),
captured in a buffer; and raw requests to the HTTP endpoint."""

from __future__ import annotations

import hashlib
import hmac
import io
import logging
import re
import time
from collections.abc import Iterator

from bot.logs import configure_logging
from tests.fakes.slack_payloads import SIGNING_SECRET
from tests.fakes.slack_server import BOT_TOKEN
from tests.slack.conftest import SlackProcess

LINE_START = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} [A-Z]+ [\w.:]+: ")
"""How every line of the log starts (a forged record would start the same way, on a line of its own)."""


class CapturedLog:
    """What the process's log handler (stderr in production) wrote."""

    def __init__(self, stream: io.StringIO) -> None:
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self) -> list[str]:
        return self.text.splitlines()

    def records(self) -> list[str]:
        """The lines that start a log record (a traceback's lines do not)."""
        return [line for line in self.lines() if LINE_START.match(line)]

    def clear(self) -> None:
        self.stream.seek(0)
        self.stream.truncate()


def capture_logs() -> Iterator[CapturedLog]:
    """Body of a ``captured_log`` fixture: the real set-up into a buffer, the old one put back after."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    chatty = {name: logging.getLogger(name).level for name in ("slack_bolt", "slack_sdk")}
    stream = io.StringIO()
    handler = configure_logging("INFO", [BOT_TOKEN, SIGNING_SECRET], stream, payload_loggers=tuple(chatty))
    try:
        yield CapturedLog(stream)
    finally:
        root.removeHandler(handler)
        for old in saved_handlers:
            root.addHandler(old)
        root.setLevel(saved_level)
        for name, level in chatty.items():
            logging.getLogger(name).setLevel(level)


def sign_bytes(body: bytes, secret: str = SIGNING_SECRET) -> dict[str, str]:
    """Slack's two signature headers for any body, UTF-8 or not."""
    ts = str(int(time.time()))
    digest = hmac.new(secret.encode(), b"v0:" + ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


async def post_raw(proc: SlackProcess, body: bytes, headers: dict[str, str]) -> int:
    """POST exactly these bytes and headers to ``/slack/events``; the status."""
    async with proc.session.post(proc.events_url, data=body, headers=headers) as response:
        await response.read()
        return response.status
