"""Logging set-up: one format, and every known secret masked in every record."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable

MASK = "***"


class RedactSecrets(logging.Filter):
    """Replaces each secret value in the formatted message (args included) with ``***``."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
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
    level: str, secrets: Iterable[str], stream: object = None, *, payload_loggers: Iterable[str] = ()
) -> logging.Handler:
    """Log to ``stream`` (stderr) with every secret masked.

    ``payload_loggers``: loggers of client libraries that print raw payloads (message text,
    interaction tokens, webhook URLs) at DEBUG; each platform names its own (``adapters``).
    """
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
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
