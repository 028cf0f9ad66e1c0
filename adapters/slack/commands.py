"""The slash command and the feedback buttons: Slack interactions → core commands and feedback.

The core parses and executes commands; this module only maps ``/bothbot <text>`` onto a command
line, tells the core truthfully whether the caller is an admin, and shows the reply to the caller
(``response_url``, else ``chat.postEphemeral``). ``ask <question>`` is answered in the channel.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol

from slack_bolt.context.respond.async_respond import AsyncRespond
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.blocks import answer_blocks
from adapters.slack.client import slack_error
from adapters.slack.convert import BotIdentity, SlashCommand, feedback_value, message_from_command
from adapters.slack.directory import AdminDirectory
from adapters.slack.mrkdwn import escape
from bot.messages import FeedbackValue, FinalAnswer, IncomingMessage, ReplyEvent

log = logging.getLogger(__name__)

ASK = "ask"
FAILED = "Sorry — something went wrong on my side running that command. Please try again; `status` shows what is set."


class Engine(Protocol):
    def handle(self, msg: IncomingMessage) -> AsyncIterator[ReplyEvent]: ...

    async def record_feedback(self, trace_id: str, *, user: str, value: FeedbackValue, platform: str) -> bool: ...


class SlackInteractions:
    """Handles ``/bothbot …`` and 👍/👎 clicks after bolt has acked them."""

    def __init__(
        self,
        *,
        client: AsyncWebClient,
        engine: Engine,
        admins: AdminDirectory,
        identity: BotIdentity,
        answer: Callable[[IncomingMessage], Awaitable[FinalAnswer | None]],
    ) -> None:
        self.client = client
        self.engine = engine
        self.admins = admins
        self.identity = identity
        self.answer = answer

    async def run_command(self, payload: SlashCommand, respond: AsyncRespond) -> None:
        """Run one ``/bothbot …`` invocation (already acked) and reply; a failure is said, privately."""
        try:
            await self._run_command(payload, respond)
        except Exception:
            log.exception("slack: /%s failed", payload.get("text", "").split(" ", 1)[0] or "command")
            with contextlib.suppress(Exception):
                await self._tell(respond, payload["channel_id"], payload["user_id"], FAILED)

    async def _tell(self, respond: AsyncRespond, channel: str, user: str, text: str) -> None:
        if respond.response_url:
            try:
                await respond(text=text, response_type="ephemeral", replace_original=False)
                return
            except Exception as exc:  # response_url unreachable or expired: use the Web API instead
                log.info("slack: response_url failed (%s); using chat.postEphemeral", exc)
        await self.client.chat_postEphemeral(channel=channel, user=user, text=text)

    async def _run_command(self, payload: SlashCommand, respond: AsyncRespond) -> None:
        team = payload.get("team_id") or self.identity.team_id or "T0"
        is_admin = await self.admins.is_admin(team, payload["user_id"])
        msg = message_from_command(payload, is_admin=is_admin)
        if msg.text.split(maxsplit=1)[0].lower() == ASK:
            await self._ask_in_channel(msg, respond)
            return
        final = await _collect(self.engine.handle(msg))
        if final is not None:
            await self._reply_privately(msg, final, respond)

    async def _ask_in_channel(self, msg: IncomingMessage, respond: AsyncRespond) -> None:
        """``/bothbot ask …``: the question is shown in the channel, the answer streams in its thread."""
        parts = msg.text.split(maxsplit=1)
        question = parts[1].strip() if len(parts) > 1 else ""
        posted_ts: str | None = None
        if question:
            try:
                posted = await self.client.chat_postMessage(
                    channel=msg.channel, text=f"<@{msg.user}> asked: {escape(question)}"
                )
                posted_ts = str(posted.get("ts") or "") or None
            except (SlackApiError, SlackClientError) as exc:
                # Not in the channel (or not allowed to post there): answer privately instead.
                log.info("slack: cannot post in %s (%s); answering privately", msg.channel, slack_error(exc))
        if posted_ts is None:
            final = await _collect(self.engine.handle(msg))
            if final is not None:
                await self._reply_privately(msg, final, respond)
            return
        await self.answer(dataclasses.replace(msg, thread=posted_ts))

    async def _reply_privately(self, msg: IncomingMessage, final: FinalAnswer, respond: AsyncRespond) -> None:
        text, blocks = answer_blocks(final.text, final)
        if respond.response_url:
            try:
                await respond(
                    text=text,
                    blocks=blocks,
                    response_type="ephemeral" if final.ephemeral else "in_channel",
                    replace_original=False,
                )
                return
            except Exception as exc:  # response_url unreachable or expired: use the Web API instead
                log.info("slack: response_url failed (%s); using chat.postEphemeral", exc)
        await self.client.chat_postEphemeral(channel=msg.channel, user=msg.user, text=text, blocks=blocks)

    async def record_feedback(self, body: dict[str, Any], respond: AsyncRespond) -> None:
        """A 👍/👎 click (already acked): store it on the answer's trace and thank the user privately."""
        actions = body.get("actions") or []
        if not actions:
            return
        action = actions[0]
        value = feedback_value(str(action.get("action_id", "")))
        trace_id = str(action.get("value", ""))
        user = str((body.get("user") or {}).get("id", ""))
        if value is None or not trace_id or not user:
            return
        stored = await self.engine.record_feedback(trace_id, user=user, value=value, platform="slack")
        if stored:
            text = "Thanks — your 👍 is recorded." if value == "up" else "Thanks — your 👎 is recorded."
        else:
            text = "I couldn't record that: this answer is too old or no longer on record."
        if respond.response_url:
            try:
                await respond(text=text, response_type="ephemeral", replace_original=False)
                return
            except Exception as exc:
                log.info("slack: response_url failed (%s); using chat.postEphemeral", exc)
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", ""))
        message = body.get("message") or {}
        thread = message.get("thread_ts") or message.get("ts")
        kwargs: dict[str, Any] = {"channel": channel, "user": user, "text": text}
        if thread:
            kwargs["thread_ts"] = thread
        await self.client.chat_postEphemeral(**kwargs)


async def _collect(events: AsyncIterator[ReplyEvent]) -> FinalAnswer | None:
    final: FinalAnswer | None = None
    async for event in events:
        if isinstance(event, FinalAnswer):
            final = event
    return final
