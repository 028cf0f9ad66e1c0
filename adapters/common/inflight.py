"""Requests being worked on: one tracker per adapter, so shutdown can finish them.

Every request's work runs in a task the tracker knows: one it spawns (Slack: the listener acks
and returns), or the task the platform library already runs the handler in (Discord: discord.py
runs each event handler in its own task; see :meth:`InFlight.tracking`).

:meth:`InFlight.guard` is the task's error boundary: the one place where anything a request's
work raises is caught, logged once with the request's reference, and counted as processed.
Telling the user happens closer to the work (``LiveMessage.answer``), where it is known what was
shown; this boundary only makes sure nothing escapes unlogged and nothing is left running.

On shutdown, :meth:`InFlight.drain` waits up to a grace period for the work to finish, then
cancels what is left and waits until it has unwound, so connections and Redis close last.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Coroutine, Iterator
from typing import Any

log = logging.getLogger(__name__)


class InFlight:
    """Tasks answering requests on one platform (``name`` prefixes the log lines)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._tasks: set[asyncio.Task[Any]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.processed = 0  # requests whose work is finished (answered, ignored or failed)
        self._progress = asyncio.Condition()

    @property
    def in_flight(self) -> int:
        """Requests whose work has started and not finished."""
        return len(self._tasks)

    @property
    def tasks(self) -> frozenset[asyncio.Task[Any]]:
        return frozenset(self._tasks)

    def _add(self, task: asyncio.Task[Any]) -> None:
        self._tasks.add(task)
        self._idle.clear()

    def _discard(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._idle.set()

    def spawn(self, work: Coroutine[Any, Any, object], what: str, *, ref: str = "") -> asyncio.Task[None]:
        """Run ``work`` in a tracked task, inside :meth:`guard`."""
        task = asyncio.create_task(self.guard(work, what, ref=ref), name=f"{self.name}: {what}")
        self._add(task)
        task.add_done_callback(self._discard)
        return task

    @contextlib.contextmanager
    def tracking(self) -> Iterator[None]:
        """Track the current task (one the platform library created) while the block runs."""
        task = asyncio.current_task()
        if task is None:
            yield
            return
        self._add(task)
        try:
            yield
        finally:
            self._discard(task)

    async def guard(self, work: Awaitable[object], what: str, *, ref: str = "") -> None:
        """Await ``work``; anything it raises (but cancellation) is logged once, here."""
        try:
            await work
        except asyncio.CancelledError:
            raise
        except Exception:  # the request's boundary: log once, with what it was and its reference
            log.exception("%s: %s failed (ref %s)", self.name, what, ref or "-")
        self.processed += 1
        async with self._progress:
            self._progress.notify_all()

    async def wait_processed(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` requests in all have been fully handled (tests, health checks)."""
        async with self._progress:
            await asyncio.wait_for(self._progress.wait_for(lambda: self.processed >= count), timeout)

    async def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until nothing is in flight; ``TimeoutError`` after ``timeout`` seconds."""
        await asyncio.wait_for(self._idle.wait(), timeout)

    async def drain(self, grace: float) -> int:
        """Wait up to ``grace`` seconds for the work in flight, then cancel what is left and wait
        until it has unwound. Returns how many were cancelled (0: everything finished)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        me = asyncio.current_task()

        def unfinished() -> set[asyncio.Task[Any]]:
            return {t for t in self._tasks if t is not me and not t.done()}

        while (pending := unfinished()) and loop.time() < deadline:
            log.info("%s: finishing %d answer(s) before stopping", self.name, len(pending))
            await asyncio.wait(pending, timeout=deadline - loop.time())
        left = unfinished()
        if left:
            log.warning("%s: stopping with %d answer(s) unfinished; cancelling them", self.name, len(left))
        for task in left:
            task.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        return len(left)
