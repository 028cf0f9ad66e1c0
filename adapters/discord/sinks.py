"""Reply sinks on Discord: a channel/thread/DM, or an interaction's follow-up messages.

Sinks talk to Discord's REST routes through discord.py's HTTP layer (its rate limiting, retries
and authentication) but read nothing from a response except the new message's ``id``: building a
full :class:`discord.Message` from the body would turn a message that *was* posted into an
exception whenever a Discord-compatible server returns a shorter body, and the answer would then
be posted twice. A handle is just ``(channel id, message id)``.

Every message the bot sends allows no mentions except, optionally, a ping of the person it
replies to: an answer quoting ``@everyone`` from a document must not ping a whole server.
Feedback buttons are sent as components whose custom ids carry the trace id; clicks are handled
statelessly in ``on_interaction`` (see ``handlers.py``), so the view is never kept in memory.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import discord
from discord.http import HTTPClient, handle_message_parameters
from discord.webhook.async_ import async_context

from adapters.discord.convert import feedback_custom_id, sent_message_id
from bot.messages import FinalAnswer

log = logging.getLogger(__name__)

NO_MENTIONS = discord.AllowedMentions.none()
RATE_LIMIT_ATTEMPTS = 4
MAX_RETRY_AFTER = 60.0

T = TypeVar("T")


def retry_after(exc: discord.HTTPException) -> float | None:
    """Seconds to wait before retrying a 429; None for any other error."""
    if exc.status != 429:
        return None
    headers = getattr(exc.response, "headers", None) or {}
    for name in ("X-RateLimit-Reset-After", "Retry-After"):
        try:
            return min(max(float(headers[name]), 0.0), MAX_RETRY_AFTER)
        except (KeyError, TypeError, ValueError):
            continue
    return 1.0


async def honour_rate_limits(call: Callable[[], Awaitable[T]]) -> T:
    """Run a REST call, waiting out 429s that discord.py passes on instead of retrying.

    discord.py retries a 429 itself only when it carries a ``Via`` header (without one it takes
    the 429 for a Cloudflare ban and raises). A Discord-compatible server that rate limits
    without that header still gets its ``Retry-After`` honoured here, a few times at most.
    """
    for attempt in range(1, RATE_LIMIT_ATTEMPTS + 1):
        try:
            return await call()
        except discord.HTTPException as exc:
            wait = retry_after(exc)
            if wait is None or attempt == RATE_LIMIT_ATTEMPTS:
                raise
            log.warning("rate limited (429); retrying in %.2f s", wait)
            await asyncio.sleep(wait)
    raise AssertionError("unreachable")


@dataclass(frozen=True, slots=True)
class Sent:
    """A message the bot posted; ``message_id`` is None when the server did not say which."""

    channel_id: str
    message_id: str | None


class CannotEdit(LookupError):
    """The message's id is unknown, so it can be neither edited nor deleted."""


def feedback_view(final: FinalAnswer) -> discord.ui.View:
    view = discord.ui.View(timeout=None)
    view.add_item(
        discord.ui.Button(
            style=discord.ButtonStyle.secondary,
            emoji="👍",
            custom_id=feedback_custom_id("up", final.trace_id),
        )
    )
    view.add_item(
        discord.ui.Button(
            style=discord.ButtonStyle.secondary,
            emoji="👎",
            custom_id=feedback_custom_id("down", final.trace_id),
        )
    )
    view.stop()  # handled by custom id in on_interaction; keep nothing per message in memory
    return view


def _view_kwargs(feedback: FinalAnswer | None) -> dict[str, Any]:
    if feedback is None or not feedback.trace_id:
        return {}
    return {"view": feedback_view(feedback)}


def _message_id(sent: Sent) -> str:
    if sent.message_id is None:
        raise CannotEdit(f"the server did not return the id of a message posted in {sent.channel_id}")
    return sent.message_id


