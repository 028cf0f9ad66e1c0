"""The slash command and the feedback buttons: Slack interactions → core commands and feedback.

The core parses and executes commands; this module only maps ``/bothbot <text>`` onto a command
line, tells the core truthfully whether the caller is an admin, and shows the reply to the caller.
A public command (``ask <question>``, see ``bot/command_specs.py``) is answered in the channel.

A private reply goes, in order of preference, through the command's ``response_url``, then
``chat.postEphemeral``, then a direct message to the caller (``chat.postMessage`` to their user
id), and only when none of those works as a message in the channel that mentions them, so the
caller always sees an answer and admin replies stay private wherever the server allows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol

import aiohttp
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

from adapters.slack.blocks import answer_blocks
from adapters.slack.client import WEB_API_ERRORS, slack_error
from adapters.slack.convert import (
    BotIdentity,
    FeedbackClick,
    SlashCommand,
    message_from_command,
    parse_feedback,
    parse_slash_command,
)
from adapters.slack.directory import AdminDirectory
from adapters.slack.mrkdwn import escape
from bot.command_specs import specs_for
from bot.commands import command_rest, split_command
from bot.messages import FeedbackValue, FinalAnswer, IncomingMessage, ReplyEvent

log = logging.getLogger(__name__)

PUBLIC_COMMANDS = frozenset(spec.name for spec in specs_for("slack") if spec.public)
"""Commands answered in the channel (``ask``): from the specs, like the manifest's usage hint."""
FAILED = "Sorry — something went wrong on my side running that command. Please try again; `status` shows what is set."
RESPONSE_URL_TIMEOUT = 10
"""Seconds to wait for a ``response_url`` before falling back to the Web API."""


