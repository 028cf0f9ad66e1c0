"""Running the Slack adapter: Socket Mode when ``SLACK_APP_TOKEN`` is set, else the HTTP Events API.

HTTP mode serves ``POST /slack/events`` (events, slash commands and interactivity all go to this
one URL; bolt verifies the signature and answers 401 to a bad or stale one) and ``GET /healthz``
on ``PORT`` (default 3000).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

from adapters.slack.app import SlackBot, build_slack_bot
from adapters.slack.client import SlackCredentials
from bot.settings import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def build_http_app(bot: SlackBot) -> web.Application:
    """The aiohttp application of HTTP mode."""

    async def events(request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        bolt_response = await bot.app.async_dispatch(bolt_request)
        return await to_aiohttp_response(bolt_response)

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "mode": "http", "bot_user": bot.identity.user_id})

    app = web.Application()
    app.router.add_post(EVENTS_PATH, events)
    app.router.add_get(HEALTH_PATH, health)
    app.router.add_get("/health", health)
    return app


@dataclass
class HttpService:
    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"


async def start_http(bot: SlackBot, host: str, port: int) -> HttpService:
    runner = web.AppRunner(build_http_app(bot), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(f"cannot listen on {host}:{port} ({exc.strerror}); set PORT to a free port") from exc
    bound = port
    sockets = getattr(site._server, "sockets", None)
    if sockets:
        bound = int(sockets[0].getsockname()[1])
    return HttpService(runner=runner, host=host, port=bound)


async def start_socket_mode(bot: SlackBot, app_token: str) -> AsyncSocketModeHandler:
    handler = AsyncSocketModeHandler(bot.app, app_token=app_token, logger=logging.getLogger("slack_sdk.socket_mode"))
    await handler.connect_async()  # type: ignore[no-untyped-call]
    return handler


@contextlib.asynccontextmanager
async def serving(bot: SlackBot, credentials: SlackCredentials, settings: Settings) -> AsyncIterator[str]:
    """Serve ``bot`` in the mode the credentials choose; yields a line saying where."""
    if credentials.app_token is not None:
        handler = await start_socket_mode(bot, credentials.app_token)
        try:
            yield "Slack: connected in Socket Mode"
        finally:
            await handler.close_async()  # type: ignore[no-untyped-call]
    else:
        service = await start_http(bot, settings.slack_http_host, settings.port)
        try:
            yield f"Slack: HTTP Events API on {service.url}{EVENTS_PATH} (health: {service.url}{HEALTH_PATH})"
        finally:
            await service.runner.cleanup()


def _install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(sig, stop.set)


async def run_slack(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """``bothbot slack``: start the runtime and the Slack app; return on SIGTERM/SIGINT or ``stop``.

    Raises :class:`bot.settings.ConfigError` (naming the setting) when a token is missing or rejected.
    """
    from bot.runtime import Runtime  # the runtime opens Redis, the knowledge base and the models

    credentials = SlackCredentials.from_settings(settings)
    stop = stop or asyncio.Event()
    _install_stop_signals(stop)
    runtime = await Runtime.start(settings)
    try:
        bot = await build_slack_bot(runtime, settings, credentials=credentials)
        try:
            async with serving(bot, credentials, settings) as where:
                for line in runtime.describe():
                    log.info("%s", line)
                log.info("%s", where)
                await stop.wait()
                log.info("Slack: stopping; waiting for answers in flight")
        finally:
            await bot.aclose()
    finally:
        await runtime.aclose()
