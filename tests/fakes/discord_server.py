"""A local fake of Discord's REST API (v10) and gateway, for driving a real ``discord.Client``.

aiohttp on 127.0.0.1, port 0 (``tests/fakes/harness.py``). REST answers with content type exactly
``application/json`` (what
discord.py's ``json_or_text`` requires) and rate-limit headers; a 429 carries ``Retry-After``, the
``X-RateLimit-*`` headers, ``Via`` (without it discord.py takes a 429 for a Cloudflare ban) and a
``retry_after`` body. The gateway speaks opcodes HELLO(10) → IDENTIFY(2) → READY → GUILD_CREATE,
HEARTBEAT(1)/ACK(11), RESUME(6) → replay of missed dispatches → RESUMED, with sequence numbers.

Tests assert on what the fake received (``requests``, ``messages``, ``callbacks``) and wait on
``wait_for(predicate)``, which wakes on every change — no sleeps. With ``record_times=True``
(off by default) every stored message also keeps ``times``: when each of its ``versions`` was
stored (``time.monotonic()``), one entry per version.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes import discord_payloads as p
from tests.fakes.discord_gateway import FakeGateway, Session
from tests.fakes.harness import Loopback

JSON = dict[str, Any]
API_PREFIX = "/api/v10"


@dataclass
class Recorded:
    method: str
    path: str
    body: Any
    query: dict[str, str]
    authorization: str | None


@dataclass
class StoredMessage:
    payload: JSON
    versions: list[JSON] = field(default_factory=list)
    webhook_token: str | None = None
    times: list[float] = field(default_factory=list)  # when each version was stored (``record_times``)

    @property
    def content(self) -> str:
        return str(self.payload.get("content") or "")

    @property
    def channel_id(self) -> str:
        return str(self.payload["channel_id"])


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    return web.Response(status=status, body=json.dumps(data).encode(), headers=all_headers)


def _ratelimit_headers(remaining: int = 4, reset_after: float = 0.001) -> dict[str, str]:
    return {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": str(remaining),
        "X-RateLimit-Reset-After": str(reset_after),
        "X-RateLimit-Bucket": "fakebucket",
    }


class FakeDiscord:
    """One Discord application with one guild, a bot user and a few members."""

    def __init__(
        self, *, token: str = "fake-discord-token", echo_own_messages: bool = True, record_times: bool = False
    ) -> None:
        self.token = token
        self.record_times = record_times
        self.echo_own_messages = echo_own_messages
        self.bare_callbacks = False  # True: answer callbacks 204 even when ?with_response asks for a body
        self.application_id = p.snowflake()
        self.bot = p.user(self.application_id, "bothbot", bot=True)
        self.guild_id = p.snowflake()
        self.owner = p.user(p.snowflake(), "owner")
        self.admin_role_id = p.snowflake()
        self.channels: dict[str, JSON] = {}
        self.general = self._add_channel("general")
        self.random = self._add_channel("random")
        self.roles = [
            p.role(self.guild_id, "@everyone", p.MEMBER_PERMISSIONS),
            p.role(self.admin_role_id, "bot-admins", p.MEMBER_PERMISSIONS),
        ]

        self.requests: list[Recorded] = []
        self.messages: dict[str, StoredMessage] = {}
        self.callbacks: list[tuple[str, JSON]] = []  # (interaction id, body)
        self.commands: list[JSON] = []
        self._interaction_tokens: dict[str, str] = {}  # token -> interaction id
        self._interaction_channels: dict[str, str] = {}  # token -> channel id
        self._rate_limits: list[tuple[str, re.Pattern[str], float, bool]] = []
        self.gateway = FakeGateway(token=token, ready=self._ready, after_ready=self._guilds, notify=self._notify)
        self.server = Loopback(self._routes, default_timeout=10.0, record=False)  # ``requests`` are ours
        self.base_url = ""
        self.gateway_url = ""
        self.port = 0

    # ------------------------------------------------------------------ lifecycle
    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self._rest)

    async def start(self) -> FakeDiscord:
        await self.server.start()
        self.port = self.server.port
        self.base_url = f"{self.server.base}{API_PREFIX}"
        self.gateway_url = f"ws://127.0.0.1:{self.port}/gateway"
        return self

    async def close(self) -> None:
        await self.gateway.drop(code=1001)
        await self.server.close()

    # ------------------------------------------------------------------ waiting
    async def _notify(self) -> None:
        await self.server.changed()

    async def wait_for(self, predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
        """Wait until ``predicate()`` is truthy (re-checked on every change); return its value."""
        return await self.server.wait_for(predicate, timeout)

    # ------------------------------------------------------------------ test helpers
    def add_channel(self, name: str) -> JSON:
        """A channel created after start-up: the client's cache does not know it."""
        return self._add_channel(name)

    def _add_channel(self, name: str) -> JSON:
        channel = p.text_channel(p.snowflake(), self.guild_id, name)
        self.channels[channel["id"]] = channel
        return channel

    def new_user(self, name: str) -> JSON:
        return p.user(p.snowflake(), name)

    def rate_limit_next(self, method: str, path_pattern: str, retry_after: float = 0.05, *, via: bool = True) -> None:
        """The next request matching ``method`` and the regex ``path_pattern`` gets a 429.

        ``via=False`` leaves out the ``Via`` header, as a Discord-compatible server might: discord.py
        then raises instead of retrying, and the adapter must honour the 429 itself.
        """
        self._rate_limits.append((method.upper(), re.compile(path_pattern), retry_after, via))

    def bot_messages(self, channel_id: str | None = None) -> list[StoredMessage]:
        return [
            m
            for m in self.messages.values()
            if m.payload["author"]["id"] == self.application_id and (channel_id is None or m.channel_id == channel_id)
        ]

    def answers(self, channel_id: str) -> list[StoredMessage]:
        """The bot's finished answers in a channel: the messages carrying 👍/👎 buttons."""
        return [m for m in self.bot_messages(channel_id) if m.payload["components"]]

    def requests_to(self, method: str, pattern: str) -> list[Recorded]:
        rx = re.compile(pattern)
        return [r for r in self.requests if r.method == method and rx.fullmatch(r.path)]

    async def dispatch(self, event: str, data: JSON) -> None:
        """Send a DISPATCH to every gateway session (kept for a RESUME while disconnected)."""
        await self.gateway.dispatch(event, data)

    async def send_message(
        self,
        author: JSON,
        content: str,
        *,
        channel_id: str | None = None,
        mention_bot: bool = False,
        dm: bool = False,
        reference_id: str | None = None,
        content_visible: bool = True,
        roles: list[str] | None = None,
    ) -> JSON:
        """A user posts a message; the gateway delivers MESSAGE_CREATE.

        ``content_visible=False`` imitates a bot without the message-content intent: Discord
        then sends an empty content for messages that neither mention the bot nor are DMs.
        """
        if mention_bot:
            content = f"<@{self.application_id}> {content}"
        if dm:
            channel_id = channel_id or f"{author['id']}0"
            guild_id = None
        else:
            channel_id = channel_id or self.general["id"]
            guild_id = self.guild_id
        reference = None
        if reference_id is not None:
            reference = {"message_id": reference_id, "channel_id": channel_id, "type": 0}
            if guild_id:
                reference["guild_id"] = guild_id
        payload = p.message(
            message_id=p.snowflake(),
            channel_id=channel_id,
            author=author,
            content=content if content_visible or mention_bot or dm else "",
            guild_id=guild_id,
            mentions=[self.bot] if mention_bot else [],
            reference=reference,
            member_payload=p.member(author, roles=roles) if guild_id else None,
        )
        self.messages[payload["id"]] = self._stamp(StoredMessage(payload, [payload]))
        await self.dispatch("MESSAGE_CREATE", payload)
        return payload

    def member_payload(self, author: JSON, *, admin: bool = False, roles: list[str] | None = None) -> JSON:
        permissions = p.MEMBER_PERMISSIONS | (p.MANAGE_GUILD if admin else 0)
        return p.member(author, roles=roles, permissions=permissions)

    async def send_interaction(
        self,
        *,
        kind: int,
        data: JSON,
        author: JSON,
        channel_id: str | None = None,
        admin: bool = False,
        roles: list[str] | None = None,
        message_payload: JSON | None = None,
        dm: bool = False,
    ) -> JSON:
        channel = (
            {"id": f"{author['id']}0", "type": 1, "recipients": [author]}
            if dm
            else self.channels.get(channel_id or self.general["id"])
            or {"id": channel_id, "type": 0, "guild_id": self.guild_id, "name": "x"}
        )
        payload = p.interaction(
            interaction_id=p.snowflake(),
            application_id=self.application_id,
            token="itok-" + secrets.token_hex(8),
            kind=kind,
            data=data,
            channel=channel,
            guild_id=None if dm else self.guild_id,
            member_payload=None if dm else self.member_payload(author, admin=admin, roles=roles),
            user_payload=author if dm else None,
            message_payload=message_payload,
        )
        self._interaction_tokens[payload["token"]] = payload["id"]
        self._interaction_channels[payload["token"]] = channel["id"]
        await self.dispatch("INTERACTION_CREATE", payload)
        return payload

    async def slash(
        self, author: JSON, sub: str, value: str | None = None, *, option: str = "profile", **kwargs: Any
    ) -> JSON:
        """``/bothbot <sub> [option:value]`` as Discord sends it (a subcommand inside a group)."""
        options = [p.slash_option(option, value)] if value is not None else []
        data = {
            "id": p.snowflake(),
            "name": "bothbot",
            "type": 1,
            "options": [p.slash_option(sub, sub=options)],
        }
        return await self.send_interaction(kind=2, data=data, author=author, **kwargs)

    async def click(self, author: JSON, message: StoredMessage, custom_id: str, **kwargs: Any) -> JSON:
        data = {"custom_id": custom_id, "component_type": 2}
        return await self.send_interaction(
            kind=3,
            data=data,
            author=author,
            channel_id=message.channel_id,
            message_payload=message.payload,
            **kwargs,
        )

    def callbacks_for(self, interaction: JSON) -> list[JSON]:
        return [body for iid, body in self.callbacks if iid == interaction["id"]]

    def followups_for(self, interaction: JSON) -> list[StoredMessage]:
        return [m for m in self.messages.values() if m.webhook_token == interaction["token"]]

    async def drop_gateway(self, code: int = 4000) -> None:
        """Close every live gateway connection as Discord does on a restart (the client resumes)."""
        await self.gateway.drop(code)

    @property
    def received_ops(self) -> list[JSON]:
        return self.gateway.received_ops

    @property
    def identify_count(self) -> int:
        return self.gateway.identify_count

    @property
    def resume_count(self) -> int:
        return self.gateway.resume_count

    def _ready(self, session: Session) -> JSON:
        ready: JSON = {
            "v": 10,
            "user": self.bot,
            "guilds": [{"id": self.guild_id, "unavailable": True}],
            "session_id": session.session_id,
            "resume_gateway_url": self.gateway_url,
            "application": {"id": self.application_id, "flags": 0},
            "private_channels": [],
            "relationships": [],
        }
        if session.shard is not None:
            ready["shard"] = session.shard
        return ready

    def _guilds(self, session: Session) -> list[tuple[str, JSON]]:
        guild = p.guild(self.guild_id, "Acme", list(self.channels.values()), self.roles, self.owner["id"])
        return [("GUILD_CREATE", guild)]

    # ------------------------------------------------------------------ REST
    async def _rest(self, request: web.Request) -> web.Response:
        path = "/" + request.match_info["tail"]
        body: Any = None
        if request.can_read_body:
            raw = await request.read()
            if request.content_type == "application/json" and raw:
                body = json.loads(raw)
            elif request.content_type.startswith("multipart/"):
                body = await self._multipart_json(request, raw)
        self.requests.append(
            Recorded(request.method, path, body, dict(request.query), request.headers.get("Authorization"))
        )
        try:
            return await self._route(request.method, path, body)
        finally:
            await self._notify()

    @staticmethod
    async def _multipart_json(request: web.Request, raw: bytes) -> Any:
        boundary = request.content_type and request.headers["Content-Type"].split("boundary=")[-1]
        for part in raw.split(b"--" + boundary.encode()):
            if b'name="payload_json"' in part:
                return json.loads(part.split(b"\r\n\r\n", 1)[1].rsplit(b"\r\n", 1)[0])
        return None

    async def _route(self, method: str, path: str, body: Any) -> web.Response:
        for i, (m, rx, retry_after, via) in enumerate(self._rate_limits):
            if m == method and rx.fullmatch(path):
                del self._rate_limits[i]
                headers = {
                    **_ratelimit_headers(remaining=0, reset_after=retry_after),
                    "Retry-After": str(max(1, round(retry_after))),
                    "X-RateLimit-Scope": "user",
                    **({"Via": "1.1 google"} if via else {}),
                }
                data = {"message": "You are being rate limited.", "retry_after": retry_after, "global": False}
                return _json(data, 429, headers)

        webhook = re.fullmatch(r"/(?:webhooks/\d+|interactions/\d+)/([^/]+)(/.*)?", path)
        token_ok = webhook is not None and webhook.group(1) in self._interaction_tokens
        auth_ok = self.requests[-1].authorization == f"Bot {self.token}"
        if not (auth_ok or token_ok):
            return _json({"message": "401: Unauthorized", "code": 0}, 401)

        routes: list[tuple[str, str, Callable[..., Any]]] = [
            ("GET", r"/gateway", self._get_gateway),
            ("GET", r"/gateway/bot", self._get_gateway_bot),
            ("GET", r"/users/@me", lambda: self.bot),
            ("GET", r"/oauth2/applications/@me", self._application),
            ("PUT", r"/applications/(\d+)/commands", self._put_commands),
            ("PUT", r"/applications/(\d+)/guilds/(\d+)/commands", self._put_guild_commands),
            ("POST", r"/channels/(\d+)/messages", self._create_message),
            ("PATCH", r"/channels/(\d+)/messages/(\d+)", self._edit_message),
            ("POST", r"/channels/(\d+)/messages/(\d+)/threads", self._create_thread),
            ("POST", r"/channels/(\d+)/typing", lambda _c: None),
            ("POST", r"/interactions/(\d+)/([^/]+)/callback", self._callback),
            ("POST", r"/webhooks/(\d+)/([^/]+)", self._followup),
            ("PATCH", r"/webhooks/(\d+)/([^/]+)/messages/([^/]+)", self._edit_webhook_message),
            ("GET", r"/webhooks/(\d+)/([^/]+)/messages/([^/]+)", self._get_webhook_message),
        ]
        for m, pattern, handler in routes:
            match = re.fullmatch(pattern, path)
            if m == method and match:
                result = handler(*match.groups(), body) if body is not None else handler(*match.groups())
                if asyncio.iscoroutine(result):
                    result = await result
                if isinstance(result, web.Response):
                    return result
                if result is None:
                    return web.Response(status=204, headers=_ratelimit_headers())
                return _json(result, headers=_ratelimit_headers())
        return _json({"message": "404: Not Found", "code": 0}, 404)

    def _get_gateway(self) -> JSON:
        return {"url": self.gateway_url}

    def _get_gateway_bot(self) -> JSON:
        limit = {"total": 1000, "remaining": 999, "reset_after": 0, "max_concurrency": 1}
        return {"url": self.gateway_url, "shards": 1, "session_start_limit": limit}

    def _application(self) -> JSON:
        return {
            "id": self.application_id,
            "name": "bothbot",
            "icon": None,
            "description": "",
            "rpc_origins": [],
            "bot_public": True,
            "bot_require_code_grant": False,
            "owner": self.owner,
            "summary": "",
            "verify_key": "0" * 64,
            "team": None,
            "flags": 0,
            "interactions_endpoint_url": None,
        }

    def _put_commands(self, app_id: str, body: Any = None) -> list[JSON]:
        self.commands = [dict(c, id=p.snowflake(), application_id=app_id, version="1") for c in body or []]
        return self.commands

    def _put_guild_commands(self, app_id: str, guild_id: str, body: Any = None) -> list[JSON]:
        return [dict(c, id=p.snowflake(), application_id=app_id, guild_id=guild_id, version="1") for c in body or []]

    def _message_from_body(self, channel_id: str, body: JSON, message_id: str | None = None) -> JSON:
        reference = body.get("message_reference")
        guild_id = self.guild_id if channel_id in self.channels or self._is_thread(channel_id) else None
        return p.message(
            message_id=message_id or p.snowflake(),
            channel_id=channel_id,
            author=self.bot,
            content=body.get("content") or "",
            guild_id=guild_id,
            reference=(
                {k: str(v) if k.endswith("_id") else v for k, v in reference.items()} | {"channel_id": channel_id}
                if reference
                else None
            ),
            components=body.get("components") or [],
            embeds=body.get("embeds") or [],
        )

    def _stamp(self, stored: StoredMessage) -> StoredMessage:
        """With ``record_times``: note when its latest version was stored."""
        if self.record_times:
            stored.times.append(time.monotonic())
        return stored

    def _is_thread(self, channel_id: str) -> bool:
        return self.channels.get(channel_id, {}).get("type") == 11

    async def _create_message(self, channel_id: str, body: Any = None) -> Any:
        body = body or {}
        if not (body.get("content") or body.get("embeds") or body.get("components")):
            return _json({"message": "Cannot send an empty message", "code": 50006}, 400)
        if len(body.get("content") or "") > 2000:
            error = {"message": "Invalid Form Body", "code": 50035}
            return _json(error, 400)
        payload = self._message_from_body(channel_id, body)
        self.messages[payload["id"]] = self._stamp(StoredMessage(payload, [payload]))
        if self.echo_own_messages:
            await self.dispatch("MESSAGE_CREATE", payload)
        return payload

    def _edit_message(self, channel_id: str, message_id: str, body: Any = None) -> Any:
        stored = self.messages.get(message_id)
        if stored is None or stored.channel_id != channel_id:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        if len((body or {}).get("content") or "") > 2000:
            return _json({"message": "Invalid Form Body", "code": 50035}, 400)
        payload = dict(stored.payload)
        for key in ("content", "components", "embeds"):
            if body and key in body:
                payload[key] = body[key] if body[key] is not None else ([] if key != "content" else "")
        payload["edited_timestamp"] = p.now_iso()
        stored.payload = payload
        stored.versions.append(payload)
        self._stamp(stored)
        return payload

    async def _create_thread(self, channel_id: str, message_id: str, body: Any = None) -> Any:
        if message_id not in self.messages or channel_id not in self.channels:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        if any(c.get("id") == message_id for c in self.channels.values()):
            return _json({"message": "A thread has already been created for this message", "code": 160004}, 400)
        name = (body or {}).get("name") or "thread"
        thread = p.thread_channel(message_id, self.guild_id, channel_id, self.application_id, name)
        self.channels[message_id] = thread
        await self.dispatch("THREAD_CREATE", dict(thread, newly_created=True))
        return thread

    def _callback(self, interaction_id: str, token: str, body: Any = None) -> Any:
        if self._interaction_tokens.get(token) != interaction_id:
            return _json({"message": "Unknown interaction", "code": 10062}, 404)
        if any(iid == interaction_id for iid, _ in self.callbacks):
            return _json({"message": "Interaction has already been acknowledged.", "code": 40060}, 400)
        body = body or {}
        self.callbacks.append((interaction_id, body))
        wants_body = self.requests[-1].query.get("with_response") in ("true", "1", "True")
        if not wants_body or self.bare_callbacks:
            return None
        kind = body.get("type")
        flags = (body.get("data") or {}).get("flags", 0)
        response: JSON = {
            "interaction": {
                "id": interaction_id,
                "type": 2,
                "response_message_loading": kind == 5,
                "response_message_ephemeral": bool(flags & 64),
            }
        }
        if kind in (4, 7):  # a message was created (4) or updated (7): return it
            token_channel = self._interaction_channels[token]
            message = self._message_from_body(token_channel, body.get("data") or {})
            message["flags"] = flags
            self.messages[message["id"]] = self._stamp(StoredMessage(message, [message], webhook_token=token))
            response["interaction"]["response_message_id"] = message["id"]
            response["resource"] = {"type": kind, "message": message}
        elif kind == 5:
            response["resource"] = {"type": kind}
        return response

    def _followup(self, app_id: str, token: str, body: Any = None) -> Any:
        body = body or {}
        if token not in self._interaction_tokens:
            return _json({"message": "Unknown Webhook", "code": 10015}, 404)
        if not any(iid == self._interaction_tokens[token] for iid, _ in self.callbacks):
            return _json({"message": "Unknown Webhook", "code": 10015}, 404)
        if len(body.get("content") or "") > 2000:
            return _json({"message": "Invalid Form Body", "code": 50035}, 400)
        payload = self._message_from_body(self._interaction_channels[token], body)
        payload["webhook_id"] = app_id
        payload["flags"] = body.get("flags", 0)
        self.messages[payload["id"]] = self._stamp(StoredMessage(payload, [payload], webhook_token=token))
        return payload

    def _edit_webhook_message(self, app_id: str, token: str, message_id: str, body: Any = None) -> Any:
        if message_id == "@original":
            original = next((m for m in self.messages.values() if m.webhook_token == token), None)
            if original is None:
                payload = self._message_from_body(self._interaction_channels[token], body or {"content": ""})
                original = StoredMessage(payload, [], webhook_token=token)
                self.messages[payload["id"]] = original
            message_id = original.payload["id"]
        stored = self.messages.get(message_id)
        if stored is None or stored.webhook_token != token:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        return self._edit_message(stored.channel_id, message_id, body)

    def _get_webhook_message(self, app_id: str, token: str, message_id: str) -> Any:
        stored = next((m for m in self.messages.values() if m.webhook_token == token), None)
        if stored is None:
            return _json({"message": "Unknown Message", "code": 10008}, 404)
        return stored.payload
