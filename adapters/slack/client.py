"""Connecting to Slack: the tokens, the Web API client (``SLACK_API_URL``, rate limits honoured), who we are."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
    AsyncServerErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.compat import LenientWebClient
from adapters.slack.convert import BotIdentity
from adapters.slack.settings import SlackSettings
from bot import observability
from bot.settings import ConfigError, Settings

log = logging.getLogger(__name__)

RATE_LIMIT_RETRIES = 3
"""How many times one call waits out a 429 (for as long as its ``Retry-After`` says) and retries."""


def api_base_url(url: str) -> str:
    return url if url.endswith("/") else url + "/"


WEB_API_ERRORS: tuple[type[Exception], ...] = (SlackApiError, SlackClientError, aiohttp.ClientError, TimeoutError)
"""What a Web API call can raise: an error answer, or the server unreachable, dropping us, or too slow."""

METHOD_MISSING = frozenset(
    {"unknown_method", "http_404", "http_405", "http_501", "invalid_response", "not_supported", "method_deprecated"}
)
"""Error codes meaning "this API has no such method" (Slack's own, or a server standing in for it)."""

TOKEN_REJECTED = frozenset(
    {
        "invalid_auth",
        "not_authed",
        "account_inactive",
        "token_revoked",
        "token_expired",
        "not_allowed_token_type",
        "http_401",
        "http_403",
    }
)
"""``auth.test`` errors that mean the token itself is wrong (anything else: the method is just missing)."""


def api_session() -> aiohttp.ClientSession:
    """The Web API session: every request (retries included) and every 429 is counted
    (``bothbot_platform_api_calls`` / ``bothbot_platform_api_rate_limited``, by method)."""
    return aiohttp.ClientSession(trace_configs=[observability.api_trace("slack")])


def make_web_client(
    token: str,
    base_url: str,
    *,
    session: aiohttp.ClientSession | None = None,
    timeout: int = 30,
    compat: bool = False,
) -> AsyncWebClient:
    """An ``AsyncWebClient`` that retries 429s after ``Retry-After``, 500/503s and dropped connections.

    ``compat`` (``BOTHBOT_SLACK_COMPAT``): a :class:`~adapters.slack.compat.LenientWebClient`, for
    servers that are not Slack and answer errors in other shapes than Slack's JSON.
    """
    cls = LenientWebClient if compat else AsyncWebClient
    return cls(
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


def slack_error(exc: BaseException) -> str:
    """The Slack error code (``invalid_auth``, ``ratelimited``, ``http_404`` …) or the failure's kind.

    Never raises, whatever the response holds (a plain ``AsyncWebClient`` can carry a ``str`` body
    or a raw aiohttp response here).
    """
    if isinstance(exc, SlackApiError):
        response = exc.response
        data = getattr(response, "data", None)
        if isinstance(data, dict) and data.get("error"):
            return str(data["error"])
        status = getattr(response, "status_code", None) or getattr(response, "status", None)
        return f"http_{status}" if status and status != 200 else "invalid_response"
    return type(exc).__name__


@dataclass(frozen=True, slots=True)
class SlackCredentials:
    """The tokens of one Slack app; which of them is set chooses the mode."""

    bot_token: str
    signing_secret: str | None
    app_token: str | None

    @property
    def socket_mode(self) -> bool:
        return self.app_token is not None

    @classmethod
    def from_settings(cls, settings: Settings) -> SlackCredentials:
        """The tokens this process needs, or a :class:`ConfigError` naming the missing setting."""
        slack = settings.platform(SlackSettings)
        bot = slack.slack_bot_token.get_secret_value().strip() if slack.slack_bot_token else ""
        app = slack.slack_app_token.get_secret_value().strip() if slack.slack_app_token else ""
        secret = slack.slack_signing_secret.get_secret_value().strip() if slack.slack_signing_secret else ""
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


_NO_IDENTITY = (
    "the bot's own messages are recognised by their bot_id and subtype, and its mentions by the "
    "user id in each event's authorizations"
)


async def fetch_identity(client: AsyncWebClient) -> BotIdentity:
    """``auth.test``: who the bot is.

    A rejected token, or no server at ``SLACK_API_URL``, is a configuration error, said plainly.
    A server without ``auth.test`` (or one that answers it without ``user_id``) is not: the bot
    carries on without knowing its user id and says so once in the log.
    """
    try:
        response = await client.auth_test()
    except SlackApiError as exc:
        code = slack_error(exc)
        if code in TOKEN_REJECTED:
            raise ConfigError(
                f"Slack rejected SLACK_BOT_TOKEN ({code}). Copy the Bot User OAuth Token (xoxb-…) "
                "from the app's OAuth & Permissions page and reinstall the app if it was revoked."
            ) from None
        log.warning(
            "slack: auth.test failed at %s (%s), so the bot's user id is unknown; carrying on: %s",
            client.base_url,
            code,
            _NO_IDENTITY,
        )
        return BotIdentity(user_id="")
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        raise ConfigError(
            f"cannot reach the Slack Web API at {client.base_url} ({exc or type(exc).__name__}). Check SLACK_API_URL."
        ) from None
    identity = BotIdentity(
        user_id=_text(response.get("user_id")),
        bot_id=_text(response.get("bot_id")) or None,
        team_id=_text(response.get("team_id")) or None,
    )
    if not identity.user_id:
        log.warning("slack: auth.test did not say who the bot is (no user_id); carrying on: %s", _NO_IDENTITY)
    return identity


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""
