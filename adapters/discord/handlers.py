"""What the bot does with each Discord event: messages, slash commands, feedback clicks.

The adapter boundaries (``adapters.common``): every event handler runs inside the in-flight
tracker's guard (logs once, with the event id; drained on shutdown), and every answer inside the
live message's boundary (logs once with the trace id, tells the user something short and true).
The engine is called with one :class:`IncomingMessage`; if it yields nothing (an event already
handled by another replica or shard), nothing is posted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import discord

from adapters.base import EnginePort
from adapters.common.inflight import InFlight
from adapters.common.memory import STORE_DOWN_ERRORS, lookup
from adapters.common.texts import FEEDBACK_FAILED, MEMORY_UNAVAILABLE, answer_failed, feedback_reply
from adapters.discord import compat
from adapters.discord.convert import (
    DM_WORKSPACE,
    MessageFacts,
    addressed,
    command_to_incoming,
    created_thread_id,
    facts_from_message,
    is_admin,
    mentions_bot,
    message_to_incoming,
    parse_feedback_custom_id,
    reply_reference,
    slash_command,
    thread_name,
)
from adapters.discord.memory import ConversationMemory
from adapters.discord.render import SEND_ERRORS, LiveReply, ReplySink
from adapters.discord.settings import reply_mode
from adapters.discord.sinks import ChannelSink, InteractionSink, Sent
from bot.messages import FinalAnswer, IncomingMessage, ReplyEvent

log = logging.getLogger(__name__)

_THREAD_ERRORS: tuple[type[Exception], ...] = (*SEND_ERRORS, KeyError, TypeError, ValueError)
"""Opening a thread: refused, or answered with something unreadable (the answer then goes as a reply)."""

ACK_WITHIN = 1.0
"""Seconds the de-duplication claim may take before an interaction is acknowledged regardless."""
UNKNOWN_COMMAND = "I don't know that command (Discord may still show an old version). Try `/bothbot help`."
UNKNOWN_BUTTON = "That button is not one I can act on, so nothing was recorded."


@dataclass(frozen=True, slots=True)
class AdapterOptions:
    admin_roles: Sequence[str] = ()
    edit_interval: float = 1.0
    thread_archive_minutes: int = 1440
    compat: bool = False  # BOTHBOT_DISCORD_COMPAT (see compat.py)


def public_role_ids(user: discord.User | discord.Member) -> list[str]:
    """The member's roles (Discord's guild is always cached: GUILD_CREATE follows READY)."""
    if not isinstance(user, discord.Member):
        return []
    return [str(role.id) for role in user.roles if not role.is_default()]


def _involved(message: discord.Message, facts: MessageFacts, bot_id: str, roles: Sequence[str]) -> bool:
    """Whether the payload alone shows that ``message`` is for the bot, when the state store can't
    say (thread registry, reply links and channel settings all live there).

    A mention (or DM) is; so is a message with content in a thread the bot owns (it opens a thread
    on each question it answers, and discord.py knows the owner from THREAD_CREATE), and a reply to
    one of the bot's messages (Discord sends the replied-to message along). Anything else (a thread
    the cache does not know, someone else's thread) can't be told apart from talk not meant for the
    bot, so the bot stays silent there, as it would for talk not meant for it. The channel's
    follow-up setting can't be read either: in its own thread the bot says it can't answer.
    """
    if facts.is_direct or mentions_bot(facts, bot_id, roles):
        return True
    if not facts.content.strip():
        return False
    channel = message.channel
    if isinstance(channel, discord.Thread) and channel.owner_id is not None and str(channel.owner_id) == bot_id:
        return True
    return facts.reference_author_id == bot_id


async def aclose(events: AsyncIterator[ReplyEvent]) -> None:
    close = getattr(events, "aclose", None)  # async generators: release what the engine holds
    if close is not None:
        await close()


async def _prepend(first: ReplyEvent, rest: AsyncIterator[ReplyEvent]) -> AsyncIterator[ReplyEvent]:
    yield first
    async for event in rest:
        yield event


class DiscordAdapter:
    def __init__(
        self, client: discord.Client, engine: EnginePort, memory: ConversationMemory, options: AdapterOptions
    ) -> None:
        self.client = client
        self.engine = engine
        self.memory = memory
        self.options = options
        # discord.py runs each event handler in a task of its own: tracked while it works
        self.inflight = InFlight("discord")

    async def drain(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for the answers in progress, then cancel and await the
        rest; return how many did not finish.

        On SIGTERM (a deploy) the answers being written are finished before the connection closes,
        instead of leaving a status line where the answer should be.
        """
        return await self.inflight.drain(timeout)

    # ------------------------------------------------------------------------------ messages

    async def on_message(self, message: discord.Message) -> None:
        with self.inflight.tracking():
            await self.inflight.guard(self._on_message(message), "message", ref=f"{message.channel.id}/{message.id}")

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
        try:
            if not facts.is_direct:
                if not isinstance(message.channel, discord.abc.GuildChannel):  # a thread, or not in cache
                    stored_parent = await self.memory.parent(facts.channel_id)
                    ours = stored_parent is not None
                    parent = parent or stored_parent
                if parent is None and facts.reference_id:
                    root = await self.memory.reply_root(facts.reference_id)
            why = addressed(facts, bot_id, bot_role_ids=roles, in_bot_thread=ours, replies_to_bot=root is not None)
            if why is None:
                return
            if why in ("followup", "reply_followup") and not await self._followups_on(
                facts, parent or facts.channel_id
            ):
                return
        except STORE_DOWN_ERRORS as exc:
            if _involved(message, facts, bot_id, roles):
                sink = ChannelSink(self.client.http, facts.channel_id, reference=reply_reference(facts))
                await self._memory_down(facts.message_id, sink, exc)
            else:
                log.info("message %s: can't tell whether it is for me; staying silent (%s)", facts.message_id, exc)
            return
        http = self.client.http
        mention = why == "mention"
        if why == "dm":
            incoming = message_to_incoming(facts, bot_id, channel_id=facts.channel_id, thread=None)
            await self._answer(incoming, ChannelSink(http, facts.channel_id))
            return
        reference = reply_reference(facts)
        if parent is not None:  # inside a thread: the thread is the conversation, its parent the channel
            incoming = message_to_incoming(
                facts, bot_id, channel_id=parent, thread=facts.channel_id, bot_role_ids=roles, is_mention=mention
            )
            remember = (facts.channel_id, parent) if ours else None
            sink = ChannelSink(http, facts.channel_id, reference=reference)
            await self._answer(incoming, sink, remember_thread=remember)
            return
        if root is not None:  # a reply to one of the bot's answers: continue that conversation
            incoming = message_to_incoming(
                facts, bot_id, channel_id=facts.channel_id, thread=root, bot_role_ids=roles, is_mention=mention
            )
            sink = ChannelSink(http, facts.channel_id, reference=reference)
            await self._answer(incoming, sink, reply_root=root)
            return

        channel_key = f"discord:{facts.guild_id}:{facts.channel_id}"
        as_reply = ChannelSink(http, facts.channel_id, reference=reference, ping_author=True)
        incoming = message_to_incoming(
            facts, bot_id, channel_id=facts.channel_id, thread=facts.message_id, bot_role_ids=roles, is_mention=True
        )
        events = self.engine.handle(incoming)
        try:
            mode = reply_mode((await lookup(self.engine.channel_settings(channel_key), "channel settings")).options)
            first = await anext(events, None)
        except STORE_DOWN_ERRORS as exc:
            await aclose(events)
            await self._memory_down(facts.message_id, as_reply, exc)
            return
        if first is None:
            return  # already handled elsewhere
        if mode == "thread" and not isinstance(first, FinalAnswer):  # a one-line refusal needs no thread
            thread_id = await self._open_thread(facts, incoming.text)
            if thread_id is not None:
                await self.memory.remember(thread_id, parent=facts.channel_id)
                sink = ChannelSink(http, thread_id, fallback=as_reply)  # posting there refused: reply instead
                await self._render(incoming, sink, _prepend(first, events), reply_root=facts.message_id)
                return
        await self._render(incoming, as_reply, _prepend(first, events), reply_root=facts.message_id)

    async def _followups_on(self, facts: MessageFacts, channel_id: str) -> bool:
        key = f"discord:{facts.guild_id or DM_WORKSPACE}:{channel_id}"
        return (await lookup(self.engine.channel_settings(key), "channel settings")).thread_followups

    async def _memory_down(self, message_id: str, sink: ReplySink[Sent], exc: Exception) -> None:
        """The state store is unreachable and the message is for the bot: say so, briefly (one
        warning line; answering needs the store: dedup, history, settings)."""
        log.warning("cannot answer message %s: the state store is unreachable: %s", message_id, exc)
        live: LiveReply[Sent] = LiveReply(sink, interval=self.options.edit_interval)
        try:
            await live.fail(MEMORY_UNAVAILABLE)
        except SEND_ERRORS as refused:
            log.warning("could not tell the user that message %s can't be answered: %s", message_id, refused)

    async def _open_thread(self, facts: MessageFacts, question: str) -> str | None:
        """A public thread on the question; None (answer as a reply instead) when that fails.

        Any failure counts — a refusal (no permission, 403), a server without threads (404, with
        or without a JSON body), an unreadable response — since the answer matters, not the thread.
        """
        try:
            data = await self.client.http.start_thread_with_message(
                facts.channel_id,
                facts.message_id,
                name=thread_name(question, facts.author_name),
                auto_archive_duration=self.options.thread_archive_minutes,  # type: ignore[arg-type]
            )
        except _THREAD_ERRORS as exc:  # refused, or an answer it can't read
            log.info("cannot open a thread on message %s (%s); answering as a reply", facts.message_id, exc)
            return None
        return created_thread_id(data, facts.message_id)

    async def _answer(
        self,
        incoming: IncomingMessage,
        sink: ReplySink[Sent],
        *,
        remember_thread: tuple[str, str] | None = None,
        reply_root: str | None = None,
    ) -> None:
        events = self.engine.handle(incoming)
        try:
            first = await anext(events, None)
        except STORE_DOWN_ERRORS as exc:
            await aclose(events)
            await self._memory_down(incoming.event_id.rsplit(":", 1)[-1], sink, exc)
            return
        if first is None:
            return
        if remember_thread is not None:
            thread_id, parent_id = remember_thread
            await self.memory.remember(thread_id, parent=parent_id)
        await self._render(incoming, sink, _prepend(first, events), reply_root=reply_root)

    async def _render(
        self,
        incoming: IncomingMessage,
        sink: ReplySink[Sent],
        events: AsyncIterator[ReplyEvent],
        *,
        reply_root: str | None = None,
    ) -> None:
        live: LiveReply[Sent] = LiveReply(sink, interval=self.options.edit_interval)
        try:
            await live.answer(events, ref=incoming.event_id.rsplit(":", 1)[-1])
        finally:
            ids = [h.message_id for h in live.handles if h.message_id]
            if reply_root is not None:
                await self.memory.remember_replies(ids, reply_root)

    # ------------------------------------------------------------------------------ interactions

    async def on_command(self, interaction: discord.Interaction, line: str, public: bool) -> None:
        """A ``/bothbot`` subcommand: claim it, acknowledge at once, run it in the core, follow up.

        The claim (the engine's de-duplication in Redis, a millisecond) comes before the
        acknowledgement, so an interaction delivered twice, or to two replicas, is acknowledged
        and answered once. Should the claim be slow, the acknowledgement goes out anyway after
        ``ACK_WITHIN`` seconds: Discord drops interactions not acknowledged within 3.
        """
        try:
            incoming: IncomingMessage | None = await self._command_message(interaction, line)
        except Exception:  # boundary: a command that can't be read is still answered, truthfully
            log.exception("failed to read interaction %s", interaction.id)
            incoming = None
        if incoming is None:
            if await self._defer(interaction, public):
                try:
                    await InteractionSink(interaction, ephemeral=True).post(answer_failed(str(interaction.id)))
                except SEND_ERRORS as exc:
                    log.warning("could not tell the user that interaction %s failed: %s", interaction.id, exc)
            return
        events = self.engine.handle(incoming)
        first = asyncio.ensure_future(anext(events, None))
        await asyncio.wait({first}, timeout=ACK_WITHIN)
        if first.done() and first.exception() is None and first.result() is None:
            log.info("interaction %s was already answered; not acknowledging it again", interaction.id)
            return
        if not await self._defer(interaction, public):
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            await aclose(events)
            return
        live: LiveReply[Sent] = LiveReply(
            InteractionSink(interaction, ephemeral=not public), interval=self.options.edit_interval
        )

        async def reply() -> AsyncIterator[ReplyEvent]:
            head = await first
            if head is None:  # claimed elsewhere while we waited: drop the "thinking…" message
                try:
                    await interaction.delete_original_response()
                except SEND_ERRORS as exc:
                    log.info("could not drop the placeholder of interaction %s: %s", interaction.id, exc)
                return
            yield head
            async for event in events:
                yield event

        log.debug("running command %r (interaction %s)", line.split(" ", 1)[0], interaction.id)
        await live.answer(reply(), ref=str(interaction.id))

    async def _defer(self, interaction: discord.Interaction, public: bool) -> bool:
        """Acknowledge with "bothbot is thinking…"; False when Discord refuses (then nothing follows)."""
        try:
            await interaction.response.defer(ephemeral=not public, thinking=True)
        except discord.HTTPException as exc:  # too late (10062) or already acknowledged elsewhere (40060)
            log.warning("could not acknowledge interaction %s: %s", interaction.id, exc)
            return False
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            # The server accepted the acknowledgement (2xx) but its response body could not be read
            # (a server that ignores ``?with_response``): the interaction is deferred, so carry on.
            log.info("acknowledged %s; its response was not readable (%r)", interaction.id, exc)
        return True

    async def _command_message(self, interaction: discord.Interaction, line: str) -> IncomingMessage:
        channel = interaction.channel
        channel_id = str(interaction.channel_id or (channel.id if channel is not None else 0))
        guild_id = str(interaction.guild_id) if interaction.guild_id else None
        parent: str | None = None
        if isinstance(channel, discord.Thread):
            parent = str(channel.parent_id)
        elif guild_id is not None:  # a thread the cache does not know may still be one the bot opened
            parent = await self.memory.parent(channel_id)
        user = interaction.user
        role_ids = compat.member_role_ids(user) if self.options.compat else public_role_ids(user)
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
        """Slash commands (read by :func:`slash_command`, so odd shapes still work) and feedback buttons."""
        with self.inflight.tracking():
            if interaction.type is discord.InteractionType.application_command:
                await self.inflight.guard(self._on_slash(interaction), "slash command", ref=str(interaction.id))
            elif interaction.type is discord.InteractionType.component:
                await self.inflight.guard(self._on_click(interaction), "button click", ref=str(interaction.id))

    async def _on_slash(self, interaction: discord.Interaction) -> None:
        data: Mapping[str, Any] = interaction.data or {}
        if data.get("type", 1) != 1:
            return  # a context-menu command: not one of ours
        command = slash_command(data)
        if command is None:
            log.info("unknown slash command in interaction %s: %s", interaction.id, data.get("name"))
            try:
                await interaction.response.send_message(UNKNOWN_COMMAND, ephemeral=True)
            except SEND_ERRORS as exc:
                log.warning("could not answer interaction %s: %s", interaction.id, exc)
            return
        await self.on_command(interaction, command.line, command.public)

    async def _on_click(self, interaction: discord.Interaction) -> None:
        """Feedback buttons, stateless: the custom id carries the vote and the trace id."""
        data: Mapping[str, Any] = interaction.data or {}
        custom_id = str(data.get("custom_id", ""))
        parsed = parse_feedback_custom_id(custom_id)
        if parsed is None:  # not a button of ours, or a forged one: say so rather than leave it spinning
            log.info("refused component interaction %s with an unknown custom id", interaction.id)
            try:
                await interaction.response.send_message(UNKNOWN_BUTTON, ephemeral=True)
            except SEND_ERRORS as exc:
                log.warning("could not answer interaction %s: %s", interaction.id, exc)
            return
        value, trace_id = parsed
        try:
            stored = await self.engine.record_feedback(
                trace_id, user=str(interaction.user.id), value=value, platform="discord"
            )
            text = feedback_reply(value, stored)
        except Exception:  # boundary: the click is answered, truthfully, whatever failed
            log.exception("failed to record feedback on trace %s", trace_id)
            text = FEEDBACK_FAILED
        try:
            await interaction.response.send_message(text, ephemeral=True)
        except SEND_ERRORS as exc:
            log.warning("could not acknowledge feedback click %s: %s", interaction.id, exc)
