"""Running the Slack adapter: Socket Mode when ``SLACK_APP_TOKEN`` is set, else the HTTP Events API.

HTTP mode serves ``POST /slack/events`` (events, slash commands and interactivity all go to this
one URL; the signature is checked here, before bolt: 400 to a malformed request, 401 to a
missing, bad or stale signature), ``GET /healthz``, ``GET /readyz`` and ``GET /metrics`` on ``PORT``
(default 3000).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler
from slack_bolt.adapter.socket_mode.async_internals import run_async_bolt_app, send_async_response
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.request import SocketModeRequest
from slack_sdk.socket_mode.response import SocketModeResponse

from adapters.serve import serve
from adapters.slack.app import SlackBot
from adapters.slack.client import SlackCredentials
from adapters.slack.convert import malformed
from adapters.slack.settings import SlackSettings
from adapters.slack.signing import check_request
from bot import observability
from bot.listener import Listener, listen
from bot.settings import Settings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
HEALTH_PATH = "/healthz"


def build_http_app(bot: SlackBot) -> web.Application:
    """The aiohttp application of HTTP mode.

    Every request to ``/slack/events`` is checked here (``adapters.slack.signing``) before bolt
    sees it: a malformed one gets 400, an unsigned, forged or stale one 401, each with one short
    log line that never holds the body. A signed request is acknowledged (200) even when nothing
    handles it or it can't be handled: an error status would only make Slack send it again.
    """

    async def events(request: web.Request) -> web.Response:
        raw = await request.read()
        rejection = check_request(bot.signing_secret, request.headers, raw)
        if rejection is not None:
            what = f"{rejection.reason}; {len(raw)} bytes from {request.remote or '?'}"
            log.warning("slack: request refused with %d (%s)", rejection.status, what)
            return web.Response(status=rejection.status)
        return await _dispatch(bot, request, raw.decode("utf-8"))

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
    # /readyz and /metrics: the same handlers as BOTHBOT_HEALTH_PORT's (bot.observability)
    app.add_routes(observability.health_routes(observability.readiness_of(bot.runtime), healthz=False))
    return app


async def _dispatch(bot: SlackBot, request: web.Request, body: str) -> web.Response:
    """A signed request, through bolt; whatever goes wrong is acknowledged (200) and logged once."""
    try:
        headers = request.headers
        bolt_request = AsyncBoltRequest(body=body, query=request.query_string, headers=headers)  # type: ignore[arg-type]
        problem = malformed(bolt_request.body)
    except Exception as exc:  # a body bolt cannot parse (broken JSON in a form's payload …)
        problem = f"unreadable body: {type(exc).__name__}"
    if problem is not None:
        log.warning("slack: malformed request (%s, %d bytes) acknowledged and dropped", problem, len(body))
        return web.Response(status=200)
    try:
        bolt_response = await bot.app.async_dispatch(bolt_request)
    except Exception:
        log.exception("slack: request could not be dispatched")
        return web.Response(status=200)
    if bolt_response.status == 404:  # no listener for it (no type, app_rate_limited …): acknowledged
        log.debug("slack: acknowledged a request nothing handles")
        return web.Response(status=200)
    if bolt_response.status >= 500:
        # bolt's error handler has logged why (one line: ``adapters.slack.app._OneLineBoltErrors``)
        log.debug("slack: request failed inside bolt (%s); acknowledged and dropped", bolt_response.status)
        return web.Response(status=200)
    return await to_aiohttp_response(bolt_response)


async def start_http(bot: SlackBot, host: str, port: int) -> Listener:
    return await listen(build_http_app(bot), host, port, setting="PORT")


SOCKET_PING_SECONDS = 10.0
"""Default Socket Mode ping interval (bolt's default; ``BOTHBOT_SLACK_SOCKET_PING_SECONDS``)."""


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


async def start_socket_mode(
    bot: SlackBot, app_token: str, *, ping_seconds: float = SOCKET_PING_SECONDS
) -> AsyncSocketModeHandler:
    """Connect in Socket Mode; a connection that goes silent is replaced within about 3 × ``ping_seconds``.

    slack-sdk's aiohttp client opens the websocket with ``heartbeat=ping_seconds``: aiohttp pings after
    that long without a frame and closes the socket when no pong comes within half of it; the client's
    monitor task, waking every ``ping_seconds``, sees the closed socket and opens a new connection
    (``apps.connections.open`` + a new websocket). Its own ping/pong check (stale after 4 × ``ping_seconds``)
    is the backstop. A silent connection is thus replaced about 1.5-2.5 × ``ping_seconds`` after its last
    frame, plus the time to connect: the bound ``BOTHBOT_SLACK_SOCKET_PING_SECONDS`` documents as 3 ×.
    """
    handler = SocketModeHandler(
        bot.app, app_token=app_token, logger=logging.getLogger("slack_sdk.socket_mode"), ping_interval=ping_seconds
    )
    await handler.connect_async()  # type: ignore[no-untyped-call]
    return handler


@contextlib.asynccontextmanager
async def serving(bot: SlackBot, credentials: SlackCredentials, settings: Settings) -> AsyncIterator[str]:
    """Serve ``bot`` in the mode the credentials choose; yields a line saying where."""
    if credentials.app_token is not None:
        ping_seconds = settings.platform(SlackSettings).slack_socket_ping_seconds
        handler = await start_socket_mode(bot, credentials.app_token, ping_seconds=ping_seconds)
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
            await service.aclose()


async def run_slack(settings: Settings, *, stop: asyncio.Event | None = None) -> None:
    """What ``bothbot slack`` runs: the Slack app until SIGTERM/SIGINT or ``stop`` (see ``adapters.serve``).

    Raises :class:`bot.settings.ConfigError` (naming the setting) when a token is missing or rejected,
    before anything is opened.
    """
    await serve(settings, ["slack"], stop=stop)
