"""Reply sinks on Discord: a channel/thread/DM, or an interaction's follow-up messages.

Every message the bot sends allows no mentions except, optionally, a ping of the person it
replies to: an answer quoting ``@everyone`` from a document must not ping a whole server.
Feedback buttons are sent as components whose custom ids carry the trace id; clicks are handled
statelessly in ``on_interaction`` (see ``handlers.py``), so the view is never kept in memory.
"""

from __future__ import annotations

from typing import Any

import discord

from adapters.discord.convert import feedback_custom_id
from bot.messages import FinalAnswer

NO_MENTIONS = discord.AllowedMentions.none()


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


class ChannelSink:
    """Posts into a channel, thread or DM; the first message may reply to the question."""

    def __init__(
        self,
        channel: discord.abc.Messageable,
        *,
        reference: discord.MessageReference | None = None,
        ping_author: bool = False,
    ) -> None:
        self._channel = channel
        self._reference = reference
        self._mentions = discord.AllowedMentions(everyone=False, users=False, roles=False, replied_user=ping_author)

    async def post(self, content: str, *, feedback: FinalAnswer | None = None) -> discord.Message:
        kwargs = _view_kwargs(feedback)
        if self._reference is not None:
            kwargs["reference"] = self._reference
            self._reference = None  # only the first message is a reply
        return await self._channel.send(content, allowed_mentions=self._mentions, **kwargs)

    async def edit(self, handle: discord.Message, content: str, *, feedback: FinalAnswer | None = None) -> None:
        await handle.edit(content=content, allowed_mentions=NO_MENTIONS, **_view_kwargs(feedback))

    async def delete(self, handle: discord.Message) -> None:
        await handle.delete()


class InteractionSink:
    """Follow-ups of a deferred interaction (the first one fills the "thinking…" placeholder)."""

    def __init__(self, interaction: discord.Interaction, *, ephemeral: bool) -> None:
        self._interaction = interaction
        self._ephemeral = ephemeral

    async def post(self, content: str, *, feedback: FinalAnswer | None = None) -> discord.WebhookMessage:
        return await self._interaction.followup.send(
            content, ephemeral=self._ephemeral, wait=True, allowed_mentions=NO_MENTIONS, **_view_kwargs(feedback)
        )

    async def edit(self, handle: discord.WebhookMessage, content: str, *, feedback: FinalAnswer | None = None) -> None:
        await handle.edit(content=content, allowed_mentions=NO_MENTIONS, **_view_kwargs(feedback))

    async def delete(self, handle: discord.WebhookMessage) -> None:
        await handle.delete()
