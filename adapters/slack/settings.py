"""The Slack block of the settings: tokens, mode, slash command, admins, streaming.

Read from the same sources as the rest of the tree (environment, ``.env``, ``bothbot.toml``) with
the names the docs give: ``SLACK_BOT_TOKEN``, ``SLACK_APP_TOKEN``, ``SLACK_SIGNING_SECRET``,
``SLACK_API_URL``, ``PORT`` and ``BOTHBOT_SLACK_*``. Reach it as ``settings.platform(SlackSettings)``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from bot.settings import PlatformSettings, check_url, env_alias, split_env_list


class SlackSettings(PlatformSettings):
    """Everything only the Slack adapter reads."""

    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=env_alias("SLACK_BOT_TOKEN"), description="xoxb-… bot token."
    )
    slack_app_token: SecretStr | None = Field(
        default=None, validation_alias=env_alias("SLACK_APP_TOKEN"), description="xapp-… enables Socket Mode."
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias=env_alias("SLACK_SIGNING_SECRET"), description="HTTP mode: verifies requests."
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/",
        validation_alias=env_alias("SLACK_API_URL"),
        description="Slack Web API base URL.",
    )
    port: int = Field(default=3000, ge=0, le=65535, validation_alias=env_alias("PORT"), description="HTTP mode port.")
    slack_command: str = Field(default="/bothbot", description="Slash command name.")
    slack_admins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Slack user ids that are admins (env: comma-separated, U123,U456)."
    )
    slack_http_host: str = Field(default="0.0.0.0", description="HTTP mode: address to listen on.")
    slack_native_streaming: bool = Field(
        default=True, description="Try chat.startStream first; off = always post a placeholder and edit it."
    )
    slack_edit_interval_seconds: float = Field(
        default=1.0, ge=0.0, le=30.0, description="Least time between two edits/appends of a streamed answer."
    )
    slack_admin_cache_seconds: int = Field(
        default=300, ge=0, description="How long a users.info admin/owner answer is cached in Redis."
    )
    slack_socket_ping_seconds: float = Field(
        default=10.0, ge=0.1, le=120.0,
        description="Socket Mode: ping Slack this often; a connection that goes silent (no pong, no envelope) "
        "is dropped and reopened within 3× this.",
    )
    slack_compat: bool = Field(
        default=False,
        description="Tolerate Slack-compatible servers that are not Slack (non-JSON error answers, "
        "users.info by POST only); see adapters/slack/compat.py.",
    )

    @field_validator("slack_admins", mode="before")
    @classmethod
    def _split_slack_admins(cls, value: Any) -> Any:
        return split_env_list(value) if isinstance(value, str) else value

    @field_validator("slack_command")
    @classmethod
    def _valid_slack_command(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("/") or len(value) < 2 or " " in value:
            raise ValueError(f"slack_command={value!r} must look like /bothbot (a slash, then a name)")
        return value

    @field_validator("slack_api_url")
    @classmethod
    def _valid_api_url(cls, value: str) -> str:
        checked = check_url(value, "platform API URL", ("http", "https"))
        if checked is None:
            raise ValueError("the platform API URL must not be empty")
        return checked
