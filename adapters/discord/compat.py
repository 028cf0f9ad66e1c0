"""Opt-in tolerance of Discord-compatible servers that are not Discord (``BOTHBOT_DISCORD_COMPAT``).

Off by default: against Discord itself the client uses discord.py's public API only. Switched on,
a client built with :func:`attach` also copes with a server that

- answers JSON as ``application/json; charset=utf-8`` (discord.py parses a body only when the
  content type is exactly ``application/json``): :func:`_json_or_text` stands in for discord.py's
  ``json_or_text`` while a compat client is open — installed when it starts, removed when the last
  one closes, so nothing outlives its client (:func:`installed` says whether it is in place);
- leaves out fields Discord always sends (gateway events are completed by
  :func:`~adapters.discord.payloads.normalize_event`; one discord.py still cannot parse is logged
  and skipped instead of ending the connection);
- has no ``/oauth2/applications/@me`` (the application is taken to be the bot user);
- sends a command from a server the client never cached (the member's role ids are read as sent,
  :func:`member_role_ids`; ``Member.roles`` would drop roles not in the cache).

Everything here reaches into discord.py's internals (module functions, the connection's parser
table), which is why it lives in one module, behind one switch.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
import discord.http
import discord.webhook.async_

from adapters.discord.payloads import normalize_event

log = logging.getLogger(__name__)

_PATCHED_MODULES: tuple[Any, ...] = (discord.http, discord.webhook.async_)
_originals: dict[Any, Any] = {}
_holders: set[int] = set()


async def _json_or_text(response: aiohttp.ClientResponse) -> dict[str, Any] | str:
    """discord.py's ``json_or_text`` reading the media type only (parameters such as charset ignored)."""
    text = await response.text(encoding="utf-8")
    if response.content_type == "application/json" and text:
        try:
            parsed: dict[str, Any] = json.loads(text)
            return parsed
        except ValueError:
            return text
    return text


def installed() -> bool:
    """Whether the lenient ``json_or_text`` is in place (only while a compat client is open)."""
    return discord.http.json_or_text is _json_or_text


def install(client: discord.Client) -> None:
    """Put the lenient ``json_or_text`` in place for ``client`` (on start); idempotent per client."""
    if not _holders:
        for module in _PATCHED_MODULES:
            _originals[module] = module.json_or_text
            setattr(module, "json_or_text", _json_or_text)  # noqa: B010 (webhook's is not exported)
    _holders.add(id(client))


def uninstall(client: discord.Client) -> None:
    """``client`` closed: restore discord.py's own ``json_or_text`` once no compat client is open."""
    _holders.discard(id(client))
    if not _holders and _originals:
        for module, original in _originals.items():
            setattr(module, "json_or_text", original)  # noqa: B010
        _originals.clear()


def guard_parsers(client: discord.Client) -> None:
    """Sparse gateway events are completed; one discord.py still cannot parse is logged and skipped.

    discord.py lets a parser's exception (say, a KeyError on a GUILD_CREATE whose channels lack a
    field) escape the gateway loop, which stops the client. One odd event must cost only itself:
    messages in a guild that was never cached are still answered (the adapter does not need the cache).
    """
    parsers: dict[str, Callable[[Any], None]] = client._connection.parsers

    def guild_of(channel_id: str) -> str | None:
        channel = client.get_channel(int(channel_id)) if channel_id.isdigit() else None
        guild = getattr(channel, "guild", None)
        return str(guild.id) if guild is not None else None

    def guarded(event: str, parse: Callable[[Any], None]) -> Callable[[Any], None]:
        def run(data: Any) -> None:
            try:
                parse(normalize_event(event, data, guild_of))
            except Exception:
                log.warning("could not read a %s event from the gateway; skipped it", event, exc_info=True)

        return run

    for event, parse in list(parsers.items()):
        parsers[event] = guarded(event, parse)


def application_from_user(client: discord.Client, exc: Exception) -> discord.AppInfo:
    """The application when the server has none: every application since 2017 has its bot user's id."""
    user = client.user
    if user is None:
        raise exc
    log.warning("could not read the application (%s); using the bot user's id %s", exc, user.id)
    data: dict[str, Any] = {
        "id": str(user.id),
        "name": user.name,
        "description": "",
        "icon": None,
        "bot_public": False,
        "bot_require_code_grant": False,
        "owner": {"id": str(user.id), "username": user.name, "discriminator": "0", "avatar": None},
        "verify_key": "",
        "flags": 0,
    }
    return discord.AppInfo(client._connection, data)  # type: ignore[arg-type]


def member_role_ids(user: discord.User | discord.Member) -> list[str]:
    """The member's role ids as the server sent them, cached or not (discord.py's ``Member._roles``)."""
    return [str(r) for r in getattr(user, "_roles", ())]
