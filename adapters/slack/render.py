"""Render the engine's reply stream in Slack: Slack's side of the shared live message
(``adapters.common.live``, which throttles, coalesces and always makes the final edit).

Two ways to show an answer while it is written:

- **native streaming** (``chat.startStream`` / ``chat.appendStream`` / ``chat.stopStream``) where
  the workspace supports it: Markdown is appended as it arrives, at most about once per
  ``edit_interval``;
- **placeholder edits** elsewhere: a message is posted at once and edited with ``chat.update`` at
  most once per ``edit_interval`` (time since the last edit); the final edit is always sent.

A native stream that fails mid-answer goes on as placeholder edits with the text it never took.
Either way an answer longer than one message continues in a new message in the same thread, and
the last message carries the citations (a context block of links) and the 👍/👎 buttons.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.common.live import LiveMessage, MessageSink, Throttle
from adapters.slack.blocks import SECTION_LIMIT, answer_blocks, closing_blocks
from adapters.slack.client import METHOD_MISSING, WEB_API_ERRORS, slack_error
from adapters.slack.mrkdwn import escape
from adapters.slack.sinks import (
    STREAM_LIMIT,
    EditSink,
    NativeStreamSink,
    ReplyTarget,
    StreamUnavailable,
)
from bot.messages import FinalAnswer, ReplyEvent

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

_CLOSE_ERRORS: tuple[type[Exception], ...] = (*WEB_API_ERRORS, RuntimeError)
STREAM_ERRORS: tuple[type[Exception], ...] = (*WEB_API_ERRORS, StreamUnavailable)
"""Any of these from a native streaming call sends the answer down the placeholder-edit path."""


CAPABILITY_RETRY_SECONDS = 600.0
"""How long a workspace is taken to lack native streaming (or ``chat.update``) after a call said so.

