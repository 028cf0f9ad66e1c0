"""Wiring: a real ``discord.Client`` (or ``AutoShardedClient``) bound to a started Runtime.

``run_discord(settings)`` is what ``bothbot discord`` runs. The building blocks: ``build_client
(runtime)`` returns a client that only needs starting (tests start it themselves), and
``serve_discord(client, token)`` runs it with clear start-up errors (for a process that runs
several adapters on one Runtime).

Endpoints: ``DISCORD_API_URL`` becomes ``discord.http.Route.BASE`` and the gateway URL becomes
``DiscordWebSocket.DEFAULT_GATEWAY``. Both are class attributes in discord.py, so they are
process-wide: one process talks to one Discord (which is all a bot process ever does). With no
``DISCORD_GATEWAY_URL`` the client asks ``{DISCORD_API_URL}/gateway`` at start-up, as Discord
recommends, and falls back to discord.py's default if that fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from typing import Any

import discord
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord.commands import build_group
from adapters.discord.handlers import AdapterOptions, DiscordAdapter
from adapters.discord.memory import ConversationMemory
from bot.runtime import Runtime
from bot.settings import ConfigError, Settings

log = logging.getLogger(__name__)

TOKEN_HELP = (
    "DISCORD_TOKEN is not set. Create an application at https://discord.com/developers/applications, "
    "open Bot → Reset Token, and set DISCORD_TOKEN to that token (see docs/discord.md)."
)


def configure_endpoints(settings: Settings) -> None:
    """Point discord.py at ``DISCORD_API_URL`` and, when given, ``DISCORD_GATEWAY_URL``."""
    Route.BASE = settings.discord_api_url.rstrip("/")
    if settings.discord_gateway_url:  # the settings validator checked it is ws:// or wss://
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def build_intents(settings: Settings) -> discord.Intents:
    """Guilds, guild and DM messages; message content only when enabled (it is privileged)."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = settings.discord_message_content
    return intents


def _shard_options(settings: Settings) -> dict[str, Any]:
    count, ids = settings.discord_shard_count, settings.discord_shard_ids
    if ids is not None and count is None:
        raise ConfigError("discord_shard_ids needs discord_shard_count (the total across all processes).")
    if count is None:
        return {}
    if ids is not None:
        bad = [i for i in ids if not 0 <= i < count]
        if bad or not ids:
            raise ConfigError(
                f"discord_shard_ids={list(ids)} must be between 0 and discord_shard_count-1 ({count - 1})."
            )
        return {"shard_count": count, "shard_ids": sorted(set(ids))}
    return {"shard_count": count}


class _Wiring:
    """Event hooks shared by the plain and the sharded client."""

    bothbot: DiscordAdapter
    bothbot_settings: Settings
    tree: app_commands.CommandTree[Any]

    async def setup_hook(self) -> None:
        client: discord.Client = self  # type: ignore[assignment]
        settings = self.bothbot_settings
        if not settings.discord_gateway_url:
            try:
                data = await client.http.request(Route("GET", "/gateway"))
                DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(str(data["url"]))
            except Exception as exc:  # any failure here only costs the discovery, not the start
                fallback = DiscordWebSocket.DEFAULT_GATEWAY
                log.warning("could not ask %s/gateway (%s); using %s", Route.BASE, exc, fallback)
        log.info("Discord gateway: %s", DiscordWebSocket.DEFAULT_GATEWAY)
        shards = settings.discord_shard_ids
        if settings.discord_sync_commands and (shards is None or 0 in shards):  # one process registers
            try:
                synced = await self.tree.sync()
                log.info("registered /bothbot with %d subcommands", len(synced[0].options) if synced else 0)
            except Exception as exc:  # registration is an optimisation of start-up, never fatal
                log.warning("could not register the /bothbot command (%s); existing registration stays", exc)

    async def on_ready(self) -> None:
        client: discord.Client = self  # type: ignore[assignment]
        log.info("connected to Discord as %s in %d servers", client.user, len(client.guilds))

    async def on_resumed(self) -> None:
        log.info("Discord gateway session resumed")

    async def on_message(self, message: discord.Message) -> None:
        await self.bothbot.on_message(message)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self.bothbot.on_interaction(interaction)


