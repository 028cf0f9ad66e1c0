"""A deliberately minimal Slack Web API on loopback, port 0: someone else's test server, not ours.

It implements only ``auth.test``, ``chat.postMessage`` and ``chat.update`` (plus the
``response_url``\\ s it hands out). Everything the bot may also try — ``chat.startStream``,
``chat.postEphemeral``, ``users.info`` … — is answered the way a stranger's server might:

- ``unknown="json"``: HTTP 200 ``{"ok": false, "error": "unknown_method"}`` (what Slack says);
- ``unknown="404"``: aiohttp's own ``404: Not Found`` in ``text/plain`` (a route that isn't there);
- ``unknown="html"``: HTTP 200 with an HTML page (a catch-all web server or proxy).

``auth="full"`` answers ``auth.test`` like Slack; ``auth="minimal"`` with just ``{"ok": true}``;
``auth="missing"`` treats it as one more unknown method. Everything received is recorded and
tests wait on conditions with a deadline, never on sleeps.
"""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl

from aiohttp import web

from tests.fakes.harness import Loopback

Unknown = Literal["json", "404", "html"]
Auth = Literal["full", "minimal", "missing"]


@dataclass
class Posted:
    """A message posted with ``chat.postMessage``; ``text``/``blocks`` follow ``chat.update``."""

    channel: str
    ts: str
    thread_ts: str | None
    text: str
    blocks: list[dict[str, Any]] = field(default_factory=list)
    edits: int = 0

    def shown(self) -> str:
        sections = [b["text"]["text"] for b in self.blocks if b.get("type") == "section" and "text" in b]
        return "\n".join(sections) if sections else self.text

    def buttons(self) -> list[dict[str, Any]]:
        return [e for b in self.blocks if b.get("type") == "actions" for e in b.get("elements", [])]


class MinimalSlack:
    """``async with MinimalSlack(unknown="404") as slack:`` — ``slack.api_url`` is ``SLACK_API_URL``."""

    IMPLEMENTED = ("auth.test", "chat.postMessage", "chat.update")

    def __init__(self, *, unknown: Unknown = "json", auth: Auth = "full", team_id: str = "T1") -> None:
        self.unknown = unknown
        self.auth = auth
        self.team_id = team_id
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.messages: dict[str, Posted] = {}
        self.responses: list[dict[str, Any]] = []  # posts to response_urls, with "_key"
        self._ts = itertools.count(1)
        self.server = Loopback(self._routes, default_timeout=20.0, record=False)  # ``calls`` are ours

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def base(self) -> str:
        return self.server.base

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/"

    def response_url(self, key: str | None = None) -> str:
        return f"{self.base}/hooks/{key or uuid.uuid4().hex}"

    def _routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/hooks/{key}", self._hook)

    async def __aenter__(self) -> MinimalSlack:
        await self.server.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.server.close()

    # --- what tests look at -------------------------------------------------------------------

    async def wait_for(self, predicate: Callable[[], object], timeout: float = 20.0) -> None:
        await self.server.wait_for(predicate, timeout)

    def in_channel(self, channel: str, thread_ts: str | None = None) -> list[Posted]:
        return [
            m
            for m in self.messages.values()
            if m.channel == channel and (thread_ts is None or m.thread_ts == thread_ts)
        ]

    def finished(self, channel: str, thread_ts: str | None = None) -> list[Posted]:
        """Answers whose final edit arrived (the 👍/👎 buttons are on it)."""
        return [m for m in self.in_channel(channel, thread_ts) if m.buttons()]

    def called(self, method: str) -> list[dict[str, Any]]:
        return [args for name, args in self.calls if name == method]

    # --- the server ---------------------------------------------------------------------------

    async def _notify(self) -> None:
        await self.server.changed()

    async def _api(self, request: web.Request) -> web.StreamResponse:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(parse_qsl(request.query_string))
        raw = await request.text()
        if raw:
            if request.content_type == "application/json":
                args.update(json.loads(raw))
            else:
                args.update(dict(parse_qsl(raw, keep_blank_values=True)))
        if isinstance(args.get("blocks"), str):
            args["blocks"] = json.loads(args["blocks"])
        self.calls.append((method, args))
        try:
            if not request.headers.get("Authorization", "").startswith("Bearer xoxb-"):
                return web.json_response({"ok": False, "error": "not_authed"})
            if method == "auth.test" and self.auth != "missing":
                if self.auth == "minimal":
                    return web.json_response({"ok": True})
                return web.json_response(
                    {"ok": True, "team_id": self.team_id, "user_id": "UBOT", "bot_id": "BBOT", "team": "Acme"}
                )
            if method == "chat.postMessage":
                return web.json_response(self._post(args))
            if method == "chat.update":
                return web.json_response(self._update(args))
            return self._unknown()
        finally:
            await self._notify()

    def _unknown(self) -> web.StreamResponse:
        if self.unknown == "404":
            raise web.HTTPNotFound()  # aiohttp's own text/plain "404: Not Found"
        if self.unknown == "html":
            return web.Response(text="<html><body><h1>It works!</h1></body></html>", content_type="text/html")
        return web.json_response({"ok": False, "error": "unknown_method"})

    def _post(self, args: dict[str, Any]) -> dict[str, Any]:
        channel = str(args.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        ts = f"1700000000.{next(self._ts):06d}"
        self.messages[ts] = Posted(
            channel=channel,
            ts=ts,
            thread_ts=str(args["thread_ts"]) if args.get("thread_ts") else None,
            text=str(args.get("text") or ""),
            blocks=list(args.get("blocks") or []),
        )
        return {"ok": True, "channel": channel, "ts": ts}

    def _update(self, args: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get(str(args.get("ts") or ""))
        if message is None or message.channel != args.get("channel"):
            return {"ok": False, "error": "message_not_found"}
        message.text = str(args.get("text") or message.text)
        if "blocks" in args:
            message.blocks = list(args["blocks"] or [])
        message.edits += 1
        return {"ok": True, "channel": message.channel, "ts": message.ts}

    async def _hook(self, request: web.Request) -> web.Response:
        body = await request.json()
        body["_key"] = request.match_info["key"]
        self.responses.append(body)
        await self._notify()
        return web.Response(text="ok")
