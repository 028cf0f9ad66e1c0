"""Wiring: a real ``discord.Client`` (or ``AutoShardedClient``) bound to a started Runtime.

``bothbot discord`` runs ``adapters.serve`` with the platform in ``platform.py``, which uses the
building blocks here: ``check_settings`` (clear errors before anything opens), ``build_client
(runtime)`` (a client that only needs starting; tests start it themselves), ``serve_discord
(client, token)`` (runs it, start-up refusals as clear errors) and ``stop_discord`` (drain, then
close). ``run_discord(settings)`` is the same lifecycle for a caller in Python.

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
from typing import Any

import aiohttp
import discord
import discord.webhook.async_
import yarl
from discord import app_commands
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.base import RuntimePort
from adapters.discord import compat
from adapters.discord.commands import build_group
from adapters.discord.handlers import AdapterOptions, DiscordAdapter
from adapters.discord.memory import ConversationMemory
from adapters.discord.settings import DiscordSettings
from adapters.discord.specs import DISCORD_SPECS
from adapters.serve import serve
from bot import observability
from bot.settings import ConfigError, Settings

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0
"""On SIGTERM, how long answers in progress may take to finish (platforms wait about 30 s)."""

TOKEN_HELP = (
    "DISCORD_TOKEN is not set. Create an application at https://discord.com/developers/applications, "
    "open Bot → Reset Token, and set DISCORD_TOKEN to that token (see docs/discord.md)."
)


def configure_endpoints(settings: DiscordSettings) -> None:
    """Point discord.py at ``DISCORD_API_URL`` and, when given, ``DISCORD_GATEWAY_URL``."""
    Route.BASE = settings.discord_api_url.rstrip("/")
    if settings.discord_gateway_url:  # the settings validator checked it is ws:// or wss://
        DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(settings.discord_gateway_url)


def build_intents(settings: DiscordSettings) -> discord.Intents:
    """Guilds, guild and DM messages; message content only when enabled (it is privileged)."""
    intents = discord.Intents.none()
    intents.guilds = True
    intents.guild_messages = True
    intents.dm_messages = True
    intents.message_content = settings.discord_message_content
    return intents


def _shard_options(settings: DiscordSettings) -> dict[str, Any]:
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
    bothbot_settings: DiscordSettings
    bothbot_compat: bool = False
    tree: app_commands.CommandTree[Any]
    _sync_task: asyncio.Task[None] | None = None

    async def setup_hook(self) -> None:
        client: discord.Client = self  # type: ignore[assignment]
        settings = self.bothbot_settings
        if not settings.discord_gateway_url:
            await _discover_gateway(client)
        log.info("Discord gateway: %s", DiscordWebSocket.DEFAULT_GATEWAY)
        shards = settings.discord_shard_ids
        if settings.discord_sync_commands and (shards is None or 0 in shards):  # one process registers
            # in the background: a slow or missing registration endpoint never delays answering
            self._sync_task = asyncio.create_task(self._register_commands(), name="discord-command-sync")

    async def _register_commands(self) -> None:
        try:
            synced = await self.tree.sync()
            log.info("registered /bothbot with %d subcommands", len(synced[0].options) if synced else 0)
        except Exception as exc:  # registration is an optimisation of start-up, never fatal
            log.warning("could not register the /bothbot command (%s); existing registration stays", exc)

    async def application_info(self) -> discord.AppInfo:
        """The application; with compat on, one with the bot user's id when the server has none.

        discord.py reads the application at login for its id (used to register commands and to
        answer interactions). Every application created since 2017 has its bot user's id, so a
        server without ``/oauth2/applications/@me`` costs nothing but a warning (compat only).
        """
        client: discord.Client = self  # type: ignore[assignment]
        try:
            return await discord.Client.application_info(client)
        except (discord.HTTPException, KeyError, TypeError, ValueError) as exc:
            if not self.bothbot_compat:
                raise
            return compat.application_from_user(client, exc)

    async def login(self, token: str) -> None:
        client: discord.Client = self  # type: ignore[assignment]
        if self.bothbot_compat:  # in place from the first request on, until this client closes
            compat.install(client)
        await super().login(token)  # type: ignore[misc]

    async def close(self) -> None:
        client: discord.Client = self  # type: ignore[assignment]
        if self._sync_task is not None:
            self._sync_task.cancel()
        try:
            await super().close()  # type: ignore[misc]
        finally:
            compat.uninstall(client)

    async def on_ready(self) -> None:
        client: discord.Client = self  # type: ignore[assignment]
        log.info("connected to Discord as %s in %d servers", client.user, len(client.guilds))

    async def on_resumed(self) -> None:
        log.info("Discord gateway session resumed")

    async def on_message(self, message: discord.Message) -> None:
        await self.bothbot.on_message(message)

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        await self.bothbot.on_interaction(interaction)


async def _discover_gateway(client: discord.Client) -> None:
    """``GET /gateway`` (then ``/gateway/bot``) as Discord recommends; keep the default if neither works."""
    for path in ("/gateway", "/gateway/bot"):
        try:
            data = await client.http.request(Route("GET", path))
            DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(str(data["url"]))
            return
        except Exception as exc:  # any failure here only costs the discovery, not the start
            log.warning("could not ask %s%s (%s)", Route.BASE, path, exc)
    log.warning("no gateway URL from %s; using %s", Route.BASE, DiscordWebSocket.DEFAULT_GATEWAY)


class BothbotClient(_Wiring, discord.Client):
    pass


class ShardedBothbotClient(_Wiring, discord.AutoShardedClient):
    pass


def build_client(runtime: RuntimePort, settings: Settings | None = None) -> discord.Client:
    """A ready-to-start client answering with ``runtime.engine``; also points discord.py at the URLs."""
    settings = settings or runtime.settings
    discord_settings = settings.platform(DiscordSettings)
    configure_endpoints(discord_settings)
    shards = _shard_options(discord_settings)
    cls = ShardedBothbotClient if shards else BothbotClient
    client: BothbotClient | ShardedBothbotClient = cls(
        intents=build_intents(discord_settings),
        max_messages=None,  # no message cache: nothing here reads old messages
        chunk_guilds_at_startup=False,
        member_cache_flags=discord.MemberCacheFlags.none(),
        allowed_mentions=discord.AllowedMentions.none(),
        http_trace=observability.api_trace("discord"),  # REST calls and their 429s, in the metrics
        **shards,
    )
    client.bothbot_compat = discord_settings.discord_compat
    if client.bothbot_compat:
        compat.guard_parsers(client)
    memory = ConversationMemory(runtime.state, settings.history_ttl_seconds)
    options = AdapterOptions(
        admin_roles=tuple(discord_settings.discord_admin_roles),
        edit_interval=discord_settings.discord_edit_interval_seconds,
        thread_archive_minutes=discord_settings.discord_thread_archive_minutes,
        compat=discord_settings.discord_compat,
    )
    adapter = DiscordAdapter(client, runtime.engine, memory, options)
    for spec in DISCORD_SPECS:  # Discord's own commands (replymode), run by the core from their specs
        runtime.engine.commands.add(spec)
    tree: app_commands.CommandTree[Any] = _AutocompleteOnlyTree(client)
    tree.add_command(build_group(adapter.on_command, lambda: runtime.settings.profiles.keys()))
    tree.on_error = _tree_error  # type: ignore[method-assign]
    client.bothbot = adapter
    client.bothbot_settings = discord_settings
    client.tree = tree
    return client


class _AutocompleteOnlyTree(app_commands.CommandTree[Any]):
    """Registers ``/bothbot`` and answers autocomplete; the adapter itself runs the commands.

    discord.py's tree matches an interaction against the registered signature exactly, and a
    command whose options differ (another option name, no ``type``, a missing subcommand) ends
    in an error or, for a malformed option, in nothing at all. The adapter reads the command
    leniently with ``convert.slash_command`` instead (see ``DiscordAdapter.on_interaction``).
    """

    async def interaction_check(self, interaction: discord.Interaction[Any], /) -> bool:
        return interaction.type is discord.InteractionType.autocomplete


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
    block = settings.platform(DiscordSettings)
    token = block.discord_token.get_secret_value().strip() if block.discord_token else ""
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
    except discord.GatewayNotFound as exc:
        raise ConfigError(
            f"cannot find the Discord gateway ({exc}). Check DISCORD_GATEWAY_URL (unset: the URL "
            "{DISCORD_API_URL}/gateway returns)."
        ) from None
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:  # no server there: refused, no route, DNS
        raise ConfigError(
            f"cannot reach the Discord API at {Route.BASE} ({exc or type(exc).__name__}). "
            "Check DISCORD_API_URL (unset: https://discord.com/api) and the network."
        ) from None
    except discord.HTTPException as exc:
        if client.is_ready():  # once running, the library's own errors are not a start-up problem
            raise
        raise ConfigError(
            f"the Discord API at {Route.BASE} refused the login ({exc.status} {exc.text or exc}). "
            "Check DISCORD_API_URL and DISCORD_TOKEN."
        ) from None
    finally:
        if not client.is_closed():
            await client.close()


async def stop_discord(client: discord.Client, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
    """Finish the answers in progress (at most ``grace`` seconds), then close the connection."""
    adapter: DiscordAdapter | None = getattr(client, "bothbot", None)
    if adapter is not None:
        unfinished = await adapter.drain(grace)
        if unfinished:
            log.warning("stopping with %d answer(s) unfinished after %.0f s", unfinished, grace)
    await client.close()


def check_settings(settings: Settings) -> None:
    """A :class:`ConfigError` naming the setting if the Discord block cannot start (before anything opens)."""
    discord_token(settings)
    _shard_options(settings.platform(DiscordSettings))


async def run_discord(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """What ``bothbot discord`` runs: connect, answer until SIGTERM/SIGINT or ``stop``, then finish the
    answers in progress and close (see ``adapters.serve``)."""
    await serve(settings, ["discord"], stop=stop)
