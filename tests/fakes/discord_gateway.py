"""The gateway half of the Discord fake: one WebSocket endpoint speaking gateway v10 JSON.

HELLO(10) on connect; IDENTIFY(2) → READY + whatever ``on_identify`` returns (GUILD_CREATE);
HEARTBEAT(1) → HEARTBEAT_ACK(11); RESUME(6) with a known session → the dispatches it missed
since its last sequence number, then RESUMED; an unknown session → INVALID_SESSION(9).
Every session keeps its own sequence numbers and its sent frames, so a client that reconnects
gets exactly what it missed.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

JSON = dict[str, Any]

HELLO, HEARTBEAT, HEARTBEAT_ACK, IDENTIFY, RESUME, INVALID_SESSION = 10, 1, 11, 2, 6, 9


@dataclass
class Session:
    session_id: str
    shard: list[int] | None
    seq: int = 0
    sent: list[JSON] = field(default_factory=list)
    socket: web.WebSocketResponse | None = None


class FakeGateway:
    def __init__(
        self,
        *,
        token: str,
        ready: Callable[[Session], JSON],
        after_ready: Callable[[Session], list[tuple[str, JSON]]],
        notify: Callable[[], Awaitable[None]],
    ) -> None:
        self.token = token
        self.url = ""
        self.received_ops: list[JSON] = []  # frames from clients, heartbeats excluded
        self.identify_count = 0
        self.resume_count = 0
        self.sessions: dict[str, Session] = {}
        self._ready = ready
        self._after_ready = after_ready
        self._notify = notify

    @property
    def live(self) -> list[Session]:
        return [s for s in self.sessions.values() if s.socket is not None and not s.socket.closed]

    async def dispatch(self, event: str, data: JSON) -> None:
        """A DISPATCH to every session; sessions that are disconnected get it on RESUME."""
        for session in list(self.sessions.values()):
            await self.send(session, event, data)

    async def send(self, session: Session, event: str, data: JSON) -> None:
        session.seq += 1
        frame = {"op": 0, "t": event, "s": session.seq, "d": data}
        session.sent.append(frame)
        if session.socket is not None and not session.socket.closed:
            await session.socket.send_str(json.dumps(frame))

    async def drop(self, code: int = 4000) -> None:
        """Close every live connection, as Discord does when a gateway node restarts."""
        for session in self.live:
            assert session.socket is not None
            await session.socket.close(code=code, message=b"fake restart")

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": HELLO, "d": {"heartbeat_interval": 45_000}, "s": None, "t": None}))
        try:
            async for msg in ws:
                if msg.type is not WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                op = frame.get("op")
                if op == HEARTBEAT:
                    await ws.send_str(json.dumps({"op": HEARTBEAT_ACK, "d": None, "s": None, "t": None}))
                    continue
                self.received_ops.append(frame)
                if op == IDENTIFY:
                    await self._identify(ws, frame["d"])
                elif op == RESUME:
                    await self._resume(ws, frame["d"])
                await self._notify()
        finally:
            for session in self.sessions.values():
                if session.socket is ws:
                    session.socket = None
            await self._notify()
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: JSON) -> None:
        if data.get("token") != self.token:
            await ws.close(code=4004, message=b"Authentication failed.")
            return
        self.identify_count += 1
        session = Session(session_id=secrets.token_hex(16), shard=data.get("shard"), socket=ws)
        self.sessions[session.session_id] = session
        await self.send(session, "READY", self._ready(session))
        for event, payload in self._after_ready(session):
            await self.send(session, event, payload)

    async def _resume(self, ws: web.WebSocketResponse, data: JSON) -> None:
        session = self.sessions.get(str(data.get("session_id", "")))
        if session is None or data.get("token") != self.token:
            await ws.send_str(json.dumps({"op": INVALID_SESSION, "d": False, "s": None, "t": None}))
            return
        self.resume_count += 1
        session.socket = ws
        last = int(data.get("seq") or 0)
        for frame in session.sent:
            if frame["s"] > last:
                await ws.send_str(json.dumps(frame))
        await self.send(session, "RESUMED", {})
