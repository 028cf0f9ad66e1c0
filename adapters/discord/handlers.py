"""What the bot does with each Discord event: messages, slash commands, feedback clicks.

The adapter boundary: every handler catches broadly once, logs with the event id, and tells the
user something short and true. The engine is called with one :class:`IncomingMessage`; if it
yields nothing (an event already handled by another replica or shard), nothing is posted.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import discord

from adapters.discord.convert import (
    DM_WORKSPACE,
    MessageFacts,
    addressed,
    command_to_incoming,
    facts_from_message,
    is_admin,
    mentions_bot,
    message_to_incoming,
    parse_feedback_custom_id,
    thread_name,
)
from adapters.discord.memory import ConversationMemory
from adapters.discord.render import LiveReply, ReplySink
from adapters.discord.sinks import ChannelSink, InteractionSink
from bot.engine import Engine
from bot.messages import FinalAnswer, IncomingMessage, ReplyEvent

log = logging.getLogger(__name__)

FAILURE_NOTE = "Sorry — something went wrong on my side while answering (ref `{ref}`). Please try again."


@dataclass(frozen=True, slots=True)
class AdapterOptions:
    admin_roles: Sequence[str] = ()
    edit_interval: float = 1.0
    thread_archive_minutes: int = 1440


async def _prepend(first: ReplyEvent, rest: AsyncIterator[ReplyEvent]) -> AsyncIterator[ReplyEvent]:
    yield first
    async for event in rest:
        yield event


class DiscordAdapter:
    def __init__(
        self, client: discord.Client, engine: Engine, memory: ConversationMemory, options: AdapterOptions
    ) -> None:
        self.client = client
        self.engine = engine
        self.memory = memory
        self.options = options

    # ------------------------------------------------------------------------------ messages

    async def on_message(self, message: discord.Message) -> None:
        try:
            await self._on_message(message)
        except Exception:
            log.exception("failed to handle Discord message %s in channel %s", message.id, message.channel.id)

    def _bot_role_ids(self, guild: discord.Guild | None) -> list[str]:
        role = guild.self_role if guild is not None else None
        return [str(role.id)] if role is not None else []

    async def _on_message(self, message: discord.Message) -> None:
        me = self.client.user
        if me is None:
            return
        bot_id = str(me.id)
        facts = facts_from_message(message)
        if facts.author_is_bot or facts.author_id == bot_id or facts.is_system:
            return  # itself, other bots, webhooks, system notices
        roles = self._bot_role_ids(message.guild)
        if not (facts.is_direct or facts.content.strip() or mentions_bot(facts, bot_id, roles)):
            return  # without the message-content intent, unaddressed messages arrive empty
        parent = facts.parent_id
        ours = False  # a thread the bot opened
        root: str | None = None  # the conversation a reply to one of the bot's answers continues
        if not facts.is_direct:
            if not isinstance(message.channel, discord.abc.GuildChannel):  # a thread, or not in cache
                stored_parent = await self.memory.thread_parent(facts.channel_id)
                ours = stored_parent is not None
                parent = parent or stored_parent
            if parent is None and facts.reference_id:
                root = await self.memory.reply_root(facts.reference_id)
        why = addressed(facts, bot_id, bot_role_ids=roles, in_bot_thread=ours, replies_to_bot=root is not None)
        if why is None:
            return
        if why in ("followup", "reply_followup") and not await self._followups_on(facts, parent or facts.channel_id):
            return
        mention = why == "mention"
        if why == "dm":
            incoming = message_to_incoming(facts, bot_id, channel_id=facts.channel_id, thread=None)
            await self._answer(incoming, ChannelSink(message.channel))
            return
        reference = message.to_reference(fail_if_not_exists=False)
        if parent is not None:  # inside a thread: the thread is the conversation, its parent the channel
            incoming = message_to_incoming(
                facts, bot_id, channel_id=parent, thread=facts.channel_id, bot_role_ids=roles, is_mention=mention
            )
            remember = (facts.channel_id, parent) if ours else None
            await self._answer(incoming, ChannelSink(message.channel, reference=reference), remember_thread=remember)
            return
        if root is not None:  # a reply to one of the bot's answers: continue that conversation
            incoming = message_to_incoming(
                facts, bot_id, channel_id=facts.channel_id, thread=root, bot_role_ids=roles, is_mention=mention
            )
            await self._answer(incoming, ChannelSink(message.channel, reference=reference), reply_root=root)
            return

        channel_key = f"discord:{facts.guild_id}:{facts.channel_id}"
        mode = (await self.engine.channel_settings(channel_key)).reply_mode
        incoming = message_to_incoming(
            facts, bot_id, channel_id=facts.channel_id, thread=facts.message_id, bot_role_ids=roles, is_mention=True
        )
        events = self.engine.handle(incoming)
        first = await anext(events, None)
        if first is None:
            return  # already handled elsewhere
        if mode == "thread" and not isinstance(first, FinalAnswer):  # a one-line refusal needs no thread
            thread = await self._open_thread(message, facts, incoming.text)
            if thread is not None:
                await self.memory.remember_thread(str(thread.id), facts.channel_id)
                await self._render(incoming, ChannelSink(thread), _prepend(first, events))
                return
        sink = ChannelSink(message.channel, reference=reference, ping_author=True)
        await self._render(incoming, sink, _prepend(first, events), reply_root=facts.message_id)

    async def _followups_on(self, facts: MessageFacts, channel_id: str) -> bool:
        key = f"discord:{facts.guild_id or DM_WORKSPACE}:{channel_id}"
        return (await self.engine.channel_settings(key)).thread_followups

    async def _open_thread(
        self, message: discord.Message, facts: MessageFacts, question: str
    ) -> discord.Thread | discord.PartialMessageable | None:
        """A public thread on the question; None (answer as a reply instead) when Discord says no."""
        name = thread_name(question, facts.author_name)
        minutes = self.options.thread_archive_minutes
        try:
            if message.guild is not None:
                return await message.create_thread(name=name, auto_archive_duration=minutes)  # type: ignore[arg-type]
            data = await self.client.http.start_thread_with_message(
                facts.channel_id,
                facts.message_id,
                name=name,
                auto_archive_duration=minutes,  # type: ignore[arg-type]
            )
        except discord.HTTPException as exc:
            log.info("cannot open a thread on message %s (%s); answering as a reply", facts.message_id, exc)
            return None
        guild_id = int(facts.guild_id) if facts.guild_id else None
        thread_id = int(data.get("id") or facts.message_id)  # Discord gives the thread the message's id
        return self.client.get_partial_messageable(thread_id, guild_id=guild_id, type=discord.ChannelType.public_thread)

    async def _answer(
        self,
        incoming: IncomingMessage,
        sink: ReplySink[discord.Message],
        *,
        remember_thread: tuple[str, str] | None = None,
        reply_root: str | None = None,
    ) -> None:
        events = self.engine.handle(incoming)
        first = await anext(events, None)
        if first is None:
            return
        if remember_thread is not None:
            await self.memory.remember_thread(*remember_thread)
        await self._render(incoming, sink, _prepend(first, events), reply_root=reply_root)

    async def _render(
        self,
        incoming: IncomingMessage,
        sink: ReplySink[discord.Message],
        events: AsyncIterator[ReplyEvent],
        *,
        reply_root: str | None = None,
    ) -> None:
        live: LiveReply[discord.Message] = LiveReply(sink, interval=self.options.edit_interval)
        try:
            await live.run(events)
        except Exception:
            log.exception("answer to %s failed", incoming.event_id)
            try:
                await live.fail(FAILURE_NOTE.format(ref=incoming.event_id.rsplit(":", 1)[-1]))
            except Exception:
                log.exception("could not tell the user that %s failed", incoming.event_id)
        finally:
            if reply_root is not None and live.handles:
                await self.memory.remember_replies([str(h.id) for h in live.handles], reply_root)

    # ------------------------------------------------------------------------------ interactions

    async def on_command(self, interaction: discord.Interaction, line: str, public: bool) -> None:
        """A ``/bothbot`` subcommand: defer at once, then run it in the core and follow up."""
        try:
            await interaction.response.defer(ephemeral=not public, thinking=True)
        except discord.HTTPException as exc:  # too late (10062) or already acknowledged elsewhere (40060)
            log.warning("could not acknowledge interaction %s: %s", interaction.id, exc)
            return
        except Exception:
            # Discord accepted the acknowledgement (2xx) but its response body could not be read:
            # the interaction is deferred, so carry on and follow up.
            log.warning("unexpected response to the acknowledgement of %s", interaction.id, exc_info=True)
        try:
            incoming = await self._command_message(interaction, line)
        except Exception:
            log.exception("failed to read interaction %s", interaction.id)
            await interaction.followup.send(FAILURE_NOTE.format(ref=interaction.id), ephemeral=True)
            return
        live: LiveReply[discord.WebhookMessage] = LiveReply(
            InteractionSink(interaction, ephemeral=not public), interval=self.options.edit_interval
        )
        try:
            final = await live.run(self.engine.handle(incoming))
            if final is None:
                await interaction.delete_original_response()
        except Exception:
            log.exception("command %r (interaction %s) failed", line.split(" ", 1)[0], interaction.id)
            try:
                await live.fail(FAILURE_NOTE.format(ref=interaction.id))
            except Exception:
                log.exception("could not tell the user that interaction %s failed", interaction.id)

    async def _command_message(self, interaction: discord.Interaction, line: str) -> IncomingMessage:
        channel = interaction.channel
        channel_id = str(interaction.channel_id or (channel.id if channel is not None else 0))
        guild_id = str(interaction.guild_id) if interaction.guild_id else None
        parent: str | None = None
        if isinstance(channel, discord.Thread):
            parent = str(channel.parent_id)
        elif guild_id is not None and not isinstance(channel, discord.abc.GuildChannel):  # unknown to the cache
            parent = await self.memory.thread_parent(channel_id)
        user = interaction.user
        # the member's role ids as Discord sent them (Member.roles would drop roles not in the cache)
        role_ids = [str(r) for r in getattr(user, "_roles", ())]
        permissions = interaction.permissions.value
        if not permissions and isinstance(user, discord.Member):
            # Discord always sends the member's resolved permissions; fall back to the role cache
            permissions = user.guild_permissions.value
        admin = is_admin(permissions, role_ids, self.options.admin_roles, in_guild=guild_id is not None)
        return command_to_incoming(
            interaction_id=str(interaction.id),
            guild_id=guild_id,
            channel_id=channel_id,
            parent_id=parent,
            user_id=str(user.id),
            user_name=user.display_name,
            line=line,
            is_admin=admin,
        )

    async def on_interaction(self, interaction: discord.Interaction) -> None:
        """Feedback buttons, stateless: the custom id carries the vote and the trace id."""
        if interaction.type is not discord.InteractionType.component:
            return
        data: Mapping[str, Any] = interaction.data or {}
        custom_id = str(data.get("custom_id", ""))
        parsed = parse_feedback_custom_id(custom_id)
        if parsed is None:
            return
        value, trace_id = parsed
        try:
            stored = await self.engine.record_feedback(
                trace_id, user=str(interaction.user.id), value=value, platform="discord"
            )
            text = (
                f"Thanks — your {'👍' if value == 'up' else '👎'} is recorded."
                if stored
                else "That answer is too old to rate now, so nothing was recorded."
            )
        except Exception:
            log.exception("failed to record feedback on trace %s", trace_id)
            text = "Sorry — I couldn't record your feedback just now. Please try again."
        try:
            await interaction.response.send_message(text, ephemeral=True)
        except Exception as exc:
            log.warning("could not acknowledge feedback click %s: %s", interaction.id, exc)
