"""One live message: a reply stream shown while it is written, on any platform.

:class:`LiveMessage` reads the engine's events and drives a :class:`LiveSink`, the small part
each platform writes (Slack: native streaming or ``chat.update`` edits; Discord: message edits):

- the first event opens the reply (``start``; with the status when the first event is one);
- text is handed over as it arrives (``append``: the sink only keeps it) and shown at most once
  per throttle interval (``flush``: when a message is full, the sink finishes it and continues in
  a new one then, never in between), so deltas that arrive in between are coalesced into one edit;
- text held back by the throttle is shown as soon as the interval is over, even while the model
  pauses, without waiting for the next event;
- the final edit (``finish``, with the final answer or ``None`` when the stream broke off) is
  always made, whatever the throttle says;
- a stream that yields nothing (an event another replica answered) shows nothing.

Time comes from the :class:`Throttle`'s clock and the ``sleep`` given, so tests drive it
with a fake clock; nothing here reads the wall clock itself.

:meth:`LiveMessage.answer` is the answer's error boundary: the one place a failure while
answering is caught, logged once with its reference and trace id, and told to the user.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Protocol

from adapters.common.memory import STORE_DOWN_ERRORS
from adapters.common.texts import MEMORY_LOST, MEMORY_UNAVAILABLE, answer_failed, posting_failed
from bot.messages import FinalAnswer, ReplyEvent, Status, TextDelta

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[object]]


class Throttle:
    """At most one edit per ``interval`` seconds, measured from the previous edit on ``clock``."""

    def __init__(self, interval: float, clock: Clock = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self.last = float("-inf")

    def due(self) -> bool:
        return self.clock() - self.last >= self.interval

    def mark(self) -> None:
        """An edit was just made (sinks call this after each post or edit)."""
        self.last = self.clock()

    def wait(self) -> float:
        """Seconds until the next edit is allowed (0 when it is due now)."""
        return max(0.0, self.last + self.interval - self.clock())


class MessageSink(Protocol):
    """What a platform implements to show one reply as it streams.

    :class:`LiveMessage` calls ``start`` at most once, first; then ``status``, ``append`` and
    ``flush`` any number of times; then ``finish`` exactly once if it called ``start`` or a final
    answer came (``finish`` without ``start`` is a one-shot reply: the sink opens what it needs).
    The sink marks the shared :class:`Throttle` whenever it posts or edits.
    """

    @property
    def pending(self) -> bool:
        """Text (or a status) arrived that the message does not show yet."""
        ...

    async def start(self, status: str | None) -> None:
        """Open the reply: post a placeholder or the status, or nothing until there is text."""
        ...

    async def status(self, text: str) -> None:
        """Progress while no text is shown (a sink may ignore it)."""
        ...

    async def append(self, delta: str) -> None:
        """Keep ``delta`` (shown by the next ``flush`` or ``finish``; nothing is sent here)."""
        ...

    async def flush(self) -> None:
        """Show what is pending (the throttle allows an edit now); when a message is full, finish
        it and continue in a new one."""
        ...

    async def finish(self, final: FinalAnswer | None) -> None:
        """The final edit: the whole answer, its sources and feedback buttons; ``None`` when the
        stream ended without a final answer."""
        ...


class LiveSink(MessageSink, Protocol):
    """A :class:`MessageSink` that can also say that the answer failed."""

    async def fail(self, note: str | None) -> None:
        """After a failure: stop showing progress and, with a ``note``, tell the user."""
        ...


class LiveMessage:
    """Shows one reply stream through a :class:`LiveSink`."""

    def __init__(self, sink: LiveSink, throttle: Throttle, *, sleep: Sleep = asyncio.sleep) -> None:
        self.sink = sink
        self.throttle = throttle
        self._sleep = sleep
        self.started = False
        self.final: FinalAnswer | None = None
        self.trace_id = ""

    async def _start(self, status: str | None) -> None:
        await self.sink.start(status)
        self.started = True  # only once it worked: a reply that never opened has nothing shown

    async def _events(self, events: AsyncIterator[ReplyEvent]) -> AsyncIterator[ReplyEvent]:
        """The engine's events; while text is held back and the next event is slow to come, the
        held-back text is shown as soon as the throttle allows."""
        iterator = aiter(events)
        upcoming: asyncio.Future[ReplyEvent] | None = None
        try:
            while True:
                if upcoming is None:
                    upcoming = asyncio.ensure_future(anext(iterator))
                if self.started and self.sink.pending:
                    timer: asyncio.Future[object] = asyncio.ensure_future(self._sleep(self.throttle.wait()))
                    try:
                        await asyncio.wait((upcoming, timer), return_when=asyncio.FIRST_COMPLETED)
                    finally:
                        timer.cancel()
                    if not upcoming.done():
                        if self.throttle.due():
                            await self.sink.flush()
                        continue
                else:
                    await asyncio.wait({upcoming})
                try:
                    event = upcoming.result()
                except StopAsyncIteration:
                    return
                upcoming = None
                yield event
        finally:
            if upcoming is not None and not upcoming.done():
                upcoming.cancel()
                with contextlib.suppress(asyncio.CancelledError, StopAsyncIteration):
                    await upcoming

    async def run(self, events: AsyncIterator[ReplyEvent]) -> FinalAnswer | None:
        """Show ``events``; the final answer, or None when the stream had none."""
        final: FinalAnswer | None = None
        async for event in self._events(events):
            if final is not None:
                continue  # FinalAnswer is last; drain whatever follows so the engine finishes
            if isinstance(event, Status):
                if self.started:
                    await self.sink.status(event.text)
                else:
                    await self._start(event.text)
            elif isinstance(event, TextDelta):
                if not event.text:
                    continue
                if not self.started:
                    await self._start(None)
                await self.sink.append(event.text)
            elif isinstance(event, FinalAnswer):
                final = self.final = event
                self.trace_id = event.trace_id
                continue
            if self.sink.pending and self.throttle.due():
                await self.sink.flush()
        if final is None and not self.started:
            return None
        await self.sink.finish(final)
        return final

    async def answer(
        self,
        events: AsyncIterator[ReplyEvent],
        *,
        ref: str,
        platform: str,
        platform_errors: tuple[type[Exception], ...] = (),
        describe: Callable[[Exception], str] = str,
    ) -> FinalAnswer | None:
        """:meth:`run`, inside the answer's error boundary.

        ``platform_errors`` are the platform refusing a call (the answer could not be posted): a
        warning, and the user is told what the platform said when part of the answer is shown.
        The state store unreachable (``STORE_DOWN_ERRORS``) is an outage: one warning line, and the
        user is told the bot can't reach its memory. Anything else is a bug or an outage on our
        side: logged once with its trace, and the user is told so, with ``ref`` to quote.
        Cancellation (shutdown) passes through untouched.
        """
        note: str | None
        try:
            return await self.run(events)
        except platform_errors as exc:
            reason = describe(exc)
            trace = self.trace_id or "-"
            log.warning("%s: could not post the answer to %s (trace %s): %s", platform, ref, trace, reason)
            note = posting_failed(platform.capitalize(), reason) if self.started else None
        except STORE_DOWN_ERRORS as exc:  # an outage, not a bug: one line, and the user hears why
            log.warning("%s: cannot answer %s (trace %s): the state store is unreachable: %s",
                        platform, ref, self.trace_id or "-", exc)
            note = MEMORY_LOST if self.started else MEMORY_UNAVAILABLE
        except Exception:  # the answer boundary: log once, tell the user something true
            log.exception("%s: answering %s failed (trace %s)", platform, ref, self.trace_id or "-")
            note = answer_failed(ref)
        try:
            await self.sink.fail(note)
        except Exception:  # still the boundary: telling the user is best effort, the cause is logged above
            log.warning("%s: could not tell the user that %s failed", platform, ref, exc_info=True)
        return None