class BothbotClient(_Wiring, discord.Client):
    pass


class ShardedBothbotClient(_Wiring, discord.AutoShardedClient):
    pass


def build_client(runtime: Runtime, settings: Settings | None = None) -> discord.Client:
    """A ready-to-start client answering with ``runtime.engine``; also points discord.py at the URLs."""
    settings = settings or runtime.settings
    configure_endpoints(settings)
    shards = _shard_options(settings)
    cls = ShardedBothbotClient if shards else BothbotClient
    client: BothbotClient | ShardedBothbotClient = cls(
        intents=build_intents(settings),
        max_messages=None,  # no message cache: nothing here reads old messages
        chunk_guilds_at_startup=False,
        member_cache_flags=discord.MemberCacheFlags.none(),
        allowed_mentions=discord.AllowedMentions.none(),
        **shards,
    )
    state = runtime.state
    memory = ConversationMemory(state.redis, state.key, settings.history_ttl_seconds)
    options = AdapterOptions(
        admin_roles=tuple(settings.discord_admin_roles),
        edit_interval=settings.discord_edit_interval_seconds,
        thread_archive_minutes=settings.discord_thread_archive_minutes,
    )
    adapter = DiscordAdapter(client, runtime.engine, memory, options)
    tree: app_commands.CommandTree[Any] = app_commands.CommandTree(client)
    tree.add_command(build_group(adapter.on_command, lambda: runtime.settings.profiles.keys()))
    tree.on_error = _tree_error  # type: ignore[method-assign]
    client.bothbot = adapter
    client.bothbot_settings = settings
    client.tree = tree
    return client


async def _tree_error(interaction: discord.Interaction, error: app_commands.AppCommandError) -> None:
    """Errors before a subcommand ran (unknown or outdated command, bad option): say so, briefly."""
    log.warning("slash command failed (interaction %s): %s", interaction.id, error, exc_info=error)
    if isinstance(error, app_commands.CommandNotFound | app_commands.CommandSignatureMismatch):
        text = "I don't know that command (Discord may still show an old version). Try `/bothbot help`."
    elif isinstance(error, app_commands.TransformerError):
        text = f"That value doesn't fit: {error}"
    else:
        text = f"Sorry — that command failed on my side (ref `{interaction.id}`)."
    if not interaction.response.is_done():
        with contextlib.suppress(Exception):
            await interaction.response.send_message(text[:2000], ephemeral=True)


def discord_token(settings: Settings) -> str:
    """The bot token, or a :class:`ConfigError` naming ``DISCORD_TOKEN``."""
    token = settings.discord_token.get_secret_value().strip() if settings.discord_token else ""
    if not token:
        raise ConfigError(TOKEN_HELP)
    return token


async def serve_discord(client: discord.Client, token: str) -> None:
    """Run a built client until it is closed; start-up refusals become clear :class:`ConfigError`s.

    For a process that runs several adapters on one Runtime: ``build_client(runtime)`` then this.
    """
    try:
        await client.start(token)
    except discord.LoginFailure:
        raise ConfigError("Discord rejected DISCORD_TOKEN (401). Reset the bot token and set it again.") from None
    except discord.PrivilegedIntentsRequired:
        raise ConfigError(
            "Discord refused the message-content intent. Enable MESSAGE CONTENT INTENT for the bot in the "
            "developer portal (Bot → Privileged Gateway Intents), or set BOTHBOT_DISCORD_MESSAGE_CONTENT=false."
        ) from None
    finally:
        if not client.is_closed():
            await client.close()


async def run_discord(settings: Settings) -> None:
    """``bothbot discord``: connect, answer until SIGTERM or Ctrl-C, then close cleanly."""
    token = discord_token(settings)
    _shard_options(settings)  # fail before opening anything
    configure_endpoints(settings)
    runtime = await Runtime.start(settings)
    try:
        for line in runtime.describe():
            log.info(line)
        client = build_client(runtime, settings)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(client.close()))
        try:
            await serve_discord(client, token)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGTERM)
    finally:
        await runtime.aclose()
