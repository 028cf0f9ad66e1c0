"""The Slack Web API client: one per process, pointed at ``SLACK_API_URL``, honouring rate limits."""

from __future__ import annotations

import logging

import aiohttp
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 3
"""How many times one call waits out a 429 (for as long as its ``Retry-After`` says) and retries."""


def api_base_url(url: str) -> str:
    return url if url.endswith("/") else url + "/"


def make_web_client(
    token: str, base_url: str, *, session: aiohttp.ClientSession | None = None, timeout: int = 30
) -> AsyncWebClient:
    """An ``AsyncWebClient`` that retries 429s after ``Retry-After``, 500/503s and dropped connections."""
    return AsyncWebClient(
        token=token,
        base_url=api_base_url(base_url),
        timeout=timeout,
        session=session,
        logger=logging.getLogger("slack_sdk.web"),
        retry_handlers=[
            AsyncConnectionErrorRetryHandler(max_retry_count=2),
            AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES),
            AsyncServerErrorRetryHandler(max_retry_count=1),
        ],
    )
