"""The one serving lifecycle: ``bothbot slack``, ``bothbot discord`` and ``bothbot serve slack discord``.

check every platform's settings (a clear :class:`bot.settings.ConfigError` before anything is
opened) → start one runtime → serve each platform on it → on SIGTERM/SIGINT (or ``stop``, or one
platform ending) every platform stops taking events, finishes the answers in flight and closes →
close the runtime. A platform's error is raised after the others are shut down.

With the embedded knowledge base only one process can open the data directory, so several
platforms in one process is how Slack and Discord run side by side without a Qdrant server.

Ctrl-C: the first one stops gracefully, as SIGTERM does; a second one stops at once.

With ``BOTHBOT_HEALTH_PORT`` set, the process also serves ``/healthz``, ``/readyz`` and ``/metrics``
there (``bot.observability``), once for all its platforms: from the runtime's start until every
platform has drained, with ``/readyz`` answering 503 from the stop signal on.

"Stops taking events" is each platform's to do: Slack closes its HTTP listener or socket first
(Slack redelivers to another replica); Discord keeps its gateway session through the drain, since
an event Discord sent to this session reaches no other process, so one arriving then is still
answered within the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterator, Sequence

import adapters
from adapters.base import Platform
from bot import observability
from bot.listener import Listener
from bot.runtime import Runtime
from bot.settings import Settings

log = logging.getLogger(__name__)

SIGNALS = (signal.SIGTERM, signal.SIGINT)


def resolve(names: Sequence[str]) -> list[Platform]:
    """The platforms named (each once, in order); a ValueError naming the known ones otherwise."""
    unknown = sorted(set(names) - set(adapters.names()))
    if unknown or not names:
        raise ValueError(
            f"serve takes one or more of: {', '.join(adapters.names())} (got {', '.join(unknown) or 'none'})"
        )
    return [adapters.load(name) for name in dict.fromkeys(names)]


async def serve(settings: Settings, names: Sequence[str], *, stop: asyncio.Event | None = None) -> None:
    """Serve the registered platforms ``names`` on one runtime until a signal, ``stop``, or one of them ends."""
    await serve_platforms(settings, resolve(names), stop=stop)


async def serve_platforms(
    settings: Settings, platforms: Sequence[Platform], *, stop: asyncio.Event | None = None
) -> None:
    """The lifecycle itself, for platforms already loaded (see the module docstring)."""
    for platform in platforms:
        settings.platform(platform.settings_model)
        platform.check(settings)
    stop = stop or asyncio.Event()
    with _stop_on_signals(stop):
        runtime = await Runtime.start(settings, serve_ingest=True)
        tasks: list[asyncio.Task[None]] = []
        health: Listener | None = None
        try:
            for line in runtime.describe():
                log.info("%s", line)
            if settings.health_port is not None:
                readiness = observability.readiness_of(runtime, stopping=stop)
                health = await observability.start_health_server(readiness, settings.health_host, settings.health_port)
                log.info("health: /healthz, /readyz and /metrics on port %d", health.port)
            tasks = [
                asyncio.create_task(platform.serve(runtime, stop), name=f"bothbot-{platform.name}")
                for platform in platforms
            ]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            stop.set()  # one platform ended (a stop signal or a failure): stop the others too
            results = await asyncio.gather(*tasks, return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        finally:
            for task in tasks:  # only when we are cancelled ourselves (a second Ctrl-C): cut them off
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if health is not None:
                await health.aclose()
            await runtime.aclose()  # after every platform is done with it


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM/SIGINT set ``stop``; after the first SIGINT, Python's own handler is back, so a second
    Ctrl-C raises KeyboardInterrupt and stops at once (answers in flight are cut off)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        again = " (Ctrl-C again to stop at once)" if sig is signal.SIGINT else ""
        log.info("%s: finishing the answers in progress, then stopping%s", sig.name, again)
        stop.set()
        if sig is signal.SIGINT:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)

    for sig in SIGNALS:
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread, Windows
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(sig)
