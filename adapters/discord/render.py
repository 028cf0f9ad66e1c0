"""Render the engine's reply stream on Discord: one live message edited about once a second.

The shared live message (``adapters.common.live``) reads the stream, throttles and coalesces the
edits and always makes the final one; :class:`LiveReply` is Discord's side of it: the text as
messages of at most 2,000 characters (split by the shared splitter, so a piece never ends inside
a code block without closing it), edited in place, replaced when an edit fails. Sources go under
the answer as a compact line of links; 👍/👎 buttons go on the last message.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, Protocol, TypeVar

import aiohttp
import discord

from adapters.common.live import LiveMessage, Throttle
from adapters.common.splitter import split_all
from adapters.common.texts import STOPPED_UNEXPECTEDLY
from bot.messages import Citation, FinalAnswer, ReplyEvent

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000

SEND_ERRORS: tuple[type[Exception], ...] = (discord.DiscordException, LookupError, aiohttp.ClientError, TimeoutError)
"""What a refused or failed post, edit or delete raises (``LookupError``: a message whose id is unknown)."""

H = TypeVar("H")


class ReplySink(Protocol[H]):
    """Where a reply goes: a channel (or thread, or DM) or an interaction's follow-ups."""

    async def post(self, content: str, *, feedback: FinalAnswer | None = None) -> H: ...

    async def edit(self, handle: H, content: str, *, feedback: FinalAnswer | None = None) -> None: ...

    async def repost(self, handle: H, content: str, *, feedback: FinalAnswer | None = None) -> H:
        """Post ``content`` anew in place of ``handle``, which could not be edited (same reply target)."""
        ...

    async def delete(self, handle: H) -> None: ...


# ---------------------------------------------------------------------------------- formatting


