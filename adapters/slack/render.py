"""Render the engine's reply stream in Slack.

Two ways to show an answer while it is written:

- **native streaming** (``chat.startStream`` / ``chat.appendStream`` / ``chat.stopStream``) where
  the workspace supports it: Markdown is appended as it arrives, at most about once per
  ``edit_interval``;
- **placeholder edits** elsewhere: a message is posted at once and edited with ``chat.update`` at
  most once per ``edit_interval`` (time since the last edit); the final edit is always sent.

Either way an answer longer than one message continues in a new message in the same thread, and
the last message carries the citations (a context block of links) and the 👍/👎 buttons.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.convert import FEEDBACK_DOWN, FEEDBACK_UP
from adapters.slack.mrkdwn import escape, split_all, split_head, to_mrkdwn
from bot.messages import Citation, FinalAnswer, ReplyEvent, Status, TextDelta

log = logging.getLogger(__name__)

SECTION_LIMIT = 3000
"""Characters of mrkdwn in one section block, so one message of the placeholder style."""
STREAM_LIMIT = 12_000
"""Characters of Markdown in one natively streamed message (Slack's ``markdown_text`` limit)."""
PLACEHOLDER = "…"
_UNSUPPORTED_STREAM_ERRORS = frozenset(
    {
        "unknown_method",
        "not_allowed_token_type",
        "feature_not_enabled",
        "method_not_supported_for_channel_type",
        "team_not_allowed",
        "not_supported",
        "method_deprecated",
        "404",  # an API server (or proxy) without the method
        "405",
        "StreamUnavailable",
    }
)


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a reply goes and whom it answers."""

    channel: str
    thread_ts: str | None
    team: str
    user: str


class StreamSupport:
    """Remembers, per workspace, whether native streaming works; starts by trying it."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._unsupported: set[str] = set()

    def usable(self, team: str) -> bool:
        return self.enabled and team not in self._unsupported

    def failed(self, team: str, error: str) -> None:
        if error in _UNSUPPORTED_STREAM_ERRORS:
            log.info("native streaming unavailable in %s (%s); using message edits", team, error)
            self._unsupported.add(team)


class StreamUnavailable(Exception):
    """Native streaming answered, but not in a way this adapter can use."""


def _error_code(exc: Exception) -> str:
    if isinstance(exc, SlackApiError):
        return str(exc.response.get("error") or exc.response.status_code)
    return type(exc).__name__


# --- blocks -------------------------------------------------------------------------------


def citation_line(c: Citation) -> str:
    title = c.title or c.source
    if c.heading and c.heading != title:
        title = f"{title} › {c.heading}"
    label = escape(title).replace("|", "¦")
    if c.url:
        return f"[{c.index}] <{escape(c.url)}|{label}>"
    source = f" ({escape(c.source)})" if c.source and c.source != title else ""
    return f"[{c.index}] {label}{source}"


def closing_blocks(final: FinalAnswer) -> list[dict[str, Any]]:
    """Citations (context block of links), notes, and 👍/👎 buttons bound to the trace id."""
    blocks: list[dict[str, Any]] = []
    if final.citations:
        lines = [citation_line(c) for c in final.citations]
        # A context block holds at most 10 elements; fold the rest into the last one.
        elements = [{"type": "mrkdwn", "text": line} for line in lines[:9]]
        if len(lines) > 9:
            elements.append({"type": "mrkdwn", "text": "  ".join(lines[9:])[:2900]})
        blocks.append({"type": "context", "block_id": "bothbot_sources", "elements": elements})
    if final.notes:
        note = " · ".join(escape(n) for n in final.notes)[:2900]
        blocks.append({"type": "context", "block_id": "bothbot_notes", "elements": [{"type": "mrkdwn", "text": note}]})
    if final.feedback and final.trace_id:
        blocks.append(
            {
                "type": "actions",
                "block_id": "bothbot_feedback",
                "elements": [
                    {
                        "type": "button",
                        "action_id": FEEDBACK_UP,
                        "text": {"type": "plain_text", "text": "👍", "emoji": True},
                        "value": final.trace_id,
                    },
                    {
                        "type": "button",
                        "action_id": FEEDBACK_DOWN,
                        "text": {"type": "plain_text", "text": "👎", "emoji": True},
                        "value": final.trace_id,
                    },
                ],
            }
        )
    return blocks


def section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn or PLACEHOLDER}}


def answer_blocks(markdown: str, final: FinalAnswer | None) -> tuple[str, list[dict[str, Any]]]:
    """One message's ``text`` (notification fallback) and blocks."""
    text = to_mrkdwn(markdown) or PLACEHOLDER
    if len(text) <= SECTION_LIMIT:
        blocks = [section(text)]
    else:  # only ephemeral and one-shot replies get here; streamed ones are split into messages
        blocks = [section(to_mrkdwn(part)) for part in split_all(markdown, SECTION_LIMIT, mrkdwn_size)][:45]
    if final is not None:
        blocks.extend(closing_blocks(final))
    return text, blocks


def mrkdwn_size(markdown: str) -> int:
    return len(to_mrkdwn(markdown))