Never for the life of the process: one error page from a proxy must not turn a capability off
until the next restart, so after this long it is tried again."""


class StreamSupport:
    """Remembers, per workspace and for :data:`CAPABILITY_RETRY_SECONDS` at most, that native
    streaming or ``chat.update`` failed; starts by trying both."""

    def __init__(
        self,
        enabled: bool = True,
        *,
        retry_after: float = CAPABILITY_RETRY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self.retry_after = retry_after
        self.clock = clock
        self._unsupported: dict[str, float] = {}  # team → when it failed
        self._no_edits: dict[str, float] = {}

    def _lacks(self, failures: dict[str, float], team: str) -> bool:
        since = failures.get(team)
        if since is None:
            return False
        if self.clock() - since >= self.retry_after:
            del failures[team]  # long enough: try it again
            return False
        return True

    def usable(self, team: str) -> bool:
        return self.enabled and not self._lacks(self._unsupported, team)

    def failed(self, team: str, error: str) -> None:
        if error in _UNSUPPORTED_STREAM_ERRORS:
            log.info("native streaming unavailable in %s (%s); using message edits for a while", team, error)
            self._unsupported[team] = self.clock()

    def edits_usable(self, team: str) -> bool:
        return not self._lacks(self._no_edits, team)

    def edits_failed(self, team: str, error: str) -> None:
        if not self._lacks(self._no_edits, team):
            log.warning("chat.update unavailable in %s (%s); answers are posted once, when complete", team, error)
        self._no_edits[team] = self.clock()


class SlackReplyRenderer:
    """Slack's live sink (``adapters.common.live``): one reply stream as Slack messages in one
    channel/thread, natively streamed where the workspace allows, else by placeholder edits.

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
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        on_posted: Callable[[], Awaitable[None]] | None = None,
        section_limit: int = SECTION_LIMIT,
        stream_limit: int = STREAM_LIMIT,
    ) -> None:
        self.client = client
        self.target = target
        self.streams = streams
        self.throttle = Throttle(edit_interval, clock)
        self.live = LiveMessage(self, self.throttle, sleep=sleep)
        self.on_posted = on_posted
        self.section_limit = section_limit
        self.stream_limit = stream_limit
        self.sink: MessageSink | None = None
        self.text = ""
        self.mode: str | None = None

    @property
    def started(self) -> bool:
        return self.sink is not None

    async def render(self, events: AsyncIterator[ReplyEvent]) -> FinalAnswer | None:
        """Show ``events``; the final answer, or None when the stream had none."""
        return await self.live.run(events)

    async def answer(self, events: AsyncIterator[ReplyEvent], *, ref: str) -> FinalAnswer | None:
        """:meth:`render` inside the answer's error boundary (see ``LiveMessage.answer``): a Web API
        refusal is said with what Slack said; anything else is logged with its trace and said plainly."""
        return await self.live.answer(
            events, ref=ref, platform="slack", platform_errors=WEB_API_ERRORS, describe=slack_error
        )

    # --- LiveSink -----------------------------------------------------------------------------

    @property
    def pending(self) -> bool:
        return self.sink is not None and self.sink.pending

    async def start(self, status: str | None) -> None:
        sink: MessageSink | None = None
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

    async def _opened(self) -> MessageSink:
        if self.sink is None:
            await self.start(None)
        assert self.sink is not None  # start() sets it or raises
        return self.sink

    async def status(self, text: str) -> None:
        await (await self._opened()).status(text)

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
        await self._close_stream(native)
        edit = self._edit_sink()
        await edit.start(None)
        self.sink, self.mode = edit, "edit"
        if native.buffer:
            await edit.append(native.buffer)
        return edit

    async def append(self, delta: str) -> None:
        sink = await self._opened()
        self.text += delta
        try:
            await sink.append(delta)
        except STREAM_ERRORS as exc:
            if not isinstance(sink, NativeStreamSink):
                raise
            await self._fall_back(sink, exc)  # the text is in the stream's unsent buffer: carried over

    async def flush(self) -> None:
        sink = self.sink
        if sink is None:
            return
        try:
            await sink.flush()
        except STREAM_ERRORS as exc:
            if not isinstance(sink, NativeStreamSink):
                raise
            await self._fall_back(sink, exc)

    async def finish(self, final: FinalAnswer | None) -> None:
        if final is not None:
            if self.sink is None and final.ephemeral:
                try:
                    await self.post_ephemeral(final)
                    return
                except WEB_API_ERRORS as exc:  # no ephemeral messages here: say it in the thread instead
                    log.info("chat.postEphemeral failed (%s); replying in the thread", slack_error(exc))
            if final.text.startswith(self.text):
                rest = final.text[len(self.text) :]
            else:  # the stream broke off (e.g. the model failed mid-answer): keep what was shown, add why
                rest = ("\n\n" if self.text else "") + final.text
            if rest:
                await self.append(rest)
        await self._finish(await self._opened(), final)

    async def _finish(self, sink: MessageSink, final: FinalAnswer | None) -> None:
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

    async def fail(self, note: str | None) -> None:
        """After a failure: close an open native stream so the message stops "typing", then say
        ``note`` in the thread (best effort: what Slack refuses is logged)."""
        if isinstance(self.sink, NativeStreamSink):
            await self._close_stream(self.sink)
        if note is None:
            return
        kwargs: dict[str, Any] = {"channel": self.target.channel, "text": f":warning: {escape(note)}"}
        if self.target.thread_ts:
            kwargs["thread_ts"] = self.target.thread_ts
        try:
            await self.client.chat_postMessage(**kwargs)
        except WEB_API_ERRORS as exc:
            log.warning("slack: could not report the failure either (%s)", slack_error(exc))

    async def _close_stream(self, native: NativeStreamSink) -> None:
        if native.open:
            try:
                await native.stop(None)
            except _CLOSE_ERRORS as exc:  # closing is a courtesy: the answer goes on
                log.info("chat.stopStream failed (%s)", slack_error(exc))

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
