"""Builders of Discord API v10 wire payloads for the fake server and the tests.

Only the fields discord.py reads are filled in; shapes follow Discord's documentation
(https://discord.com/developers/docs) and discord.py's ``discord/types`` TypedDicts.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

# Snowflakes: (milliseconds since 2015-01-01) << 22 | counter; any increasing 64-bit ints will do.
_counter = itertools.count(1)
_BASE = 1_300_000_000_000_000_000


def snowflake() -> str:
    return str(_BASE + next(_counter))


def now_iso() -> str:
    return datetime.now(UTC).isoformat()


# Permission bits (https://discord.com/developers/docs/topics/permissions)
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5
VIEW_CHANNEL = 1 << 10
SEND_MESSAGES = 1 << 11
MEMBER_PERMISSIONS = VIEW_CHANNEL | SEND_MESSAGES | (1 << 16) | (1 << 31) | (1 << 38)


def user(user_id: str, name: str, *, bot: bool = False) -> JSON:
    return {
        "id": user_id,
        "username": name,
        "discriminator": "0",
        "global_name": name,
        "avatar": None,
        "bot": bot,
        "public_flags": 0,
    }


def member(user_payload: JSON, *, roles: list[str] | None = None, permissions: int | None = None) -> JSON:
    data: JSON = {
        "user": user_payload,
        "roles": roles or [],
        "joined_at": now_iso(),
        "deaf": False,
        "mute": False,
        "flags": 0,
        "nick": None,
    }
    if permissions is not None:
        data["permissions"] = str(permissions)
    return data


def text_channel(channel_id: str, guild_id: str, name: str) -> JSON:
    return {
        "id": channel_id,
        "type": 0,
        "guild_id": guild_id,
        "name": name,
        "position": 0,
        "permission_overwrites": [],
        "nsfw": False,
        "parent_id": None,
        "topic": None,
        "rate_limit_per_user": 0,
        "last_message_id": None,
    }


def thread_channel(thread_id: str, guild_id: str, parent_id: str, owner_id: str, name: str) -> JSON:
    return {
        "id": thread_id,
        "type": 11,
        "guild_id": guild_id,
        "parent_id": parent_id,
        "owner_id": owner_id,
        "name": name,
        "last_message_id": None,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "flags": 0,
        "thread_metadata": {
            "archived": False,
            "auto_archive_duration": 1440,
            "archive_timestamp": now_iso(),
            "locked": False,
        },
    }


def role(role_id: str, name: str, permissions: int) -> JSON:
    return {
        "id": role_id,
        "name": name,
        "permissions": str(permissions),
        "position": 0,
        "color": 0,
        "hoist": False,
        "managed": False,
        "mentionable": False,
        "flags": 0,
    }


def guild(guild_id: str, name: str, channels: list[JSON], roles: list[JSON], owner_id: str) -> JSON:
    return {
        "id": guild_id,
        "name": name,
        "icon": None,
        "owner_id": owner_id,
        "roles": roles,
        "channels": channels,
        "threads": [],
        "members": [],
        "member_count": 3,
        "emojis": [],
        "stickers": [],
        "features": [],
        "unavailable": False,
        "voice_states": [],
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "large": False,
        "joined_at": now_iso(),
        "verification_level": 0,
        "default_message_notifications": 0,
        "explicit_content_filter": 0,
        "mfa_level": 0,
        "afk_timeout": 300,
        "system_channel_flags": 0,
        "premium_tier": 0,
        "preferred_locale": "en-US",
        "nsfw_level": 0,
        "premium_progress_bar_enabled": False,
    }


def message(
    *,
    message_id: str,
    channel_id: str,
    author: JSON,
    content: str,
    guild_id: str | None = None,
    mentions: list[JSON] | None = None,
    reference: JSON | None = None,
    components: list[JSON] | None = None,
    embeds: list[JSON] | None = None,
    member_payload: JSON | None = None,
) -> JSON:
    data: JSON = {
        "id": message_id,
        "channel_id": channel_id,
        "author": author,
        "content": content,
        "timestamp": now_iso(),
        "edited_timestamp": None,
        "tts": False,
        "mention_everyone": False,
        "mentions": mentions or [],
        "mention_roles": [],
        "attachments": [],
        "embeds": embeds or [],
        "pinned": False,
        "type": 19 if reference else 0,
        "flags": 0,
        "components": components or [],
    }
    if guild_id is not None:
        data["guild_id"] = guild_id
        if member_payload is not None:
            data["member"] = {k: v for k, v in member_payload.items() if k != "user"}
    if reference is not None:
        data["message_reference"] = reference
    return data


def slash_option(name: str, value: str | None = None, *, sub: list[JSON] | None = None) -> JSON:
    """A subcommand option (``sub`` given or no value) or a string option."""
    if value is None:
        return {"name": name, "type": 1, "options": sub or []}
    return {"name": name, "type": 3, "value": value}


def interaction(
    *,
    interaction_id: str,
    application_id: str,
    token: str,
    kind: int,
    data: JSON,
    channel: JSON,
    guild_id: str | None,
    member_payload: JSON | None = None,
    user_payload: JSON | None = None,
    message_payload: JSON | None = None,
) -> JSON:
    payload: JSON = {
        "id": interaction_id,
        "application_id": application_id,
        "type": kind,
        "data": data,
        "channel_id": channel["id"],
        "channel": channel,
        "token": token,
        "version": 1,
        "app_permissions": str(MEMBER_PERMISSIONS | (1 << 34) | (1 << 35)),
        "locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": {"0": guild_id or "0"},
        "context": 0 if guild_id else 1,
        "attachment_size_limit": 8 * 1024 * 1024,
    }
    if guild_id is not None:
        payload["guild_id"] = guild_id
        payload["guild_locale"] = "en-US"
        payload["member"] = member_payload
    else:
        payload["user"] = user_payload
    if message_payload is not None:
        payload["message"] = message_payload
    return payload
