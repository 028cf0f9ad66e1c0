"""Connecting to Slack: the tokens, the Web API client (``SLACK_API_URL``, rate limits honoured), who we are."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import cast

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.convert import BotIdentity
from bot.settings import ConfigError, Settings

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


def slack_error(exc: Exception) -> str:
    """The Slack error code (``invalid_auth``, ``ratelimited`` …) or the failure's kind."""
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__


@dataclass(frozen=True, slots=True)
class SlackCredentials:

    bot_token: str
    signing_secret: str | None
    app_token: str | None

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackCredentials:
        """The tokens this process needs, or a :class:`ConfigError` naming the missing setting."""
        bot = settings.slack_bot_token.get_secret_value().strip() if settings.slack_bot_token else ""
        app = settings.slack_app_token.get_secret_value().strip() if settings.slack_app_token else ""
        secret = settings.slack_signing_secret.get_secret_value().strip() if settings.slack_signing_secret else ""
        if not bot:
            raise ConfigError(
                "SLACK_BOT_TOKEN is not set. Set it to the app's Bot User OAuth Token (xoxb-…, "
                "Slack app settings → OAuth & Permissions)."
            )
        if app and not app.startswith("xapp-"):
            raise ConfigError(
                "SLACK_APP_TOKEN must be an app-level token starting with xapp- (Basic Information → "
                "App-Level Tokens, scope connections:write). Unset it to use the HTTP Events API instead."
            )
        if not app and not secret:
            raise ConfigError(
                "Set SLACK_APP_TOKEN (xapp-…) for Socket Mode, or SLACK_SIGNING_SECRET (Basic Information → "
                "App Credentials) for the HTTP Events API on PORT."
            )
        return cls(bot_token=bot, signing_secret=secret or None, app_token=app or None)


async def fetch_identity(client: AsyncWebClient) -> BotIdentity:
    """``auth.test``: who the bot is. A rejected token is a configuration error, said plainly."""
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        raise ConfigError(
            f"Slack rejected SLACK_BOT_TOKEN ({slack_error(exc)}). Copy the Bot User OAuth Token (xoxb-…) "
            "from the app's OAuth & Permissions page and reinstall the app if it was revoked."
        ) from None
    except SlackClientError as exc:
        raise ConfigError(
            f"cannot reach the Slack Web API at {client.base_url} ({exc}). Check SLACK_API_URL."
        ) from None
    return BotIdentity(
        user_id=str(response.get("user_id") or ""),
        bot_id=cast(str | None, response.get("bot_id")),
        team_id=cast(str | None, response.get("team_id")),
    )