# --- sinks --------------------------------------------------------------------------------


class _Sink(Protocol):
    @property
    def pending(self) -> bool:
        """Text arrived that the message does not show yet (held back by the throttle)."""
        ...

    async def start(self, status: str | None) -> None: ...
    async def status(self, text: str) -> None: ...
    async def append(self, delta: str) -> None: ...
    async def flush(self) -> None: ...
    async def finish(self, final: FinalAnswer | None) -> None: ...


class _Throttle:
    def __init__(self, interval: float, clock: Callable[[], float]) -> None:
        self.interval = interval
        self.clock = clock
        self.last = float("-inf")

    def due(self) -> bool:
        return self.clock() - self.last >= self.interval

    def mark(self) -> None:
        self.last = self.clock()

    def wait(self) -> float:
        """Seconds until the next edit is allowed (0 when it is due now)."""
        return max(0.0, self.last + self.interval - self.clock())


class EditSink:
    """A placeholder message edited with ``chat.update``; overflow continues in a new message."""

    def __init__(self, client: AsyncWebClient, target: ReplyTarget, throttle: _Throttle, limit: int) -> None:
        self.client = client
        self.target = target
        self.throttle = throttle
        self.limit = limit
        self.ts: str | None = None
        self.current = ""  # Markdown of the message being written
        self.shown: str | None = None  # mrkdwn text the current message shows
        self.posted: list[str] = []
        self._dirty = False

    @property
    def pending(self) -> bool:
        return self._dirty

    async def start(self, status: str | None) -> None:
        text = f"_{escape(status)}_" if status else PLACEHOLDER
        await self._post(text)

    async def _post(self, text: str, blocks: list[dict[str, Any]] | None = None) -> None:
        kwargs: dict[str, Any] = {"channel": self.target.channel, "text": text}
        if blocks is not None:
            kwargs["blocks"] = blocks
        if self.target.thread_ts:
            kwargs["thread_ts"] = self.target.thread_ts
        response = await self.client.chat_postMessage(**kwargs)
        ts = response.get("ts")
        self.ts = str(ts) if ts else None  # without a ts the message cannot be edited: post anew
        self.shown = text
        if self.ts:
            self.posted.append(self.ts)
        self.throttle.mark()

    async def _edit(self, markdown: str, final: FinalAnswer | None = None, *, force: bool = False) -> None:
        text, blocks = answer_blocks(markdown, final)
        if not force and text == self.shown:
            return
        if self.ts is None:
            if final is not None or force:
                await self._post(text, blocks)
            return
        await self.client.chat_update(channel=self.target.channel, ts=self.ts, text=text, blocks=blocks)
        self.shown = text
        self.throttle.mark()

    async def status(self, text: str) -> None:
        if not self.current and self.throttle.due():
            status = f"_{escape(text)}_"
            if status != self.shown and self.ts is not None:
                await self.client.chat_update(channel=self.target.channel, ts=self.ts, text=status)
                self.shown = status
                self.throttle.mark()

    async def append(self, delta: str) -> None:
        self.current += delta
        while mrkdwn_size(self.current) > self.limit:
            head, rest = split_head(self.current, self.limit, mrkdwn_size)
            await self._edit(head, force=True)
            self.current = rest
            text, blocks = answer_blocks(rest, None)
            await self._post(text, blocks)
        self._dirty = True
        if self.throttle.due():
            await self.flush()

    async def flush(self) -> None:
        self._dirty = False
        await self._edit(self.current)

    async def finish(self, final: FinalAnswer | None) -> None:
        self._dirty = False
        await self._edit(self.current.rstrip(), final, force=True)


class NativeStreamSink:
    """``chat.startStream`` → ``chat.appendStream``… → ``chat.stopStream`` (with the closing blocks)."""

    def __init__(self, client: AsyncWebClient, target: ReplyTarget, throttle: _Throttle, limit: int) -> None:
        self.client = client
        self.target = target
        self.throttle = throttle
        self.limit = limit
        self.ts: str | None = None
        self.streamed = 0  # Markdown characters in the current streamed message
        self.buffer = ""
        self.posted: list[str] = []

    @property
    def pending(self) -> bool:
        return bool(self.buffer)

    async def start(self, status: str | None) -> None:
        response = await self.client.chat_startStream(
            channel=self.target.channel,
            thread_ts=self.target.thread_ts or "",
            recipient_team_id=self.target.team,
            recipient_user_id=self.target.user,
        )
        ts = response.get("ts")
        if not ts:
            raise StreamUnavailable("chat.startStream returned no ts")
        self.ts = str(ts)
        self.streamed = 0
        self.posted.append(self.ts)
        self.throttle.mark()

    async def status(self, text: str) -> None:
        return None  # the streaming message shows its own progress until text arrives

    async def flush(self) -> None:
        await self._flush()

    async def _flush(self) -> None:
        if self.buffer and self.ts is not None:
            await self.client.chat_appendStream(channel=self.target.channel, ts=self.ts, markdown_text=self.buffer)
            self.streamed += len(self.buffer)
            self.buffer = ""
            self.throttle.mark()

    async def append(self, delta: str) -> None:
        self.buffer += delta
        while self.streamed + len(self.buffer) > self.limit:
            room = self.limit - self.streamed
            head, rest = split_head(self.buffer, room) if room > 200 else ("", self.buffer)
            self.buffer = head
            await self._flush()
            await self._stop(None)
            await self.start(None)
            self.buffer = rest
        if self.throttle.due():
            await self._flush()

    async def _stop(self, final: FinalAnswer | None) -> None:
        if self.ts is None:
            raise RuntimeError("NativeStreamSink.start() must run before stop")
        kwargs: dict[str, Any] = {"channel": self.target.channel, "ts": self.ts}
        blocks = closing_blocks(final) if final is not None else []
        if blocks:
            kwargs["blocks"] = blocks
        await self.client.chat_stopStream(**kwargs)

    async def finish(self, final: FinalAnswer | None) -> None:
        await self._flush()
        await self._stop(final)


