"""A private ``redis-server`` a test owns: on a free port, in a folder of its own, stopped and
started again at will (restarts, outages), always stopped at the end.

Started with ``--save "" --appendonly no``: nothing is written unless a test asks for it
(:func:`stop_redis_server` with ``save=True`` writes the RDB file a restart then loads).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from pathlib import Path

import redis.asyncio as aioredis

from tests.processes import free_port

READY_SECONDS = 30.0  # an upper bound for a broken machine; a healthy start takes milliseconds


async def start_redis_server(folder: Path, port: int) -> asyncio.subprocess.Process:
    """A private redis-server that keeps its data in ``folder`` (RDB), returned once it accepts connections."""
    proc = await asyncio.create_subprocess_exec(
        "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder), "--save", "",
        "--appendonly", "no", "--loglevel", "notice", stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(READY_SECONDS):
            while b"Ready to accept connections" not in (line := await proc.stdout.readline()):
                assert line, "redis-server exited before it was ready"
    except BaseException:
        await terminate_redis_server(proc)
        raise
    return proc


async def stop_redis_server(proc: asyncio.subprocess.Process, port: int, *, save: bool) -> None:
    """``SHUTDOWN SAVE`` (the data is kept for the next start in the same folder) or ``NOSAVE``."""
    client = aioredis.Redis(host="127.0.0.1", port=port)
    try:
        await client.shutdown(save=save, nosave=not save)  # redis-py expects the connection to close
    finally:
        await client.aclose()
    await proc.wait()


async def terminate_redis_server(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, as an operator or an orchestrator stops it, and wait for the exit (SIGKILL after 10 s)."""
    if proc.returncode is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


class PrivateRedis:
    """One private redis-server on a fixed port: :meth:`stop` it (SIGTERM) and :meth:`start` it
    again on the same port, as a Redis restart looks to its clients. Use as an async context
    manager: started on entry, stopped on exit whatever happened."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = free_port()
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def start(self) -> None:
        assert not self.running, "already running"
        self.proc = await start_redis_server(self.folder, self.port)

    async def stop(self) -> None:
        if self.proc is not None:
            await terminate_redis_server(self.proc)

    async def __aenter__(self) -> PrivateRedis:
        self.folder.mkdir(parents=True, exist_ok=True)
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
