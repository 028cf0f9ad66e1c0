"""A local fake of the Slack Web API and Socket Mode, on loopback port 0, for the real slack-sdk.

Web API: ``POST /api/<method>`` with a bearer token, form or JSON bodies, Slack's ``{"ok": …}``
envelopes (HTTP 200 even for errors, 429 + ``Retry-After`` for rate limits). Implemented:
``auth.test``, ``chat.postMessage``, ``chat.update``, ``chat.postEphemeral``,
``chat.startStream`` / ``chat.appendStream`` / ``chat.stopStream`` (or ``unknown_method`` when
``streaming=False``), ``users.info``, ``conversations.replies`` and ``apps.connections.open``.

Socket Mode: ``apps.connections.open`` returns a ``ws://`` URL to this server; a connection gets
``hello``, then whatever envelopes the test sends; acks are recorded by ``envelope_id``.

``response_url``\\ s handed out by :meth:`FakeSlack.response_url` point here too and record posts.
Everything received is recorded; tests wait on conditions, never on sleeps. With
``record_times=True`` (off by default) every message also keeps ``changes``: when each call that
posted, edited or streamed into it was answered (``time.monotonic()``) and what it showed then.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from aiohttp import WSMsgType, web

from tests.fakes.harness import Loopback

T = TypeVar("T")

BOT_TOKEN = "xoxb-test-bot-token"
APP_TOKEN = "xapp-1-test-app-token"


@dataclass
class ApiCall:
    method: str
    args: dict[str, Any]
    token: str | None


@dataclass(frozen=True)
class Change:
    """One call that changed a message (``record_times``): when, which method, what it showed after."""

    at: float
    method: str
    shown: str


@dataclass
class FakeMessage:
    """A message the bot posted (or streamed); ``text`` is the latest text / streamed Markdown."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    streamed: bool = False
    stream_open: bool = False
    edits: int = 0
    appends: int = 0
    changes: list[Change] = field(default_factory=list)  # filled only with FakeSlack(record_times=True)

    @property
    def block_text(self) -> str:
        """The text of its section blocks (what a Slack client shows when blocks are present)."""
        parts = [
            b["text"]["text"] for b in self.blocks if b.get("type") == "section" and isinstance(b.get("text"), dict)
        ]
        return "\n".join(parts) if parts else self.text

    def buttons(self) -> list[dict[str, Any]]:
        return [e for b in self.blocks if b.get("type") == "actions" for e in b.get("elements", [])]

    def context_text(self) -> str:
        return " ".join(
            e.get("text", "") for b in self.blocks if b.get("type") == "context" for e in b.get("elements", [])
        )


@dataclass
class Ephemeral:
    channel: str
    user: str
    text: str
    thread_ts: str | None
    blocks: list[dict[str, Any]] = field(default_factory=list)


def _decode_json_fields(args: dict[str, Any]) -> dict[str, Any]:
    for key in ("blocks", "attachments", "metadata", "chunks"):
        value = args.get(key)
        if isinstance(value, str):
            with contextlib.suppress(json.JSONDecodeError):
                args[key] = json.loads(value)
    return args