class ChannelSink:
    """Posts into a channel, thread or DM; the first message may reply to the question.

    With a ``fallback`` channel (the question's channel when answering in a new thread), a first
    post that Discord refuses goes there instead, as a reply, so the answer is never lost.
    """

    def __init__(
        self,
        http: HTTPClient,
        channel_id: str,
        *,
        reference: dict[str, Any] | None = None,
        ping_author: bool = False,
        fallback: ChannelSink | None = None,
    ) -> None:
        self._http = http
        self.channel_id = channel_id
        self._reference = reference
        self._mentions = discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=ping_author)
        self._fallback = fallback
        self._posted = False
        self._first: tuple[Sent, dict[str, Any] | None] | None = None  # the first message and its reference

    async def post(self, content: str, *, feedback: FinalAnswer | None = None) -> Sent:
        if self._fallback is not None and not self._posted:
            try:
                return await self._post(content, feedback)
            except discord.HTTPException as exc:
                fallback, self._fallback = self._fallback, None
                log.warning("could not post in %s (%s); answering in %s", self.channel_id, exc, fallback.channel_id)
                # from now on this sink posts where the fallback would
                self.channel_id = fallback.channel_id
                self._reference = fallback._reference
                self._mentions = fallback._mentions
        return await self._post(content, feedback)

    async def _post(self, content: str, feedback: FinalAnswer | None) -> Sent:
        kwargs = _view_kwargs(feedback)
        if self._reference is not None:
            kwargs["message_reference"] = self._reference
        params = handle_message_parameters(content, allowed_mentions=self._mentions, **kwargs)
        data = await honour_rate_limits(lambda: self._http.send_message(self.channel_id, params=params))
        sent = Sent(self.channel_id, sent_message_id(data))
        if self._first is None:
            self._first = (sent, self._reference)
        self._reference = None  # only the first message is a reply
        self._posted = True
        return sent

    async def repost(self, handle: Sent, content: str, *, feedback: FinalAnswer | None = None) -> Sent:
        if self._first is not None and self._first[0] == handle:  # the reply itself: reply again
            self._reference = self._first[1]
            self._first = None
        return await self._post(content, feedback)

    async def edit(self, handle: Sent, content: str, *, feedback: FinalAnswer | None = None) -> None:
        params = handle_message_parameters(content, allowed_mentions=NO_MENTIONS, **_view_kwargs(feedback))
        message_id = _message_id(handle)
        await honour_rate_limits(lambda: self._http.edit_message(handle.channel_id, message_id, params=params))

    async def delete(self, handle: Sent) -> None:
        message_id = _message_id(handle)
        await honour_rate_limits(lambda: self._http.delete_message(handle.channel_id, message_id))


class InteractionSink:
    """Follow-ups of a deferred interaction (the first one fills the "thinking…" placeholder).

    Goes through discord.py's webhook adapter (no bot token on these routes, as Discord wants)
    and, like :class:`ChannelSink`, keeps only the id of what it posted.
    """

    def __init__(self, interaction: discord.Interaction, *, ephemeral: bool) -> None:
        self._webhook = interaction.followup
        self._channel_id = str(interaction.channel_id or "")
        self._flags = discord.MessageFlags(ephemeral=ephemeral)

    async def post(self, content: str, *, feedback: FinalAnswer | None = None) -> Sent:
        w = self._webhook
        params = handle_message_parameters(
            content, allowed_mentions=NO_MENTIONS, flags=self._flags, **_view_kwargs(feedback)
        )
        data = await honour_rate_limits(
            lambda: async_context.get().execute_webhook(
                w.id, w.token or "", session=w.session, proxy=w.proxy, proxy_auth=w.proxy_auth,
                payload=params.payload, wait=True,
            )
        )  # fmt: skip
        return Sent(self._channel_id, sent_message_id(data))

    async def repost(self, handle: Sent, content: str, *, feedback: FinalAnswer | None = None) -> Sent:
        return await self.post(content, feedback=feedback)

    async def edit(self, handle: Sent, content: str, *, feedback: FinalAnswer | None = None) -> None:
        w = self._webhook
        params = handle_message_parameters(content, allowed_mentions=NO_MENTIONS, **_view_kwargs(feedback))
        message_id = int(_message_id(handle))
        await honour_rate_limits(
            lambda: async_context.get().edit_webhook_message(
                w.id, w.token or "", message_id, session=w.session, proxy=w.proxy,
                proxy_auth=w.proxy_auth, payload=params.payload,
            )
        )  # fmt: skip

    async def delete(self, handle: Sent) -> None:
        w = self._webhook
        await async_context.get().delete_webhook_message(
            w.id, w.token or "", int(_message_id(handle)), session=w.session, proxy=w.proxy, proxy_auth=w.proxy_auth
        )
