"""A deliberately minimal Discord: only what a bare-bones bot needs, 404 for everything else.

Unlike ``discord_server.FakeDiscord`` (which imitates Discord closely), this one stands in for a
checker's server written by someone else: it implements

- REST (under ``/api/v10``): ``GET /gateway``, ``GET /gateway/bot``, ``GET /users/@me``,
  ``POST /channels/{id}/messages``, ``PATCH /channels/{id}/messages/{id}`` (can be turned off),
  ``POST /interactions/{id}/{token}/callback`` (answers 204, never a body),
  ``POST /webhooks/{app}/{token}`` and ``PATCH /webhooks/{app}/{token}/messages/{id}``, and, only
  when ``threads=True``, ``POST /channels/{id}/messages/{id}/threads``;
- the gateway (at ``/gateway``): HELLO → IDENTIFY → READY (no ``application`` object) →
  GUILD_CREATE whose channels carry only ``id``, ``name`` and ``type``; heartbeats are acked;
  a RESUME is refused (INVALID_SESSION).

Everything else — ``/oauth2/applications/@me``, command registration, deletes, typing — answers
404, as JSON ``{"message": "404: Not Found", "code": 0}`` or, with ``text_404=True``, as a plain
text body. JSON goes out as aiohttp's ``application/json; charset=utf-8``. No rate-limit headers,
no ``Via``. Bodies returned for created messages hold only ``id``, ``channel_id``, ``content`` and
``author`` unless ``full_bodies=True``. Interactions carry ``channel_id`` but no ``channel`` object,
no ``attachment_size_limit``, and members without ``flags``; permissions are strings.

Options: ``edits=False`` (PATCH answers 404), ``threads=True`` (threads can be started),
``known_channels_only=True`` (posts outside the announced channels — into a new thread, say — get
404), ``gateway_paths`` (which of ``/gateway``, ``/gateway/bot`` answer), ``echo=False`` (the bot's
own messages are not sent back as MESSAGE_CREATE).

aiohttp on 127.0.0.1, port 0. Tests wait on ``wait_for(predicate)``, woken on every change.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.harness import Loopback

JSON = dict[str, Any]
API = "/api/v10"
MANAGE_GUILD = 1 << 5
EVERYONE = (1 << 10) | (1 << 11) | (1 << 16)

_ids = itertools.count(1)


def snowflake() -> str:
    return str(1_400_000_000_000_000_000 + next(_ids))


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Posted:
    """A message the bot created, with every content it had (edits appended)."""

    id: str
    channel_id: str
    contents: list[str]
    via: str  # "channel" or "webhook:<token>"
    body: JSON = field(default_factory=dict)

    @property
    def content(self) -> str:
        return self.contents[-1]


@dataclass
class Call:
    method: str
    path: str
    status: int
    body: Any


class MinimalDiscord:
    def __init__(
        self,
        *,
        token: str = "minimal-token",
        threads: bool = False,
        edits: bool = True,
        text_404: bool = False,
        full_bodies: bool = False,
        echo: bool = True,
        gateway_paths: tuple[str, ...] = ("/gateway", "/gateway/bot"),
        known_channels_only: bool = False,
    ) -> None:
        self.token = token
        self.threads = threads
        self.edits = edits
        self.text_404 = text_404
        self.full_bodies = full_bodies
        self.echo = echo
        self.gateway_paths = gateway_paths
        self.known_channels_only = known_channels_only  # posts elsewhere (a new thread, say) get 404
        self.bot: JSON = {"id": snowflake(), "username": "bothbot", "discriminator": "0", "avatar": None, "bot": True}
        self.guild_id = snowflake()
        self.channel_ids = [snowflake(), snowflake()]
        self.calls: list[Call] = []
        self.posted: dict[str, Posted] = {}
        self.callbacks: dict[str, list[JSON]] = {}  # interaction id -> callback bodies
        self.identified = 0
        self.base_url = ""
        self.gateway_url = ""
        self._tokens: dict[str, str] = {}  # interaction token -> channel id
        self._sockets: list[web.WebSocketResponse] = []
        self._seq = 0
        self.server = Loopback(self._routes, record=False)  # ``calls`` are ours

    # ------------------------------------------------------------------ lifecycle
    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self._gateway)
        app.router.add_route("*", API + "/{tail:.*}", self._rest)

    async def __aenter__(self) -> MinimalDiscord:
        await self.server.start()
        self.base_url = f"{self.server.base}{API}"
        self.gateway_url = f"ws://127.0.0.1:{self.server.port}/gateway"
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in list(self._sockets):
            await ws.close()
        await self.server.close()

    async def _notify(self) -> None:
        await self.server.changed()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 15.0) -> Any:
        return await self.server.wait_for(predicate, timeout)

    # ------------------------------------------------------------------ what tests look at
    def answers_in(self, channel_id: str) -> list[Posted]:
        return [m for m in self.posted.values() if m.channel_id == channel_id and m.via == "channel"]

    def replies_to(self, question: JSON) -> list[Posted]:
        """Bot messages answering ``question``: replies to it, in the thread opened on it, or in its DM."""
        qid, dm = question["id"], question["channel_id"] not in self.channel_ids
        return [
            m
            for m in self.posted.values()
            if m.via == "channel"
            and (
                m.channel_id == qid
                or (m.body.get("message_reference") or {}).get("message_id") == qid
                or (dm and m.channel_id == question["channel_id"])
            )
        ]

    def followups(self, interaction: JSON) -> list[Posted]:
        return [m for m in self.posted.values() if m.via == f"webhook:{interaction['token']}"]

    def calls_to(self, method: str, pattern: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and re.fullmatch(pattern, c.path)]

    # ------------------------------------------------------------------ gateway
    async def dispatch(self, event: str, data: JSON) -> None:
        self._seq += 1
        frame = json.dumps({"op": 0, "t": event, "s": self._seq, "d": data})
        for ws in list(self._sockets):
            if not ws.closed:
                await ws.send_str(frame)

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"op": 10, "d": {"heartbeat_interval": 41250}, "s": None, "t": None})
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                if frame.get("op") == 1:
                    await ws.send_json({"op": 11})
                elif frame.get("op") == 2:
                    if frame["d"].get("token") != self.token:
                        await ws.close(code=4004)
                        break
                    self._sockets.append(ws)
                    self.identified += 1
                    await self._after_identify()
                    await self._notify()
                elif frame.get("op") == 6:
                    await ws.send_json({"op": 9, "d": False})
        finally:
            if ws in self._sockets:
                self._sockets.remove(ws)
        return ws

    async def _after_identify(self) -> None:
        ready = {
            "v": 10,
            "user": self.bot,
            "guilds": [{"id": self.guild_id, "unavailable": True}],
            "session_id": "minimal-session",
            "resume_gateway_url": self.gateway_url,
        }
        await self.dispatch("READY", ready)
        channels = [{"id": cid, "name": f"channel-{i}", "type": 0} for i, cid in enumerate(self.channel_ids)]
        guild = {"id": self.guild_id, "name": "Minimal", "channels": channels, "roles": [], "members": []}
        await self.dispatch("GUILD_CREATE", guild)

    # ------------------------------------------------------------------ events a test sends
    def user(self, name: str) -> JSON:
        return {"id": snowflake(), "username": name, "discriminator": "0", "avatar": None}

    async def message(
        self,
        author: JSON,
        text: str,
        *,
        channel_id: str | None = None,
        mention: bool = True,
        dm: bool = False,
        omit_guild_id: bool = False,
    ) -> JSON:
        data: JSON = {
            "id": snowflake(),
            "channel_id": channel_id or (f"{author['id']}9" if dm else self.channel_ids[0]),
            "author": author,
            "content": f"<@{self.bot['id']}> {text}" if mention else text,
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [self.bot] if mention else [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
        }
        if not dm and not omit_guild_id:  # omitted: a sloppy server channel message
            data["guild_id"] = self.guild_id
            data["member"] = {"roles": [], "joined_at": _now()}
        await self.dispatch("MESSAGE_CREATE", data)
        return data

    async def slash(
        self,
        author: JSON,
        data: JSON,
        *,
        channel_id: str | None = None,
        permissions: int | None = None,
    ) -> JSON:
        """An INTERACTION_CREATE (application command); ``permissions`` as Discord sends them (a string)."""
        channel = channel_id or self.channel_ids[0]
        token = "tok" + snowflake()
        payload: JSON = {
            "id": snowflake(),
            "application_id": self.bot["id"],
            "type": 2,
            "data": data,
            "guild_id": self.guild_id,
            "channel_id": channel,
            "member": {
                "user": author,
                "roles": [],
                "joined_at": _now(),
                "permissions": str(EVERYONE if permissions is None else permissions),
            },
            "token": token,
            "version": 1,
        }
        self._tokens[token] = channel
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    # ------------------------------------------------------------------ REST
    def _not_found(self) -> web.Response:
        if self.text_404:
            return web.Response(status=404, text="404 page not found")
        return web.json_response({"message": "404: Not Found", "code": 0}, status=404)

    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            body = json.loads(raw) if raw and request.content_type == "application/json" else None
        response = self._route(request, path, body)
        self.calls.append(Call(request.method, path, response.status, body))
        await self._notify()
        if response.status == 200 and self.echo and request.method == "POST" and "/channels/" in path:
            message = json.loads(response.body)  # type: ignore[arg-type]
            if "/threads" not in path:
                await self.dispatch("MESSAGE_CREATE", self._full(message))
        return response

    def _route(self, request: web.Request, path: str, body: Any) -> web.Response:
        webhook = re.fullmatch(r"/(?:webhooks/\d+|interactions/\d+)/([^/]+)(?:/.*)?", path)
        if webhook is None and request.headers.get("Authorization") != f"Bot {self.token}":
            return web.json_response({"message": "401: Unauthorized", "code": 0}, status=401)
        method = request.method
        if method == "GET" and path in self.gateway_paths:
            return web.json_response({"url": self.gateway_url, "shards": 1})
        if method == "GET" and path == "/users/@me":
            return web.json_response(self.bot)
        routes: list[tuple[str, str, bool, Callable[..., web.Response]]] = [
            ("POST", r"/channels/(\d+)/messages", True, lambda c: self._create(c, body or {}, via="channel")),
            ("PATCH", r"/channels/\d+/messages/(\d+)", self.edits, lambda m: self._edit(m, body or {})),
            ("POST", r"/channels/(\d+)/messages/(\d+)/threads", self.threads, lambda c, m: self._thread(c, m, body)),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", True, lambda i, t: self._callback(i, t, body)),
            ("POST", r"/webhooks/\d+/([^/]+)", True, lambda t: self._followup(t, body or {})),
            ("PATCH", r"/webhooks/\d+/([^/]+)/messages/(\d+)", self.edits, lambda t, m: self._edit(m, body or {})),
        ]
        for verb, pattern, enabled, handler in routes:
            if enabled and verb == method and (m := re.fullmatch(pattern, path)):
                return handler(*m.groups())
        return self._not_found()

    def _thread(self, channel_id: str, message_id: str, body: Any) -> web.Response:
        name = (body or {}).get("name", "")
        return web.json_response(
            {"id": message_id, "type": 11, "name": name, "parent_id": channel_id, "guild_id": self.guild_id}
        )

    def _callback(self, interaction_id: str, token: str, body: Any) -> web.Response:
        if token not in self._tokens:
            return self._not_found()
        self.callbacks.setdefault(interaction_id, []).append(body or {})
        return web.Response(status=204)

    def _followup(self, token: str, body: JSON) -> web.Response:
        if token not in self._tokens:
            return self._not_found()
        return self._create(self._tokens[token], body, via=f"webhook:{token}")

    def _create(self, channel_id: str, body: JSON, *, via: str) -> web.Response:
        if self.known_channels_only and via == "channel" and channel_id not in self.channel_ids:
            return self._not_found()
        content = str(body.get("content") or "")
        if not content or len(content) > 2000:
            return web.json_response({"message": "Invalid Form Body", "code": 50035}, status=400)
        message = Posted(snowflake(), channel_id, [content], via, dict(body))
        self.posted[message.id] = message
        data = {"id": message.id, "channel_id": channel_id, "content": content, "author": self.bot}
        return web.json_response(self._full(data) if self.full_bodies else data)

    def _edit(self, message_id: str, body: JSON) -> web.Response:
        message = self.posted.get(message_id)
        if message is None:
            return self._not_found()
        if "content" in body:
            message.contents.append(str(body["content"] or ""))
        message.body.update({k: v for k, v in body.items() if k != "content"})
        data = {"id": message.id, "channel_id": message.channel_id, "content": message.content, "author": self.bot}
        return web.json_response(self._full(data) if self.full_bodies else data)

    def _full(self, data: JSON) -> JSON:
        full = {
            "timestamp": _now(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": [],
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
        }
        return {**full, **data}
