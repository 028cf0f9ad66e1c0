"""One way to serve an aiohttp app on a host and port: the Slack HTTP endpoint and the health server."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web


@dataclass
class Listener:
    """A running aiohttp app; ``port`` is the bound one (also when 0 asked for any free port)."""

    runner: web.AppRunner
    host: str
    port: int

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}"

    async def aclose(self) -> None:
        await self.runner.cleanup()


async def listen(app: web.Application, host: str, port: int, *, setting: str) -> Listener:
    """Serve ``app`` on ``host:port``; a port in use is an ``OSError`` naming ``setting`` as the fix."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise OSError(f"cannot listen on {host}:{port} ({exc.strerror}); set {setting} to a free port") from exc
    sockets = getattr(site._server, "sockets", None)
    bound = int(sockets[0].getsockname()[1]) if sockets else port
    return Listener(runner=runner, host=host, port=bound)
