"""Render the engine's reply stream on Discord: one live message edited about once a second.

The stream is read without waiting on Discord: a separate editor task pushes the latest text,
never sooner than ``interval`` after the previous edit (a slow or rate-limited edit never stalls
the model stream; intermediate states are coalesced). The final edit is always sent. Answers
longer than Discord's 2,000 characters continue in new messages, split at paragraph, line or
word boundaries and never inside a code block without closing and reopening it. Sources go under
the answer as a compact line of links; 👍/👎 buttons go on the last message.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Generic, Protocol, TypeVar

from bot.messages import Citation, FinalAnswer, ReplyEvent, Status, TextDelta

log = logging.getLogger(__name__)

MESSAGE_LIMIT = 2000
_FENCE = "```"
_SPLIT_SLACK = 8  # room kept for closing a code fence at a split

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


def _fence_state(text: str) -> str | None:
    """The info string of the code block left open at the end of ``text`` (``""`` for a bare one)."""
    open_lang: str | None = None
    for match in re.finditer(r"^```([^\n`]*)$|```", text, flags=re.MULTILINE):
        open_lang = (match.group(1) or "").strip() if open_lang is None else None
    return open_lang


def _cut_point(text: str, budget: int) -> int:
    """Where to split ``text`` (longer than ``budget``): the last good boundary in the window."""
    window = text[: budget + 1]
    floor = budget // 3
    for sep in ("\n\n", "\n", ". ", " "):
        at = window.rfind(sep, floor, budget)
        if at > 0:
            return at + len(sep) if sep != "\n\n" else at + 1
    return budget


def split_text(text: str, limit: int = MESSAGE_LIMIT) -> list[str]:
    """Split into pieces of at most ``limit`` characters.

    A piece is final once the text after it is longer than the window, so while an answer
    streams, earlier pieces never change: only the last one grows.
    """
    if limit <= _SPLIT_SLACK * 2:
        raise ValueError("limit too small")
    pieces: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = _cut_point(rest, limit - _SPLIT_SLACK)
        piece, rest = rest[:cut], rest[cut:]
        lang = _fence_state(piece)
        if lang is not None:
            piece = piece.rstrip("\n") + "\n" + _FENCE
            rest = f"{_FENCE}{lang}\n" + rest.lstrip("\n")
        pieces.append(piece.rstrip() or piece)
        rest = rest.lstrip(" \n") if lang is None else rest
    pieces.append(rest)
    return pieces


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
    """Shows one reply stream through a sink; returns the final answer (None when nothing came)."""

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
        self._interval = interval
        self._limit = limit
        self._clock = clock or asyncio.get_running_loop().time
        self._sleep = sleep
        self._text: list[str] = []
        self._status = ""
        self._handles: list[H] = []
        self._shown: list[str] = []
        self._stale: set[int] = set()  # messages whose edit failed: never edited again, replaced at the end
        self._dirty = asyncio.Event()
        self._lock = asyncio.Lock()
        self._last_edit = float("-inf")

    @property
    def handles(self) -> list[H]:
        return list(self._handles)

    def _pieces(self) -> list[str]:
        text = "".join(self._text)
        if not text.strip():
            return [status_text(self._status)]
        return split_text(text, self._limit)

    async def _sync(self, pieces: list[str], feedback: FinalAnswer | None = None, *, final: bool = False) -> None:
        async with self._lock:
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
                    except Exception:
                        self._stale.add(index)
                        if not final:
                            raise
                        log.warning("final edit failed; posting the answer as a new message", exc_info=True)
                await self._replace(index, piece, fb)
            if final:  # a final text shorter than what streamed: drop the messages it no longer needs
                while len(self._handles) > len(pieces):
                    self._stale.discard(len(self._handles) - 1)
                    self._shown.pop()
                    try:
                        await self._sink.delete(self._handles.pop())
                    except Exception as exc:  # the answer itself is complete above
                        log.info("could not delete a message the final answer no longer needs: %s", exc)
            self._last_edit = self._clock()

    async def _replace(self, index: int, piece: str, feedback: FinalAnswer | None) -> None:
        """Post ``piece`` anew for a message that cannot be edited (gone, or the server cannot edit)."""
        old = self._handles[index]
        self._handles[index] = await self._sink.repost(old, piece, feedback=feedback)
        self._shown[index] = piece
        self._stale.discard(index)
        try:  # the stale message (a status line, a partial answer) goes if the server lets it
            await self._sink.delete(old)
        except Exception as exc:
            log.info("could not delete a message that could not be edited: %s", exc)

    async def _editor(self) -> None:
        while True:
            await self._dirty.wait()
            wait = self._last_edit + self._interval - self._clock()
            if wait > 0:
                await self._sleep(wait)
            self._dirty.clear()
            try:
                await self._sync(self._pieces())
            except Exception:
                log.warning("could not update a streaming reply; the final answer will be sent anyway", exc_info=True)

    def _take(self, event: ReplyEvent) -> FinalAnswer | None:
        if isinstance(event, Status):
            self._status = event.text
        elif isinstance(event, TextDelta):
            self._text.append(event.text)
        else:
            return event
        return None

    async def run(self, events: AsyncIterator[ReplyEvent]) -> FinalAnswer | None:
        first = await anext(events, None)
        if first is None:
            return None
        final = self._take(first)
        if final is not None:  # a one-shot reply (commands, refusals): one message, no edits
            await self._sync(final_pieces(final, self._limit), final if final.feedback else None, final=True)
            return final
        await self._sync(self._pieces())
        editor = asyncio.create_task(self._editor(), name="discord-live-reply")
        try:
            async for event in events:
                final = self._take(event)
                if final is not None:
                    break
                self._dirty.set()
        finally:
            async with self._lock:  # let an edit in flight finish, then stop the editor
                editor.cancel()
            await asyncio.gather(editor, return_exceptions=True)
        if final is None:  # the stream ended without a final answer: show what came, truthfully
            final = FinalAnswer(
                text="".join(self._text) + "\n\n(The answer stopped unexpectedly.)", kind="error", trace_id=""
            )
        await self._sync(final_pieces(final, self._limit), final if final.feedback else None, final=True)
        return final

    async def fail(self, note: str) -> None:
        """After an unexpected error: keep what was shown and add a short, true note."""
        shown = "".join(self._text).strip()
        text = f"{shown}\n\n{note}" if shown else note
        await self._sync(final_pieces(FinalAnswer(text=text, kind="error", trace_id=""), self._limit), final=True)