def split_text(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split into pieces of at most ``limit`` characters (see ``adapters.common.splitter``)."""
    return split_all(text, limit)


def _escape_link_text(text: str) -> str:
    return re.sub(r"([\[\]\\*_~`|])", r"\\\1", text)


def format_citations(citations: tuple[Citation, ...], limit: int = MESSAGE_LIMIT) -> str:
    """``-# Sources: [1] [Title — heading](<url>) · [2] Title``: Discord's small-text line.

    Links are wrapped in ``<…>`` so Discord shows no preview cards. Long lists are cut to fit.
    """
    if not citations:
        return ""
    parts: list[str] = []
    for c in citations:
        label = " — ".join(x for x in (c.title or c.source, c.heading) if x)[:120]
        label = _escape_link_text(label)
        url = c.url if c.url and re.match(r"https?://", c.url) else None
        parts.append(f"[{c.index}] [{label}](<{url}>)" if url else f"[{c.index}] {label}")
    line = "-# Sources: " + " · ".join(parts)
    while len(line) > limit and parts:
        parts.pop()
        line = "-# Sources: " + " · ".join(parts) + " · …"
    return line


def final_pieces(final: FinalAnswer, limit: int = MESSAGE_LIMIT) -> list[str]:
    """The final messages of an answer: its text split to fit, then the sources line."""
    text = final.text if final.text.strip() else "(no answer)"
    pieces = split_text(text, limit)
    footer = format_citations(final.citations, limit)
    if footer:
        if len(pieces[-1]) + 2 + len(footer) <= limit:
            pieces[-1] = pieces[-1].rstrip() + "\n" + footer
        else:
            pieces.append(footer)
    return pieces


def status_text(status: str) -> str:
    return f"-# {status}" if status else "-# …"


# ---------------------------------------------------------------------------------- live reply


class LiveReply(Generic[H]):
    """Discord's live sink: the reply as messages through a :class:`ReplySink`.

    :meth:`run` shows a reply stream and returns the final answer (None when nothing came). A
    message whose edit fails is never edited again; the final answer replaces it.
    """

    def __init__(
        self,
        sink: ReplySink[H],
        *,
        interval: float = 1.0,
        limit: int = MESSAGE_LIMIT,
        clock: Callable[[], float] | None = None,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        self._sink = sink
        self._limit = limit
        self.throttle = Throttle(interval, clock or asyncio.get_running_loop().time)
        self.live = LiveMessage(self, self.throttle, sleep=sleep)
        self._text = ""
        self._status = ""
        self._handles: list[H] = []
        self._shown: list[str] = []
        self._stale: set[int] = set()  # messages whose edit failed: never edited again, replaced at the end
        self._dirty = False

    @property
    def handles(self) -> list[H]:
        return list(self._handles)

    async def run(self, events: AsyncIterator[ReplyEvent]) -> FinalAnswer | None:
        return await self.live.run(events)

    async def answer(self, events: AsyncIterator[ReplyEvent], *, ref: str) -> FinalAnswer | None:
        """:meth:`run` inside the answer's error boundary (see ``LiveMessage.answer``)."""
        return await self.live.answer(events, ref=ref, platform="discord")

    # --- LiveSink -----------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return self._dirty

    async def start(self, status: str | None) -> None:
        if status is not None:  # text alone is posted by the first flush
            self._status = status
            await self._sync(self._pieces())

    async def status(self, text: str) -> None:
        self._status = text
        if not self._text.strip():
            self._dirty = True

    async def append(self, delta: str) -> None:
        self._text += delta
        self._dirty = True

    async def flush(self) -> None:
        self._dirty = False
        try:
            await self._sync(self._pieces())
        except SEND_ERRORS:  # an intermediate edit is best effort: the final edit replaces what failed
            log.warning("could not update a streaming reply; the final answer will be sent anyway", exc_info=True)

    async def finish(self, final: FinalAnswer | None) -> None:
        if final is None:  # the stream ended without a final answer: show what came, truthfully
            final = FinalAnswer(text=f"{self._text}\n\n{STOPPED_UNEXPECTEDLY}", kind="error", trace_id="")
        await self._sync(final_pieces(final, self._limit), final if final.feedback else None, final=True)

    async def fail(self, note: str | None) -> None:
        """After an unexpected error: keep what was shown and add a short, true note."""
        if note is None:
            return
        shown = self._text.strip()
        text = f"{shown}\n\n{note}" if shown else note
        await self._sync(final_pieces(FinalAnswer(text=text, kind="error", trace_id=""), self._limit), final=True)

    # --- messages -----------------------------------------------------------------------------

    def _pieces(self) -> list[str]:
        if not self._text.strip():
            return [status_text(self._status)]
        return split_text(self._text, self._limit)

    async def _sync(self, pieces: list[str], feedback: FinalAnswer | None = None, *, final: bool = False) -> None:
        try:
            for index, piece in enumerate(pieces):
                last = index == len(pieces) - 1
                fb = feedback if last else None
                if index >= len(self._handles):
                    handle = await self._sink.post(piece, feedback=fb)
                    self._handles.append(handle)
                    self._shown.append(piece)
                    continue
                if self._shown[index] == piece and fb is None and index not in self._stale:
                    continue
                if index in self._stale and not final:
                    continue  # it could not be edited: the final answer replaces it
                if index not in self._stale:
                    try:
                        await self._sink.edit(self._handles[index], piece, feedback=fb)
                        self._shown[index] = piece
                        continue
                    except SEND_ERRORS:  # the message can't be edited: the answer must still arrive whole
                        self._stale.add(index)
                        if not final:
                            raise
                        log.warning("final edit failed; posting the answer as a new message", exc_info=True)
                await self._replace(index, piece, fb)
            if final:  # a final text shorter than what streamed: drop the messages it no longer needs
                while len(self._handles) > len(pieces):
                    self._stale.discard(len(self._handles) - 1)
                    self._shown.pop()
                    await self._delete(self._handles.pop(), "a message the final answer no longer needs")
        finally:
            self.throttle.mark()

    async def _replace(self, index: int, piece: str, feedback: FinalAnswer | None) -> None:
        """Post ``piece`` anew for a message that cannot be edited (gone, or the server cannot edit)."""
        old = self._handles[index]
        self._handles[index] = await self._sink.repost(old, piece, feedback=feedback)
        self._shown[index] = piece
        self._stale.discard(index)
        # the stale message (a status line, a partial answer) goes if the server lets it
        await self._delete(old, "a message that could not be edited")

    async def _delete(self, handle: H, what: str) -> None:
        try:
            await self._sink.delete(handle)
        except SEND_ERRORS as exc:  # tidying up only: the answer itself is complete
            log.info("could not delete %s: %s", what, exc)
