"""Running the Slack adapter: Socket Mode when ``SLACK_APP_TOKEN`` is set, else the HTTP Events API.

HTTP mode serves ``POST /slack/events`` (events, slash commands and interactivity all go to this
one URL; bolt verifies the signature and answers 401 to a bad or stale one) and ``GET /healthz``
on ``PORT`` (default 3000).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.response import BoltResponse
from slack_sdk.signature import SignatureVerifier
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from adapters.serve import serve
from adapters.slack.app import SlackBot
from adapters.slack.client import SlackCredentials
from adapters.slack.convert import malformed
from adapters.slack.settings import SlackSettings
from bot.settings import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def build_http_app(bot: SlackBot) -> web.Application:
    """The aiohttp application of HTTP mode."""

    verifier = SignatureVerifier(bot.signing_secret)

    async def events(request: web.Request) -> web.Response:
        body = await request.text()
        # A signed request that can't be handled is acknowledged (200) and logged: an error status
        # would only make Slack send the same body again, and again.
        try:
            bolt_request = await to_bolt_request(request)
            problem = malformed(bolt_request.body)
        except Exception:  # a body bolt cannot parse (broken JSON …)
            problem = "unreadable body"
        if problem is not None:
            if not verifier.is_valid_request(body, dict(request.headers)):
                return web.Response(status=401)
            log.warning("slack: malformed request (%s, %d bytes) acknowledged and dropped", problem, len(body))
            return web.Response(status=200)
        try:
            bolt_response = await bot.app.async_dispatch(bolt_request)
        except Exception:
            bolt_response = BoltResponse(status=500, body="")
            log.exception("slack: request could not be dispatched")
        if bolt_response.status >= 500 and verifier.is_valid_request(body, dict(request.headers)):
            log.warning("slack: request failed inside bolt (%s); acknowledged and dropped", bolt_response.status)
            return web.Response(status=200)
        return await to_aiohttp_response(bolt_response)

    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {
                "ok": True,
                "mode": "http",
                "bot_user": bot.identity.user_id or None,
                "handled": bot.processed,
                "in_flight": bot.in_flight,
            }
        )

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


class SocketModeHandler(AsyncSocketModeHandler):
    """bolt's Socket Mode handler, except that every envelope is acknowledged.

    bolt leaves an envelope unacked when the request fails inside it (a malformed payload makes
    its middleware raise), and Slack redelivers unacked envelopes: the same failure, again.
    """

    async def handle(self, client: SocketModeClient, req: SocketModeRequest) -> None:  # type: ignore[override]
        problem = malformed(req.payload)
        if problem is None:
            started = time.time()
            try:
                response = await run_async_bolt_app(self.app, req)
            except Exception:
                log.exception("slack: envelope could not be dispatched")
                response = BoltResponse(status=500, body="")
            if response.status == 200:
                await send_async_response(client, req, response, started)
                return
            problem = f"bolt answered {response.status}"
        log.warning("slack: envelope %s not handled (%s); acknowledged and dropped", req.type, problem)
        await client.send_socket_mode_response(SocketModeResponse(envelope_id=req.envelope_id))


async def start_socket_mode(bot: SlackBot, app_token: str) -> AsyncSocketModeHandler:
    handler = SocketModeHandler(bot.app, app_token=app_token, logger=logging.getLogger("slack_sdk.socket_mode"))
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
        slack = settings.platform(SlackSettings)
        service = await start_http(bot, slack.slack_http_host, slack.port)
        try:
            yield f"Slack: HTTP Events API on {service.url}{EVENTS_PATH} (health: {service.url}{HEALTH_PATH})"
        finally:
            await service.runner.cleanup()


async def run_slack(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """What ``bothbot slack`` runs: the Slack app until SIGTERM/SIGINT or ``stop`` (see ``adapters.serve``).

    Raises :class:`bot.settings.ConfigError` (naming the setting) when a token is missing or rejected,
    before anything is opened.
    """
    await serve(settings, ["slack"], stop=stop)
