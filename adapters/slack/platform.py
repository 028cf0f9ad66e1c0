"""``PLATFORM``: Slack as ``adapters.serve`` runs it (registered in ``adapters.PLATFORMS``)."""

from __future__ import annotations

import asyncio
import logging

from adapters.base import Platform, RuntimePort
from adapters.slack.app import build_slack_bot
from adapters.slack.client import SlackCredentials
from adapters.slack.server import serving
from adapters.slack.settings import SlackSettings
from bot.settings import Settings

log = logging.getLogger(__name__)


class SlackPlatform:
    name = "slack"
    settings_model = SlackSettings

    def check(self, settings: Settings) -> None:
        SlackCredentials.from_settings(settings)  # the tokens the mode needs, or a ConfigError naming them

    async def serve(self, runtime: RuntimePort, stop: asyncio.Event) -> None:
        """Connect (Socket Mode or HTTP), answer until ``stop``; then stop listening, drain, close."""
        settings = runtime.settings
        credentials = SlackCredentials.from_settings(settings)
        bot = await build_slack_bot(runtime, settings, credentials=credentials)
        try:
            async with serving(bot, credentials, settings) as where:
                log.info("%s", where)
                await stop.wait()
            # leaving `serving` stopped the socket or the HTTP listener: no new events from here
        finally:
            await bot.aclose()  # the answers in flight finish (bounded), then the Web API session closes


PLATFORM: Platform = SlackPlatform()  # annotated: mypy checks it against the protocol
