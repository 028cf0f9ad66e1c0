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
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import SECTION_LIMIT, answer_blocks, closing_blocks
from adapters.slack.client import METHOD_MISSING, WEB_API_ERRORS, slack_error
from adapters.slack.sinks import (
    STREAM_LIMIT,
    EditSink,
    NativeStreamSink,
    ReplyTarget,
    Sink,
    StreamUnavailable,
    Throttle,
)
from bot.messages import FinalAnswer, ReplyEvent, Status, TextDelta

log = logging.getLogger(__name__)

_UNSUPPORTED_STREAM_ERRORS = METHOD_MISSING | {
    # METHOD_MISSING: unknown_method, or an API server (or proxy) without the method: HTTP 404 or
    # an answer that isn't Slack's JSON (an HTML page, plain text …)
    "not_allowed_token_type",
    "feature_not_enabled",
    "method_not_supported_for_channel_type",
    "team_not_allowed",
    "StreamUnavailable",
}

STREAM_ERRORS: tuple[type[Exception], ...] = (*WEB_API_ERRORS, StreamUnavailable)
"""Any of these from a native streaming call sends the answer down the placeholder-edit path."""


class StreamSupport:
    """Remembers, per workspace, whether native streaming works and whether ``chat.update`` does;
    starts by trying both."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._unsupported: set[str] = set()
        self._no_edits: set[str] = set()

    def usable(self, team: str) -> bool:
        return self.enabled and team not in self._unsupported

    def failed(self, team: str, error: str) -> None:
        if error in _UNSUPPORTED_STREAM_ERRORS:
            log.info("native streaming unavailable in %s (%s); using message edits", team, error)
            self._unsupported.add(team)

    def edits_usable(self, team: str) -> bool:
        return team not in self._no_edits

    def edits_failed(self, team: str, error: str) -> None:
        if team not in self._no_edits:
            log.warning("chat.update unavailable in %s (%s); answers are posted once, when complete", team, error)
            self._no_edits.add(team)


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
        self.throttle = Throttle(edit_interval, clock)
        self.on_posted = on_posted
        self.section_limit = section_limit
        self.stream_limit = stream_limit
        self.sink: Sink | None = None
        self.text = ""
        self.mode: str | None = None

    @property
    def started(self) -> bool:
        return self.sink is not None

    async def _start(self, status: str | None) -> Sink:
        sink: Sink | None = None
        if self.target.thread_ts and self.streams.usable(self.target.team):
            native = NativeStreamSink(self.client, self.target, self.throttle, self.stream_limit)
            try:
                await native.start(status)
                sink, self.mode = native, "stream"
            except STREAM_ERRORS as exc:
                code = slack_error(exc)
                self.streams.failed(self.target.team, code)
                log.debug("chat.startStream failed (%s); falling back to chat.update", code)
        if sink is None:
            edit = self._edit_sink()
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
                    await self._flush()
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

    def _edit_sink(self) -> EditSink:
        team = self.target.team
        return EditSink(
            self.client,
            self.target,
            self.throttle,
            self.section_limit,
            editable=self.streams.edits_usable(team),
            on_no_edits=lambda code: self.streams.edits_failed(team, code),
        )

    async def _fall_back(self, native: NativeStreamSink, exc: Exception) -> EditSink:
        """Native streaming failed mid-answer: close the stream if possible and go on in a
        placeholder message with the text the stream never took."""
        code = slack_error(exc)
        self.streams.failed(self.target.team, code)
        log.warning("native streaming failed mid-answer (%s); continuing with message edits", code)
        if native.open:
            with contextlib.suppress(*WEB_API_ERRORS, RuntimeError):
                await native._stop(None)
        edit = self._edit_sink()
        await edit.start(None)
        self.sink, self.mode = edit, "edit"
        if native.buffer:
            await edit.append(native.buffer)
        return edit

    async def _append(self, text: str) -> None:
        sink = self.sink or await self._start(None)
        self.text += text
        try:
            await sink.append(text)
        except STREAM_ERRORS as exc:
            if not isinstance(sink, NativeStreamSink):
                raise
            await self._fall_back(sink, exc)  # the text is in the stream's unsent buffer: carried over

    async def _flush(self) -> None:
        sink = self.sink
        if sink is None:
            return
        try:
            await sink.flush()
        except STREAM_ERRORS as exc:
            if not isinstance(sink, NativeStreamSink):
                raise
            await self._fall_back(sink, exc)

    async def _finish(self, final: FinalAnswer | None) -> None:
        sink = self.sink
        if sink is None:
            return
        try:
            await sink.finish(final)
            return
        except STREAM_ERRORS as exc:
            if not isinstance(sink, NativeStreamSink):
                raise
            if not sink.buffer and (final is None or not closing_blocks(final)):
                # All the text is in the stream already and nothing is left to add under it.
                self.streams.failed(self.target.team, slack_error(exc))
                log.warning("chat.stopStream failed (%s); the answer was already shown", slack_error(exc))
                return
            edit = await self._fall_back(sink, exc)
        await edit.finish(final)

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
                if event.text:
                    await self._append(event.text)
            elif isinstance(event, FinalAnswer):
                final = event
        if final is None:
            await self._finish(None)
            return None
        if self.sink is None and final.ephemeral:
            try:
                await self.post_ephemeral(final)
                return final
            except WEB_API_ERRORS as exc:  # no ephemeral messages here: say it in the thread instead
                log.info("chat.postEphemeral failed (%s); replying in the thread", slack_error(exc))
        if self.sink is None:
            await self._start(None)
        if final.text.startswith(self.text):
            rest = final.text[len(self.text) :]
        else:  # the stream broke off (e.g. the model failed mid-answer): keep what was shown, add why
            rest = ("\n\n" if self.text else "") + final.text
        if rest:
            await self._append(rest)
        await self._finish(final)
        return final

    async def abort(self) -> None:
        """After a failure: close an open native stream so the message stops "typing" (best effort)."""
        sink = self.sink
        if isinstance(sink, NativeStreamSink) and sink.open:
            with contextlib.suppress(*WEB_API_ERRORS, RuntimeError):
                await sink._stop(None)

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
