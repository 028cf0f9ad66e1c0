"""The loopback server every fake is built on: an aiohttp app on 127.0.0.1, port 0.

A fake holds one :class:`Loopback` (``Loopback(self.add_routes)``), starts and closes it with
itself, takes its URLs from :attr:`Loopback.base`, and lets tests wait with
:meth:`Loopback.wait_for` — a condition re-checked after every change, with a deadline, never a
sleep. Every HTTP request is recorded (:attr:`Loopback.requests`: method, path, query, the body
when it is JSON or a form) before the fake's handler runs, and a change is signalled after it
answered; a fake signals other changes (a gateway frame, say) with :meth:`Loopback.changed`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar
from urllib.parse import parse_qsl

from aiohttp import web

T = TypeVar("T")

JSON, FORM = "application/json", "application/x-www-form-urlencoded"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str
    query: dict[str, str]
    body: Any = None  # parsed JSON, a form as a dict, the text, or None
    headers: dict[str, str] = field(default_factory=dict)


async def read_body(request: web.Request) -> Any:
    """A JSON body parsed, a form as a dict; None for anything else (left for the handler to stream)."""
    if not request.can_read_body or request.content_type not in (JSON, FORM):
        return None
    raw = await request.text()
    if not raw:
        return None
    if request.content_type == JSON:
        try:
            return json.loads(raw)
        except ValueError:
            return raw
    return dict(parse_qsl(raw, keep_blank_values=True))


class Loopback:
    """An aiohttp app serving ``routes`` on 127.0.0.1, port 0 (``await start()`` … ``await close()``)."""

    def __init__(
        self, routes: Callable[[web.Application], None], *, default_timeout: float = 15.0, record: bool = True
    ) -> None:
        self.add_routes = routes
        self.default_timeout = default_timeout
        self.record_requests = record
        self.port = 0
        self.requests: list[Recorded] = []
        self._changed = asyncio.Condition()
        self._runner: web.AppRunner | None = None

    # --- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> Self:
        app = web.Application(middlewares=[self._record], client_max_size=64 * 1024**2)
        self.add_routes(app)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None)
        assert sockets, "the fake is not listening"
        self.port = int(sockets[0].getsockname()[1])
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @property
    def base(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    # --- what tests use ----------------------------------------------------------------------------

    async def changed(self) -> None:
        """Wake every :meth:`wait_for`: something a test may be waiting on happened."""
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        """The first truthy value of ``predicate()``, re-checked after every change; TimeoutError after ``timeout``."""
        result: list[T] = []

        def check() -> bool:
            value = predicate()
            if value:
                result.append(value)
                return True
            return False

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(check), timeout or self.default_timeout)
        return result[-1]

    def requests_to(self, method: str, path_suffix: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and r.path.endswith(path_suffix)]

    # --- plumbing ------------------------------------------------------------------------------

    @web.middleware
    async def _record(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.record_requests and request.headers.get("Upgrade", "").lower() != "websocket":
            body = await read_body(request)
            self.requests.append(
                Recorded(request.method, request.path, dict(request.query), body, dict(request.headers))
            )
        try:
            return await handler(request)
        finally:
            await self.changed()
