"""The Discord block of the settings: token, endpoints, admin roles, intents, sharding, streaming.

Read from the same sources as the rest of the tree (environment, ``.env``, ``bothbot.toml``) with
the names the docs give: ``DISCORD_TOKEN``, ``DISCORD_API_URL``, ``DISCORD_GATEWAY_URL`` and
``BOTHBOT_DISCORD_*``. Reach it as ``settings.platform(DiscordSettings)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from bot.settings import PlatformSettings, check_url, env_alias, split_env_list

ReplyMode = Literal["thread", "reply"]
REPLY_MODES: tuple[ReplyMode, ...] = ("thread", "reply")


class DiscordSettings(PlatformSettings):
    """Everything only the Discord adapter reads."""

    channel_options: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType({"reply_mode": REPLY_MODES})
    """``reply_mode``: answer a mention in a new thread (default) or as a reply; ``bothbot.toml``
    ``[channels."discord:…"] reply_mode = "reply"``, or ``/bothbot replymode``."""

    discord_token: SecretStr | None = Field(
        default=None, validation_alias=env_alias("DISCORD_TOKEN"), description="Bot token."
    )
    discord_api_url: str = Field(
        default="https://discord.com/api/v10",
        validation_alias=env_alias("DISCORD_API_URL"),
        description="Discord REST API base URL.",
    )
    discord_gateway_url: str | None = Field(
        default=None,
        validation_alias=env_alias("DISCORD_GATEWAY_URL"),
        description="ws(s):// gateway; unset = the URL {DISCORD_API_URL}/gateway returns.",
    )
    discord_admin_roles: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Role ids allowed to change settings (env: comma-separated, 123,456)."
    )
    discord_message_content: bool = Field(default=False, description="Use the privileged message-content intent.")
    discord_shard_count: int | None = Field(
        default=None, ge=1, description="Total shards across all processes; set = AutoShardedClient."
    )
    discord_shard_ids: Annotated[tuple[int, ...] | None, NoDecode] = Field(
        default=None, description="Shards this process runs, e.g. 0,1 (needs discord_shard_count); unset = all."
    )
    discord_edit_interval_seconds: float = Field(
        default=1.0, ge=0.0, le=10.0, description="Minimum time between edits of a streaming Discord reply."
    )
    discord_sync_commands: bool = Field(
        default=True, description="Register /bothbot with Discord at start-up (bulk overwrite, idempotent)."
    )
    discord_thread_archive_minutes: Literal[60, 1440, 4320, 10080] = Field(
        default=1440, description="Auto-archive time of the threads the bot opens for answers."
    )
    discord_compat: bool = Field(
        default=False,
        description="Tolerate Discord-compatible servers that are not Discord (JSON with a charset, "
        "sparse gateway events, no application endpoint); see adapters/discord/compat.py.",
    )

    @field_validator("discord_admin_roles", mode="before")
    @classmethod
    def _split_discord_roles(cls, value: Any) -> Any:
        return split_env_list(value) if isinstance(value, str) else value

    @field_validator("discord_shard_ids", mode="before")
    @classmethod
    def _split_discord_shards(cls, value: Any) -> Any:
        return (split_env_list(value) or None) if isinstance(value, str) else value

    @field_validator("discord_gateway_url")
    @classmethod
    def _valid_discord_gateway(cls, value: str | None) -> str | None:
        return check_url(value, "DISCORD_GATEWAY_URL", ("ws", "wss"))

    @field_validator("discord_api_url")
    @classmethod
    def _valid_api_url(cls, value: str) -> str:
        checked = check_url(value, "platform API URL", ("http", "https"))
        if checked is None:
            raise ValueError("the platform API URL must not be empty")
        return checked


def reply_mode(options: Mapping[str, str]) -> ReplyMode:
    """A channel's reply mode from its options (``ChannelSettings.options``); anything else is the default."""
    return "reply" if options.get("reply_mode") == "reply" else "thread"
