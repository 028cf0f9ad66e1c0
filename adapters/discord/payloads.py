"""Gateway payloads completed with Discord's defaults before discord.py reads them.

discord.py reads some fields that Discord always sends as required (a message's ``type``, a
member's ``flags``, an interaction's ``attachment_size_limit``, a channel's ``position``); a
Discord-compatible server that leaves one out would make discord.py drop the event, or end the
connection. :func:`normalize_event` fills in what Discord would have sent and nothing else, so a
full payload keeps its values. Pure functions on plain JSON; with ``BOTHBOT_DISCORD_COMPAT`` on, the
client applies them to every event before discord.py's parser (see ``compat.guard_parsers``).
Against Discord itself (compat off) events reach discord.py as they are.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

ATTACHMENT_SIZE_LIMIT = 10 * 1024 * 1024  # Discord's default upload limit

GuildOf = Callable[[str], str | None]


def _user(data: Any) -> Any:
    if not isinstance(data, Mapping):
        return data
    name = data.get("username") or data.get("global_name") or str(data.get("id", ""))
    return {"discriminator": "0", "avatar": None, **data, "username": name}


def _member(data: Any, user: Any = None) -> Any:
    if not isinstance(data, Mapping):
        return data
    member = {"roles": [], "flags": 0, "joined_at": None, "deaf": False, "mute": False, **data}
    if "user" in member or user is not None:
        member["user"] = _user(member.get("user", user))
    return member


def _message(data: Any, guild_of: GuildOf | None = None) -> Any:
    if not isinstance(data, Mapping):
        return data
    message = {
        "type": 0,
        "content": "",
        "tts": False,
        "mention_everyone": False,
        "mentions": [],
        "mention_roles": [],
        "attachments": [],
        "embeds": [],
        "pinned": False,
        "edited_timestamp": None,
        **data,
    }
    message["author"] = _user(message.get("author"))
    message["mentions"] = [_user(u) for u in message["mentions"] or []]
    if "member" in message:
        message["member"] = _member(message["member"])
    if not message.get("guild_id") and guild_of is not None and message.get("channel_id"):
        guild_id = guild_of(str(message["channel_id"]))  # a server channel's message without guild_id
        if guild_id:
            message["guild_id"] = guild_id
    return message


def _channel(data: Any, position: int) -> Any:
    if not isinstance(data, Mapping):
        return data
    return {"name": "", "position": position, "permission_overwrites": [], "bitrate": 64000, "user_limit": 0, **data}


def _role(data: Any) -> Any:
    if not isinstance(data, Mapping):
        return data
    defaults = {"name": "", "permissions": "0", "position": 0, "color": 0, "hoist": False, "managed": False}
    return {**defaults, "mentionable": False, **data}


def _guild(data: Any) -> Any:
    if not isinstance(data, Mapping) or data.get("unavailable") is True:
        return data
    lists = ("roles", "channels", "threads", "members", "emojis", "stickers", "features", "voice_states")
    guild = {key: [] for key in (*lists, "presences", "stage_instances", "guild_scheduled_events")} | dict(data)
    guild["channels"] = [_channel(c, i) for i, c in enumerate(guild["channels"] or [])]
    guild["roles"] = [_role(r) for r in guild["roles"] or []]
    guild["members"] = [_member(m) for m in guild["members"] or []]
    return guild


def _ready(data: Any) -> Any:
    if not isinstance(data, Mapping):
        return data
    ready = {"guilds": [], "private_channels": [], "relationships": [], **data}
    if "user" in ready:
        ready["user"] = _user(ready["user"])
    return ready


def _interaction(data: Any) -> Any:
    if not isinstance(data, Mapping):
        return data
    interaction = {"version": 1, "attachment_size_limit": ATTACHMENT_SIZE_LIMIT, **data}
    if not isinstance(interaction.get("channel"), Mapping) and interaction.get("channel_id"):
        # discord.py takes the channel (and ``Interaction.channel_id``) only from the channel object
        kind = 0 if interaction.get("guild_id") else 1
        interaction["channel"] = _channel({"id": interaction["channel_id"], "type": kind}, 0)
    if "member" in interaction:
        interaction["member"] = _member(interaction["member"], interaction.get("user"))
    elif "user" in interaction:
        interaction["user"] = _user(interaction["user"])
    if "message" in interaction:
        interaction["message"] = _message(interaction["message"])
    return interaction


_NORMALIZERS: Mapping[str, Callable[[Any], Any]] = {
    "READY": _ready,
    "INTERACTION_CREATE": _interaction,
    "GUILD_CREATE": _guild,
}


def normalize_event(event: str, data: Any, guild_of: GuildOf | None = None) -> Any:
    """A gateway event with Discord's defaults filled in where a compatible server left fields out.

    discord.py reads some fields that Discord always sends as required (a message's ``type``,
    a member's ``flags``, an interaction's ``attachment_size_limit``, a channel's ``position``).
    A payload that has them is returned unchanged in content; one that lacks them gets the value
    Discord would have sent, so a sparse but meaningful event is still understood. ``guild_of``
    (channel id → its server's id, from the cache) restores the ``guild_id`` of a server channel's
    message that lacks one, which would otherwise pass for a direct message.
    """
    if event == "MESSAGE_CREATE":
        return _message(data, guild_of)
    normalize = _NORMALIZERS.get(event)
    return data if normalize is None else normalize(data)