# --- the renderer -------------------------------------------------------------------------


class SlackReplyRenderer:
    """Turns one reply stream into Slack messages in one channel/thread.

    Posts nothing when the stream yields nothing (a duplicate event). ``on_posted`` runs once,
    when the first message of the reply exists (the adapter uses it to remember the thread).
    """

    def __init__(
        self,
        client: AsyncWebClient,
        target: ReplyTarget,
        *,
        streams: StreamSupport,
        edit_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        on_posted: Callable[[], Awaitable[None]] | None = None,
        section_limit: int = SECTION_LIMIT,
        stream_limit: int = STREAM_LIMIT,
    ) -> None:
        self.client = client
        self.target = target
        self.streams = streams
        self.throttle = _Throttle(edit_interval, clock)
        self.on_posted = on_posted
        self.section_limit = section_limit
        self.stream_limit = stream_limit
        self.sink: _Sink | None = None
        self.text = ""
        self.mode: str | None = None

    @property
    def started(self) -> bool:
        return self.sink is not None

    async def _start(self, status: str | None) -> _Sink:
        sink: _Sink | None = None
        if self.target.thread_ts and self.streams.usable(self.target.team):
            native = NativeStreamSink(self.client, self.target, self.throttle, self.stream_limit)
            try:
                await native.start(status)
                sink, self.mode = native, "stream"
            except (SlackApiError, SlackClientError, StreamUnavailable) as exc:
                code = _error_code(exc)
                self.streams.failed(self.target.team, code)
                log.debug("chat.startStream failed (%s); falling back to chat.update", code)
        if sink is None:
            edit = EditSink(self.client, self.target, self.throttle, self.section_limit)
            await edit.start(status)
            sink, self.mode = edit, "edit"
        self.sink = sink
        if self.on_posted is not None:
            await self.on_posted()
        return sink

    async def _events(self, events: AsyncIterator[ReplyEvent]) -> AsyncIterator[ReplyEvent]:
        """The engine's events; while text is held back by the throttle and the next event is
        slow to come, the held-back text is shown as soon as the throttle allows."""
        iterator = aiter(events)
        upcoming: asyncio.Future[ReplyEvent] | None = None
        try:
            while True:
                if upcoming is None:
                    upcoming = asyncio.ensure_future(anext(iterator))
                sink = self.sink
                timeout = self.throttle.wait() if sink is not None and sink.pending else None
                done, _ = await asyncio.wait({upcoming}, timeout=timeout)
                if not done:
                    if sink is not None:
                        await sink.flush()
                    continue
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

    async def render(self, events: AsyncIterator[ReplyEvent]) -> FinalAnswer | None:
        final: FinalAnswer | None = None
        async for event in self._events(events):
            if final is not None:
                continue  # FinalAnswer is last; drain whatever follows so the engine finishes
            if isinstance(event, Status):
                if self.sink is None:
                    await self._start(event.text)
                else:
                    await self.sink.status(event.text)
            elif isinstance(event, TextDelta):
                if not event.text:
                    continue
                sink = self.sink or await self._start(None)
                self.text += event.text
                await sink.append(event.text)
            elif isinstance(event, FinalAnswer):
                final = event
        if final is None:
            if self.sink is not None:
                await self.sink.finish(None)
            return None
        if self.sink is None and final.ephemeral:
            await self.post_ephemeral(final)
            return final
        sink = self.sink or await self._start(None)
        if final.text.startswith(self.text):
            rest = final.text[len(self.text) :]
        else:  # the stream broke off (e.g. the model failed mid-answer): keep what was shown, add why
            rest = ("\n\n" if self.text else "") + final.text
        if rest:
            self.text += rest
            await sink.append(rest)
        await sink.finish(final)
        return final

    async def post_ephemeral(self, final: FinalAnswer) -> None:
        text, blocks = answer_blocks(final.text, final)
        kwargs: dict[str, Any] = {
            "channel": self.target.channel,
            "user": self.target.user,
            "text": text,
            "blocks": blocks,
        }
        if self.target.thread_ts:
            kwargs["thread_ts"] = self.target.thread_ts
        await self.client.chat_postEphemeral(**kwargs)
