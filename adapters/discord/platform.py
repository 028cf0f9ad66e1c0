"""``PLATFORM``: Discord as ``adapters.serve`` runs it (registered in ``adapters.PLATFORMS``)."""

from __future__ import annotations

import asyncio
import contextlib

from adapters.base import Platform, RuntimePort
from adapters.discord.client import build_client, check_settings, discord_token, serve_discord, stop_discord
from adapters.discord.settings import DiscordSettings
from bot.settings import Settings


class DiscordPlatform:
    name = "discord"
    settings_model = DiscordSettings

    def check(self, settings: Settings) -> None:
        check_settings(settings)  # the token, the shard options: a ConfigError naming the setting

    async def serve(self, runtime: RuntimePort, stop: asyncio.Event) -> None:
        """Connect to the gateway, answer until ``stop``; then finish the answers in flight and close."""
        token = discord_token(runtime.settings)
        client = build_client(runtime)
        serving = asyncio.create_task(serve_discord(client, token), name="discord-gateway")
        stopping = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await stopping
            await stop_discord(client)  # lets answers in progress finish first
        await serving  # re-raise a start-up error (bad token, refused intent)


PLATFORM: Platform = DiscordPlatform()  # annotated: mypy checks it against the protocol