class Engine(Protocol):
    def handle(self, msg: IncomingMessage) -> AsyncGenerator[ReplyEvent, None]: ...

    async def record_feedback(self, trace_id: str, *, user: str, value: FeedbackValue, platform: str) -> bool: ...


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    """Whom a private reply is for, and the ways to reach them."""

    user: str
    channel: str
    response_url: str | None
    thread_ts: str | None = None


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

    # --- replying privately --------------------------------------------------------------------

    async def _via_response_url(self, url: str, message: dict[str, Any]) -> bool:
        webhook = AsyncWebhookClient(url, timeout=RESPONSE_URL_TIMEOUT)  # its own session: the timeout applies
        try:
            response = await webhook.send_dict(message)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.info("slack: response_url failed (%s); using the Web API instead", type(exc).__name__)
            return False
        if 200 <= response.status_code < 300:
            return True
        log.info("slack: response_url answered HTTP %s; using the Web API instead", response.status_code)
        return False

    async def tell(
        self,
        caller: Caller,
        text: str,
        blocks: list[dict[str, Any]] | None = None,
        *,
        public_ok: bool = False,
        last_resort: bool = True,
    ) -> str | None:
        """Show ``text`` to the caller; returns how it went (``response_url``, ``ephemeral``, ``dm``,
        ``channel``) or None when nothing worked. ``public_ok``: the reply is meant for the channel."""
        extra: dict[str, Any] = {"blocks": blocks} if blocks else {}
        if caller.response_url:
            message = {
                "text": text,
                "response_type": "in_channel" if public_ok else "ephemeral",
                "replace_original": False,
                **extra,
            }
            if await self._via_response_url(caller.response_url, message):
                return "response_url"
        thread: dict[str, Any] = {"thread_ts": caller.thread_ts} if caller.thread_ts else {}
        attempts: list[tuple[str, Callable[[], Awaitable[Any]]]] = [
            (
                "ephemeral",
                lambda: self.client.chat_postEphemeral(
                    channel=caller.channel, user=caller.user, text=text, **extra, **thread
                ),
            ),
        ]
        if last_resort:
            if not caller.channel.startswith("D"):  # in a DM, the DM is the channel itself
                attempts.append(("dm", lambda: self.client.chat_postMessage(channel=caller.user, text=text, **extra)))
            addressed = _addressed(caller.user, text, blocks)
            attempts.append(
                (
                    "channel",
                    lambda: self.client.chat_postMessage(channel=caller.channel, **addressed, **thread),
                )
            )
        for how, attempt in attempts:
            try:
                await attempt()
                return how
            except WEB_API_ERRORS as exc:
                log.info("slack: private reply by %s failed (%s)", how, slack_error(exc))
        log.warning("slack: could not reply to %s in %s by any means", caller.user, caller.channel)
        return None

    # --- slash commands ------------------------------------------------------------------------

    async def run_command(self, body: Mapping[str, Any]) -> None:
        """Run one ``/bothbot …`` invocation (already acked) and reply; a failure is said, privately."""
        payload = parse_slash_command(body)
        if payload is None:
            log.warning("slack: slash command without user_id or channel_id ignored")
            return
        caller = Caller(
            user=payload["user_id"], channel=payload["channel_id"], response_url=payload.get("response_url")
        )
        try:
            await self._run_command(payload, caller)
        except Exception:
            log.exception("slack: /%s failed", payload["text"].split(" ", 1)[0] or "command")
            with contextlib.suppress(Exception):
                await self.tell(caller, FAILED)

    async def _run_command(self, payload: SlashCommand, caller: Caller) -> None:
        team = payload.get("team_id") or self.identity.team_id or "T0"
        is_admin = await self.admins.is_admin(team, payload["user_id"])
        msg = message_from_command(payload, is_admin=is_admin, default_team=self.identity.team_id)
        if split_command(msg.text)[0] in PUBLIC_COMMANDS:
            await self._ask_in_channel(msg, caller)
            return
        final = await _collect(self.engine.handle(msg))
        if final is not None:
            await self._reply_privately(final, caller)

    async def _ask_in_channel(self, msg: IncomingMessage, caller: Caller) -> None:
        """``/bothbot ask …``: the question is shown in the channel, the answer streams in its thread."""
        question = command_rest(msg.text)
        posted_ts: str | None = None
        if question:
            try:
                posted = await self.client.chat_postMessage(
                    channel=msg.channel, text=f"<@{msg.user}> asked: {escape(question)}"
                )
                posted_ts = str(posted.get("ts") or "") or None
            except WEB_API_ERRORS as exc:
                # Not in the channel (or not allowed to post there): answer privately instead.
                log.info("slack: cannot post in %s (%s); answering privately", msg.channel, slack_error(exc))
        if posted_ts is None:
            final = await _collect(self.engine.handle(msg))
            if final is not None:
                await self._reply_privately(final, caller)
            return
        await self.answer(dataclasses.replace(msg, thread=posted_ts))

    async def _reply_privately(self, final: FinalAnswer, caller: Caller) -> None:
        text, blocks = answer_blocks(final.text, final)
        await self.tell(caller, text, blocks, public_ok=False)  # the caller asked privately: keep it so

    # --- feedback buttons ----------------------------------------------------------------------

    async def record_feedback(self, body: Mapping[str, Any]) -> None:
        """A 👍/👎 click (already acked): store it on the answer's trace and thank the user privately."""
        click = parse_feedback(body)
        if click is None:
            log.debug("slack: block action that is not a feedback click ignored")
            return
        await self._record(click)

    async def _record(self, click: FeedbackClick) -> None:
        stored = await self.engine.record_feedback(click.trace_id, user=click.user, value=click.value, platform="slack")
        if stored:
            text = "Thanks — your 👍 is recorded." if click.value == "up" else "Thanks — your 👎 is recorded."
        else:
            text = "I couldn't record that: this answer is too old or no longer on record."
        caller = Caller(
            user=click.user, channel=click.channel, response_url=click.response_url, thread_ts=click.thread_ts
        )
        await self.tell(caller, text, last_resort=False)  # a thank-you is not worth a DM


def _addressed(user: str, text: str, blocks: list[dict[str, Any]] | None) -> dict[str, Any]:
    """A reply posted where everyone sees it starts with the caller's mention (text and blocks)."""
    mention = f"<@{user}>"
    message: dict[str, Any] = {"text": f"{mention} {text}"}
    if blocks:
        message["blocks"] = [{"type": "section", "text": {"type": "mrkdwn", "text": mention}}, *blocks]
    return message


async def _collect(events: AsyncIterator[ReplyEvent]) -> FinalAnswer | None:
    final: FinalAnswer | None = None
    async for event in events:
        if isinstance(event, FinalAnswer):
            final = event
    return final
