"""``bothbot serve slack discord``: several adapters in one process, sharing one runtime.

With the embedded knowledge base only one process can open the data directory, so this is how
Slack and Discord run side by side without a Qdrant server. Stops cleanly on SIGTERM/SIGINT, or
when any adapter ends (its error is raised after the others are shut down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence

from bot.runtime import Runtime
from bot.settings import Settings

log = logging.getLogger(__name__)

PLATFORMS = ("slack", "discord")


async def _slack(runtime: Runtime, settings: Settings, stop: asyncio.Event) -> None:
    from adapters.slack.app import build_slack_bot
    from adapters.slack.client import SlackCredentials
    from adapters.slack.server import serving

    credentials = SlackCredentials.from_settings(settings)
    bot = await build_slack_bot(runtime, settings, credentials=credentials)
    try:
        async with serving(bot, credentials, settings) as where:
            log.info("%s", where)
            await stop.wait()
    finally:
        await bot.aclose()


async def _discord(runtime: Runtime, settings: Settings, stop: asyncio.Event) -> None:
    from adapters.discord.client import build_client, discord_token, serve_discord, stop_discord

    token = discord_token(settings)
    client = build_client(runtime, settings)
    serving = asyncio.create_task(serve_discord(client, token))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({serving, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await stopping
        await stop_discord(client)  # lets answers in progress finish first
    await serving  # re-raise a start-up error (bad token, refused intent)


async def serve(settings: Settings, platforms: Sequence[str], *, stop: asyncio.Event | None = None) -> None:
    unknown = sorted(set(platforms) - set(PLATFORMS))
    if unknown or not platforms:
        raise ValueError(f"serve takes one or more of: {', '.join(PLATFORMS)} (got {', '.join(unknown) or 'none'})")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)
    runtime = await Runtime.start(settings, serve_ingest=True)
    try:
        for line in runtime.describe():
            log.info("%s", line)
        runners = {"slack": _slack, "discord": _discord}
        tasks = [
            asyncio.create_task(runners[name](runtime, settings, stop), name=f"bothbot-{name}")
            for name in dict.fromkeys(platforms)
        ]
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop.set()  # one adapter ended (stop signal or failure): stop the others too
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
        await runtime.aclose()
