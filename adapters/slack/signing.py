"""Checking an HTTP request's Slack signature, before anything reads or logs its body.

Slack signs each request with ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<body>">``
and ``X-Slack-Request-Timestamp`` (Unix seconds). :func:`check_request` says what is wrong with a
request, if anything, as an HTTP status and a short reason made of fixed words only: never the
body, never a header's value.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

MAX_AGE_SECONDS = 300
"""A signature older (or newer) than this is stale: Slack's own limit against replays."""

TIMESTAMP_HEADER = "X-Slack-Request-Timestamp"
SIGNATURE_HEADER = "X-Slack-Signature"

_TIMESTAMP = re.compile(r"[0-9]{1,15}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a request is refused: ``status`` 400 (malformed) or 401 (unsigned, bad or stale)."""

    status: int
    reason: str


def signature_for(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` value Slack would send for ``body`` at ``timestamp``."""
    base = b"v0:" + timestamp.encode("ascii") + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def check_request(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    clock: Callable[[], float] = time.time,
) -> Rejection | None:
    """None when ``body`` and ``headers`` carry a valid, fresh Slack signature.

    Malformed requests (a timestamp that isn't a whole number of seconds, a body that isn't UTF-8)
    get 400; a missing, bad or stale signature gets 401.
    """
    timestamp = headers.get(TIMESTAMP_HEADER)
    signature = headers.get(SIGNATURE_HEADER)
    if timestamp is not None and not _TIMESTAMP.fullmatch(timestamp):
        return Rejection(400, "malformed timestamp header")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return Rejection(400, "body is not UTF-8")
    if timestamp is None or signature is None:
        return Rejection(401, "unsigned")
    if not secret:
        return Rejection(401, "no signing secret is configured")
    if abs(clock() - int(timestamp)) > MAX_AGE_SECONDS:
        return Rejection(401, "stale signature")
    if not _SIGNATURE.fullmatch(signature):
        return Rejection(401, "bad signature")
    if not hmac.compare_digest(signature_for(secret, timestamp, body), signature):
        return Rejection(401, "bad signature")
    return None
