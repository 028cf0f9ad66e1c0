"""The two ways an answer is written into Slack while it streams.

- :class:`NativeStreamSink`: ``chat.startStream`` → ``chat.appendStream``… → ``chat.stopStream``
  (Markdown, rendered by Slack), appended at most once per throttle interval;
- :class:`EditSink`: a placeholder posted at once and edited with ``chat.update`` at most once per
  throttle interval (time since the last edit); the final edit is always sent.

Both continue an answer that outgrows one message in a new message in the same thread (cut by
the shared splitter), and both escape the text with the one ``adapters.slack.mrkdwn.escape``, so
``<!channel>``, ``<!here>`` or ``<@U…>`` in a question or a document never reach Slack as a
mention. When to show held-back text is the shared live message's business
(``adapters.common.live``): it calls ``flush`` when the throttle allows; ``append`` only takes
text, and a full message is finished and continued in a new one by ``flush`` (or ``finish``), so
even then there is at most one edit per throttle interval, besides the calls that close a full
message and open the next.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from slack_sdk.web.async_client import AsyncWebClient

from adapters.common.live import Throttle
from adapters.common.splitter import split_head
from adapters.slack.blocks import PLACEHOLDER, answer_blocks, closing_blocks, mrkdwn_size
from adapters.slack.client import METHOD_MISSING, WEB_API_ERRORS, slack_error
from adapters.slack.mrkdwn import escape
from bot.messages import FinalAnswer

log = logging.getLogger(__name__)

STREAM_LIMIT = 12_000
"""Characters of Markdown in one natively streamed message (Slack's ``markdown_text`` limit)."""


def stream_size(markdown: str) -> int:
    """Characters ``markdown`` takes in a native stream, once escaped (see :meth:`NativeStreamSink._send`)."""
    return len(escape(markdown))


@dataclass(frozen=True, slots=True)
class ReplyTarget:
    """Where a reply goes and whom it answers."""

    channel: str
    thread_ts: str | None
    team: str
    user: str


class StreamUnavailable(Exception):
    """Native streaming answered, but not in a way this adapter can use."""


class EditSink:
    """A placeholder message edited with ``chat.update``; overflow continues in a new message.

    With ``editable=False`` (an API without ``chat.update``) nothing is posted until the answer
    is complete, then it is posted once. ``on_no_edits`` is told when ``chat.update`` turns out
    not to exist, and the rest of this answer is written that way too.
    """

    def __init__(
        self,
        client: AsyncWebClient,
        target: ReplyTarget,
        throttle: Throttle,
        limit: int,
        *,
        editable: bool = True,
        on_no_edits: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.target = target
        self.throttle = throttle
        self.limit = limit
        self.editable = editable
        self.on_no_edits = on_no_edits
        self.ts: str | None = None
        self.current = ""  # Markdown of the message being written
        self.shown: str | None = None  # mrkdwn text the current message shows
        self.posted: list[str] = []
        self._dirty = False

    def _update_failed(self, exc: Exception, what: str) -> None:
        code = slack_error(exc)
        log.warning("chat.update of %s failed (%s)", what, code)
        if code in METHOD_MISSING:
            self._no_edits(code)

    def _no_edits(self, reason: str) -> None:
        self.editable = False
        if self.on_no_edits is not None:
            self.on_no_edits(reason)

    @property
    def pending(self) -> bool:
        return self._dirty

    async def start(self, status: str | None) -> None:
        if self.editable:
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
        if self.ts is None and self.editable:
            self._no_edits("chat.postMessage returned no ts")
        self.shown = text
        if self.ts:
            self.posted.append(self.ts)
        self.throttle.mark()

    async def _edit(self, markdown: str, final: FinalAnswer | None = None, *, force: bool = False) -> None:
        text, blocks = answer_blocks(markdown, final)
        if not force and text == self.shown:
            return
        if self.ts is None or not self.editable:
            if final is not None or force:
                await self._post(text, blocks)
            return
        try:
            await self.client.chat_update(channel=self.target.channel, ts=self.ts, text=text, blocks=blocks)
        except WEB_API_ERRORS as exc:
            # The message can't be edited (deleted, edit window closed, no chat.update …): an
            # intermediate edit is skipped; a final one is posted as a new message so the answer
            # still arrives whole.
            self._update_failed(exc, "the answer")
            if final is None and not force:
                self.throttle.mark()
                return
            await self._post(text, blocks)
            return
        self.shown = text
        self.throttle.mark()

    async def status(self, text: str) -> None:
        if not self.current and self.throttle.due():
            status = f"_{escape(text)}_"
            if status != self.shown and self.ts is not None and self.editable:
                try:
                    await self.client.chat_update(channel=self.target.channel, ts=self.ts, text=status)
                except WEB_API_ERRORS as exc:  # progress is a nicety: the answer follows regardless
                    self._update_failed(exc, "the status")
                else:
                    self.shown = status
                self.throttle.mark()

    async def append(self, delta: str) -> None:
        self.current += delta  # a full message is continued at the next flush, when the throttle allows
        self._dirty = True

    async def _continue_full(self) -> None:
        """While the message is over its limit: finish it with what fits, continue in a new one."""
        while mrkdwn_size(self.current) > self.limit:
            head, rest = split_head(self.current, self.limit, mrkdwn_size)
            await self._edit(head, force=True)
            self.current = rest
            if self.editable:
                text, blocks = answer_blocks(rest, None)
                await self._post(text, blocks)
            else:  # the rest is posted when complete (or full)
                self.ts, self.shown = None, None

    async def flush(self) -> None:
        self._dirty = False
        await self._continue_full()
        await self._edit(self.current)  # nothing to do when the new message already shows it

    async def finish(self, final: FinalAnswer | None) -> None:
        self._dirty = False
        await self._continue_full()
        await self._edit(self.current.rstrip(), final, force=True)


class NativeStreamSink:
    """``chat.startStream`` → ``chat.appendStream``… → ``chat.stopStream`` (with the closing blocks).

    ``buffer`` holds every piece of text not yet confirmed by Slack, so when a call fails the
    renderer can carry exactly that over to a placeholder message (see ``SlackReplyRenderer``).
    """

    def __init__(self, client: AsyncWebClient, target: ReplyTarget, throttle: Throttle, limit: int) -> None:
        self.client = client
        self.target = target
        self.throttle = throttle
        self.limit = limit
        self.ts: str | None = None
        self.streamed = 0  # Markdown characters in the current streamed message
        self.buffer = ""
        self.posted: list[str] = []
        self.open = False

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
        self.open = True
        self.streamed = 0
        self.posted.append(self.ts)
        self.throttle.mark()

    async def status(self, text: str) -> None:
        return None  # the streaming message shows its own progress until text arrives

    async def flush(self) -> None:
        if await self._continue_full():
            return  # a new stream was just opened: the rest goes at the next flush, when the throttle allows
        await self._send_buffer()

    async def _send_buffer(self) -> None:
        if self.buffer:
            await self._send(self.buffer)
            self.buffer = ""

    async def _send(self, text: str) -> None:
        if self.ts is None:
            raise RuntimeError("NativeStreamSink.start() must run before append")
        escaped = escape(text)  # as the edit path does: no <!channel>, <@U…> from a question or a document
        await self.client.chat_appendStream(channel=self.target.channel, ts=self.ts, markdown_text=escaped)
        self.streamed += len(escaped)
        self.throttle.mark()

    async def append(self, delta: str) -> None:
        self.buffer += delta  # a full stream is continued at the next flush, when the throttle allows

    async def _continue_full(self) -> bool:
        """While the stream cannot take the buffer: append what fits, stop it, start a new one.
        True when a new stream was started."""
        continued = False
        while self.streamed + stream_size(self.buffer) > self.limit:
            room = self.limit - self.streamed
            head, rest = split_head(self.buffer, room, stream_size) if room > 200 else ("", self.buffer)
            if head:
                await self._send(head)
            self.buffer = rest  # only now: until Slack took the head, all of it is still unsent
            await self.stop(None)
            await self.start(None)
            continued = True
        return continued

    async def stop(self, final: FinalAnswer | None) -> None:
        if self.ts is None:
            raise RuntimeError("NativeStreamSink.start() must run before stop")
        kwargs: dict[str, Any] = {"channel": self.target.channel, "ts": self.ts}
        blocks = closing_blocks(final) if final is not None else []
        if blocks:
            kwargs["blocks"] = blocks
        self.open = False
        await self.client.chat_stopStream(**kwargs)

    async def finish(self, final: FinalAnswer | None) -> None:
        await self._continue_full()
        await self._send_buffer()
        await self.stop(final)