class FakeSlack:
    """``async with FakeSlack() as slack:`` — ``slack.api_url`` goes into ``SLACK_API_URL``."""

    def __init__(
        self,
        *,
        team_id: str = "T1",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        streaming: bool = True,
        users: dict[str, dict[str, Any]] | None = None,
        record_times: bool = False,
    ) -> None:
        self.team_id = team_id
        self.record_times = record_times
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.streaming = streaming
        self.users: dict[str, dict[str, Any]] = users or {}
        self.post_only = False  # True: refuse GET like an API proxy that only forwards POST
        self.calls: list[ApiCall] = []
        self.messages: dict[str, FakeMessage] = {}
        self.ephemerals: list[Ephemeral] = []
        self.responses: list[dict[str, Any]] = []  # posts to response_urls
        self.response_url_status = 200  # e.g. 404: every response_url has expired
        self.acks: dict[str, dict[str, Any]] = {}
        self.rate_limits: dict[str, list[int]] = {}
        self.failures: dict[str, list[str]] = {}
        self.http_failures: dict[str, list[tuple[int, str, str]]] = {}
        self._sockets: list[web.WebSocketResponse] = []
        self._silent: set[web.WebSocketResponse] = set()  # see go_silent()
        self.sockets_opened = 0  # Socket Mode connections accepted so far
        self.pongs = 0  # pings answered on Socket Mode connections
        self._ts = itertools.count(1)
        self.server = Loopback(self._routes, default_timeout=10.0, record=False)  # ``calls`` are ours

    # --- lifecycle ---------------------------------------------------------------------------

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/link", self._socket)
        app.router.add_post("/respond/{key}", self._respond)

    async def start(self) -> FakeSlack:
        await self.server.start()
        return self

    async def stop(self) -> None:
        for ws in list(self._sockets):
            await ws.close()
        for ws in list(self._silent):  # a silenced socket the client has not dropped yet: cut it
            if not ws.closed:
                await ws.close(drain=False)
        await self.server.close()

    async def __aenter__(self) -> FakeSlack:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # --- test controls -----------------------------------------------------------------------

    def rate_limit_next(self, method: str, retry_after: int = 0, count: int = 1) -> None:
        self.rate_limits.setdefault(method, []).extend([retry_after] * count)

    def fail_next(self, method: str, error: str, count: int = 1) -> None:
        self.failures.setdefault(method, []).extend([error] * count)

    def fail_http_next(
        self, method: str, status: int, body: str = "", content_type: str = "text/plain", count: int = 1
    ) -> None:
        """Answer ``method`` with a non-Slack HTTP response (a proxy's 502, a 404 page, HTML …)."""
        self.http_failures.setdefault(method, []).extend([(status, content_type, body)] * count)

    def response_url(self, key: str | None = None) -> str:
        return f"{self.base}/respond/{key or uuid.uuid4().hex}"

    async def _notify(self) -> None:
        await self.server.changed()

    async def wait_for(self, predicate: Callable[[], T], timeout: float = 10.0) -> T:
        return await self.server.wait_for(predicate, timeout)

    def calls_to(self, method: str) -> list[ApiCall]:
        return [c for c in self.calls if c.method == method]

    def bot_messages(self, channel: str | None = None, thread_ts: str | None = None) -> list[FakeMessage]:
        return [
            m
            for m in self.messages.values()
            if (channel is None or m.channel == channel) and (thread_ts is None or m.thread_ts == thread_ts)
        ]

    def finished(self, message: FakeMessage) -> bool:
        """Finished = has its closing blocks (buttons), or a stream that was stopped."""
        return (not message.stream_open) and bool(message.buttons() or (not message.streamed and message.edits))

    # --- Web API -----------------------------------------------------------------------------

    async def _args(self, request: web.Request) -> dict[str, Any]:
        args: dict[str, Any] = dict(parse_qsl(request.query_string))
        raw = await request.text()
        if raw:
            if request.content_type == "application/json":
                args.update(json.loads(raw))
            else:
                args.update(dict(parse_qsl(raw, keep_blank_values=True)))
        return _decode_json_fields(args)

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        if self.post_only and request.method != "POST":
            return web.Response(status=405, text="Method Not Allowed")
        args = await self._args(request)
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ").strip() or args.pop("token", None)
        self.calls.append(ApiCall(method, args, token))
        try:
            if self.rate_limits.get(method):
                retry_after = self.rate_limits[method].pop(0)
                return web.json_response(
                    {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": str(retry_after)}
                )
            if self.failures.get(method):
                return web.json_response({"ok": False, "error": self.failures[method].pop(0)})
            if self.http_failures.get(method):
                status, content_type, text = self.http_failures[method].pop(0)
                return web.Response(status=status, text=text, content_type=content_type)
            if not token:
                return web.json_response({"ok": False, "error": "not_authed"})
            handler = getattr(self, "_m_" + method.replace(".", "_"), None)
            if handler is None:
                return web.json_response({"ok": False, "error": "unknown_method"})
            result: dict[str, Any] = await handler(args, token)
            return web.json_response(result)
        finally:
            await self._notify()

    def _changed(self, message: FakeMessage, method: str) -> None:
        if self.record_times:
            shown = message.text if message.streamed else message.block_text
            message.changes.append(Change(time.monotonic(), method, shown))

    def _next_ts(self) -> str:
        return f"1700000000.{next(self._ts):06d}"

    async def _m_auth_test(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        return {
            "ok": True,
            "url": "https://acme.slack.com/",
            "team": "Acme",
            "user": "bothbot",
            "team_id": self.team_id,
            "user_id": self.bot_user_id,
            "bot_id": self.bot_id,
            "is_enterprise_install": False,
        }

    def _message_json(self, m: FakeMessage) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id, "ts": m.ts}
        data.update({"text": m.text, "blocks": m.blocks})
        if m.thread_ts:
            data["thread_ts"] = m.thread_ts
        return data

    async def _m_chat_postMessage(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        channel = str(args.get("channel", ""))
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if not args.get("text") and not args.get("blocks"):
            return {"ok": False, "error": "no_text"}
        ts = self._next_ts()
        message = FakeMessage(
            channel=channel,
            ts=ts,
            thread_ts=args.get("thread_ts") or None,
            text=str(args.get("text", "")),
            blocks=list(args.get("blocks") or []),
        )
        self.messages[ts] = message
        self._changed(message, "chat.postMessage")
        return {"ok": True, "channel": channel, "ts": ts, "message": self._message_json(message)}

    async def _m_chat_update(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        message = self.messages.get(str(args.get("ts", "")))
        if message is None or message.channel != args.get("channel"):
            return {"ok": False, "error": "message_not_found"}
        if "text" in args:
            message.text = str(args["text"])
        if "blocks" in args:
            message.blocks = list(args["blocks"] or [])
        message.edits += 1
        self._changed(message, "chat.update")
        return {"ok": True, "channel": message.channel, "ts": message.ts, "text": message.text}

    async def _m_chat_postEphemeral(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        self.ephemerals.append(
            Ephemeral(
                channel=str(args.get("channel", "")),
                user=str(args.get("user", "")),
                text=str(args.get("text", "")),
                thread_ts=args.get("thread_ts") or None,
                blocks=list(args.get("blocks") or []),
            )
        )
        return {"ok": True, "message_ts": self._next_ts()}

    async def _m_chat_startStream(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        if not self.streaming:
            return {"ok": False, "error": "unknown_method"}
        if not args.get("thread_ts"):
            return {"ok": False, "error": "invalid_arguments"}
        ts = self._next_ts()
        self.messages[ts] = FakeMessage(
            channel=str(args.get("channel", "")),
            ts=ts,
            thread_ts=str(args["thread_ts"]),
            text=str(args.get("markdown_text", "")),
            streamed=True,
            stream_open=True,
        )
        self._changed(self.messages[ts], "chat.startStream")
        return {"ok": True, "channel": args.get("channel"), "ts": ts}

    def _open_stream(self, args: dict[str, Any]) -> FakeMessage | None:
        message = self.messages.get(str(args.get("ts", "")))
        if message is None or not message.streamed or message.channel != args.get("channel"):
            return None
        return message

    async def _m_chat_appendStream(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        if not self.streaming:
            return {"ok": False, "error": "unknown_method"}
        message = self._open_stream(args)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if not message.stream_open:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        text = str(args.get("markdown_text", ""))
        if len(text) > 12_000:
            return {"ok": False, "error": "msg_too_long"}
        message.text += text
        message.appends += 1
        self._changed(message, "chat.appendStream")
        return {"ok": True, "channel": message.channel, "ts": message.ts}

    async def _m_chat_stopStream(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        if not self.streaming:
            return {"ok": False, "error": "unknown_method"}
        message = self._open_stream(args)
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        if not message.stream_open:
            return {"ok": False, "error": "message_not_in_streaming_state"}
        message.text += str(args.get("markdown_text", ""))
        message.blocks = list(args.get("blocks") or [])
        message.stream_open = False
        self._changed(message, "chat.stopStream")
        return {"ok": True, "channel": message.channel, "ts": message.ts, "message": self._message_json(message)}

    async def _m_users_info(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        user_id = str(args.get("user", ""))
        if not user_id:
            return {"ok": False, "error": "user_not_found"}
        info = {"id": user_id, "team_id": self.team_id, "name": user_id.lower(), "is_admin": False}
        info.update(self.users.get(user_id, {}))
        return {"ok": True, "user": info}

    async def _m_conversations_replies(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        ts = str(args.get("ts", ""))
        found = [
            self._message_json(m)
            for m in self.messages.values()
            if m.channel == args.get("channel") and (m.thread_ts == ts or m.ts == ts)
        ]
        return {"ok": True, "messages": found, "has_more": False}

    async def _m_apps_connections_open(self, args: dict[str, Any], token: str) -> dict[str, Any]:
        if not token.startswith("xapp-"):
            return {"ok": False, "error": "not_allowed_token_type"}
        return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/link?ticket={uuid.uuid4().hex}"}

    # --- response_url ------------------------------------------------------------------------

    async def _respond(self, request: web.Request) -> web.Response:
        if self.response_url_status != 200:
            self.calls.append(ApiCall("response_url", {"status": self.response_url_status}, None))
            await self._notify()
            return web.Response(status=self.response_url_status, text="expired_url")
        body = await request.json()
        body["_key"] = request.match_info["key"]
        self.responses.append(body)
        await self._notify()
        return web.Response(text="ok")

    # --- Socket Mode -------------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        # Pings and closes are answered here, not by aiohttp, so that a silenced socket can ignore them.
        ws = web.WebSocketResponse(autoping=False, autoclose=False)
        await ws.prepare(request)
        self._sockets.append(ws)
        self.sockets_opened += 1
        await ws.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {"host": "fake-slack", "approximate_connection_time": 3600},
                "connection_info": {"app_id": "A1"},
            }
        )
        await self._notify()
        try:
            while True:
                frame = await ws.receive()
                if frame.type == WSMsgType.TEXT:
                    data = json.loads(frame.data)
                    if "envelope_id" in data:
                        self.acks[str(data["envelope_id"])] = data
                        await self._notify()
                elif frame.type == WSMsgType.PING:
                    if ws not in self._silent:
                        await ws.pong(frame.data)
                        self.pongs += 1
                        await self._notify()
                elif frame.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR):
                    break
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
            if ws not in self._silent and not ws.closed:
                await ws.close()
            await self._notify()
        return ws

    def go_silent(self) -> None:
        """The open Socket Mode connections go silent without closing: no pongs, no close handshake, and
        :meth:`send_envelope` never picks them again, as when Slack's side of a connection dies quietly.
        Connections opened afterwards behave normally."""
        self._silent.update(self._sockets)
        self._sockets.clear()

    @property
    def connections(self) -> int:
        return len(self._sockets)

    async def send_envelope(self, kind: str, payload: dict[str, Any], *, retry_attempt: int = 0) -> str:
        """Send one envelope (``events_api``, ``slash_commands`` or ``interactive``) on the newest socket."""
        if not self._sockets:
            raise RuntimeError("no Socket Mode connection")
        envelope_id = uuid.uuid4().hex
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": kind != "events_api",
            "retry_attempt": retry_attempt,
            "retry_reason": "timeout" if retry_attempt else "",
        }
        await self._sockets[-1].send_json(envelope)
        return envelope_id

    async def wait_ack(self, envelope_id: str, timeout: float = 10.0) -> dict[str, Any]:
        await self.wait_for(lambda: envelope_id in self.acks, timeout)
        return self.acks[envelope_id]
