"""Pure functions: Discord facts → :class:`~bot.messages.IncomingMessage`, command lines, custom ids.

discord.py objects are read in exactly one place (:func:`facts_from_message` and
:func:`facts_from_interaction` in ``client.py`` call these with plain values), so everything here
is testable without a gateway and no platform payload reaches ``bot/``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import discord

from adapters.discord.specs import BY_NAME, COMMANDS
from bot.command_specs import CommandSpec
from bot.messages import FeedbackValue, IncomingMessage

GROUP_NAME = "bothbot"
"""The one slash command; everything else is a subcommand of it."""

QUESTION = next(spec for spec in COMMANDS if spec.question)
"""The command free text becomes (``ask``)."""

DM_WORKSPACE = "@me"
"""Workspace of direct messages (Discord's own URLs use ``/channels/@me/<id>``)."""

THREAD_NAME_LIMIT = 100
ADMINISTRATOR = 1 << 3
MANAGE_GUILD = 1 << 5

FEEDBACK_PREFIX = "bothbot:fb"
FEEDBACK_ID = re.compile(r"bothbot:fb:(?P<value>up|down):(?P<trace>[A-Za-z0-9_-]{1,80})")
"""custom_id of a feedback button: stable, so a click is understood after a restart."""

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")


@dataclass(frozen=True, slots=True)
class MessageFacts:
    """What the adapter needs to know about one MESSAGE_CREATE, as plain values."""

    message_id: str
    channel_id: str
    guild_id: str | None
    author_id: str
    author_name: str | None
    author_is_bot: bool
    content: str
    mentioned_user_ids: tuple[str, ...] = ()
    mentioned_role_ids: tuple[str, ...] = ()
    mention_names: Mapping[str, str] | None = None
    parent_id: str | None = None  # set when the channel is a thread
    reference_id: str | None = None  # the message this one replies to
    reference_author_id: str | None = None
    is_system: bool = False

    @property
    def is_direct(self) -> bool:
        return self.guild_id is None


Addressed = Literal["dm", "mention", "followup", "reply_followup"]


def mentions_bot(facts: MessageFacts, bot_id: str, bot_role_ids: Iterable[str] = ()) -> bool:
    """A user or role mention of the bot (the bot's managed role is often picked by mistake)."""
    if bot_id in facts.mentioned_user_ids:
        return True
    roles = set(bot_role_ids)
    return bool(roles and roles.intersection(facts.mentioned_role_ids))


def clean_text(
    content: str, bot_id: str, bot_role_ids: Iterable[str] = (), names: Mapping[str, str] | None = None
) -> str:
    """Drop mentions of the bot; show other user mentions as ``@name`` so the model can read them."""
    roles = set(bot_role_ids)
    names = names or {}

    def user(match: re.Match[str]) -> str:
        uid = match.group(1)
        if uid == bot_id:
            return ""
        return f"@{names[uid]}" if uid in names else match.group(0)

    def role(match: re.Match[str]) -> str:
        return "" if match.group(1) in roles else match.group(0)

    text = _ROLE_MENTION.sub(role, _USER_MENTION.sub(user, content))
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def addressed(
    facts: MessageFacts,
    bot_id: str,
    *,
    bot_role_ids: Iterable[str] = (),
    in_bot_thread: bool = False,
    replies_to_bot: bool = False,
) -> Addressed | None:
    """Why the bot should answer this message, or None to stay silent.

    Bots (itself included) and system messages are never answered. Follow-ups (in a thread the bot
    created, or a reply to one of its answers) need content, which Discord only sends for them
    with the message-content intent; without it their content is empty and they are skipped.
    """
    if facts.author_is_bot or facts.author_id == bot_id or facts.is_system:
        return None
    if facts.is_direct:
        return "dm"
    if mentions_bot(facts, bot_id, bot_role_ids):
        return "mention"
    if not facts.content.strip():
        return None
    if in_bot_thread:
        return "followup"
    if replies_to_bot:
        return "reply_followup"
    return None


def message_to_incoming(
    facts: MessageFacts,
    bot_id: str,
    *,
    channel_id: str,
    thread: str | None,
    bot_role_ids: Iterable[str] = (),
    is_mention: bool = False,
) -> IncomingMessage:
    """The engine's view of a message; ``channel_id``/``thread`` are resolved by the caller."""
    return IncomingMessage(
        platform="discord",
        workspace=facts.guild_id or DM_WORKSPACE,
        channel=channel_id,
        user=facts.author_id,
        text=clean_text(facts.content, bot_id, bot_role_ids, facts.mention_names),
        event_id=f"discord:message:{facts.message_id}",
        thread=thread,
        is_direct=facts.is_direct,
        mentions_bot=is_mention,
        user_name=facts.author_name,
    )


def command_to_incoming(
    *,
    interaction_id: str,
    guild_id: str | None,
    channel_id: str,
    parent_id: str | None,
    user_id: str,
    user_name: str | None,
    line: str,
    is_admin: bool,
) -> IncomingMessage:
    """A slash command as a core command line.

    In a thread the command applies to the thread's parent channel and the thread's conversation.
    At a channel's top level, ``/bothbot ask`` and ``/bothbot reset`` share a per-user conversation
    so people asking side by side do not mix their histories.
    """
    in_thread = parent_id is not None
    return IncomingMessage(
        platform="discord",
        workspace=guild_id or DM_WORKSPACE,
        channel=parent_id if in_thread and parent_id else channel_id,
        user=user_id,
        text=line,
        event_id=f"discord:interaction:{interaction_id}",
        thread=channel_id if in_thread else (None if guild_id is None else f"slash-{user_id}"),
        is_direct=guild_id is None,
        is_admin=is_admin,
        command=True,
        user_name=user_name,
    )


def command_line(name: str, *args: str | None) -> str:
    """``("model", "tuned")`` → ``"model tuned"``; arguments with spaces are quoted for the core's shlex.

    A command whose last argument takes the rest of the line (``ask``'s question) gets it verbatim.
    """
    spec = BY_NAME.get(name)
    verbatim = bool(spec and spec.args and spec.args[-1].rest)
    parts = [name]
    for arg in args:
        if arg is None or not arg.strip():
            continue
        value = arg.strip()
        if verbatim or not re.search(r"[\s'\"]", value):
            parts.append(value)  # the core takes the rest of the line verbatim
        else:
            parts.append('"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " ".join(parts)


def spec_line(spec: CommandSpec, values: Mapping[str, str]) -> str:
    """A subcommand's option values as the core's command line, following the command's spec.

    Options are read by their declared names, in the spec's order; a left-out option with a
    default gets it (``experiment`` → ``experiment show``); several words (``many``) are split on
    spaces and commas. Options under other names (a registration that differs from ours) are read
    in order: the one value of a one-argument command, or the words of all of them.
    """
    values = {name: value for name, value in values.items() if value}
    if not spec.args:
        return spec.name
    if values and not {a.name for a in spec.args} & values.keys():
        if len(spec.args) > 1:
            return " ".join([spec.name, *" ".join(values.values()).replace(",", " ").split()])
        values = {spec.args[0].name: next(iter(values.values()))}
    words: list[str | None] = []
    for arg in spec.args:
        value = values.get(arg.name) or arg.default
        if value and arg.many:
            words.extend(value.replace(",", " ").split())
        else:
            words.append(value)
    return command_line(spec.name, *words)


# ------------------------------------------------------------------------------ slash commands


@dataclass(frozen=True, slots=True)
class SlashCommand:
    line: str  # the core's command line, e.g. "model tuned"
    public: bool  # the answer is visible to the channel (``ask``), else only to the caller


def _options(node: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    options = node.get("options")
    return [o for o in options if isinstance(o, Mapping)] if isinstance(options, list) else []


def _is_subcommand(option: Mapping[str, Any]) -> bool:
    kind = option.get("type")
    if kind is not None:
        return kind in (1, 2)  # SUB_COMMAND, SUB_COMMAND_GROUP
    return "value" not in option  # a server that leaves out ``type``: options without a value nest


def option_text(value: Any) -> str:
    """An option's value as command-line text (booleans as on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value).strip()


def slash_command(data: Mapping[str, Any]) -> SlashCommand | None:
    """An APPLICATION_COMMAND interaction's ``data`` as a core command line; None for an unknown one.

    Reads ``/bothbot <sub> [option]`` as Discord sends it, and also the shapes a registration that
    differs from ours produces: a missing option (``/bothbot model`` shows the model), options
    without ``type``, an option under another name, booleans for on/off, a subcommand registered
    as its own top-level command (``/model profile:tuned``), or ``/bothbot`` with one free-text
    option holding the whole line (``/bothbot text:"model tuned"``; plain text there is a question).
    Which subcommands exist, and their options, come from the command specs (:data:`COMMANDS`).
    """
    root = str(data.get("name") or "").strip().lower()
    path = [] if root == GROUP_NAME else [root]
    options = _options(data)
    while (sub := next((o for o in options if _is_subcommand(o)), None)) is not None:
        path.append(str(sub.get("name") or "").strip().lower())
        options = _options(sub)
    values = {str(o.get("name")): option_text(o["value"]) for o in options if o.get("value") is not None}
    values = {name: value for name, value in values.items() if value}
    if not path:
        text = " ".join(values.values()).strip()
        if not text:
            return SlashCommand("help", False)
        first = text.split(maxsplit=1)[0].lower()
        if first in BY_NAME:
            return SlashCommand(first + text[len(first) :], BY_NAME[first].public)
        return SlashCommand(command_line(QUESTION.name, text), QUESTION.public)
    spec = BY_NAME.get(path[-1])
    if spec is None:
        return None
    return SlashCommand(spec_line(spec, values), spec.public)


def is_admin(permissions: int, role_ids: Iterable[str], admin_roles: Sequence[str], *, in_guild: bool = True) -> bool:
    """Manage Server (or Administrator) in the member's resolved permissions, or a configured role."""
    if not in_guild:
        return False
    if permissions & (ADMINISTRATOR | MANAGE_GUILD):
        return True
    return bool(set(admin_roles).intersection(str(r) for r in role_ids))


def sent_message_id(data: object) -> str | None:
    """The id in the response to a message create (None when the server sent no usable body)."""
    if isinstance(data, Mapping):
        value = data.get("id")
        if isinstance(value, str | int) and str(value).strip():
            return str(value)
    return None


def created_thread_id(data: object, message_id: str) -> str:
    """The id of a thread started on a message: Discord gives it the message's id."""
    return sent_message_id(data) or message_id


def reply_reference(facts: MessageFacts) -> dict[str, Any]:
    """A message reference answering ``facts``; the reply still goes out if the question is deleted."""
    reference: dict[str, Any] = {
        "message_id": facts.message_id,
        "channel_id": facts.channel_id,
        "fail_if_not_exists": False,
    }
    if facts.guild_id:
        reference["guild_id"] = facts.guild_id
    return reference


def feedback_custom_id(value: FeedbackValue, trace_id: str) -> str:
    return f"{FEEDBACK_PREFIX}:{value}:{trace_id}"


def parse_feedback_custom_id(custom_id: str) -> tuple[FeedbackValue, str] | None:
    match = FEEDBACK_ID.fullmatch(custom_id)
    if match is None:
        return None
    value: FeedbackValue = "up" if match.group("value") == "up" else "down"
    return value, match.group("trace")


def facts_from_message(message: discord.Message) -> MessageFacts:
    """The one place a :class:`discord.Message` is read.

    Works whether or not the channel is in discord.py's cache (a PartialMessageable still knows
    its guild id); a thread's parent is only known from the cache here, the caller also asks
    the adapter's Redis memory.
    """
    channel = message.channel
    guild_id = message.guild.id if message.guild is not None else getattr(channel, "guild_id", None)
    mentioned = {str(u.id) for u in message.mentions} | {str(i) for i in message.raw_mentions}
    reference = message.reference
    resolved = reference.resolved if reference is not None else None
    return MessageFacts(
        message_id=str(message.id),
        channel_id=str(message.channel.id),
        guild_id=str(guild_id) if guild_id else None,
        author_id=str(message.author.id),
        author_name=message.author.display_name,
        author_is_bot=message.author.bot or message.webhook_id is not None,
        content=message.content or "",
        mentioned_user_ids=tuple(sorted(mentioned)),
        mentioned_role_ids=tuple(str(r) for r in message.raw_role_mentions),
        mention_names={str(u.id): u.display_name for u in message.mentions},
        parent_id=str(channel.parent_id) if isinstance(channel, discord.Thread) else None,
        reference_id=str(reference.message_id) if reference is not None and reference.message_id else None,
        reference_author_id=str(resolved.author.id) if isinstance(resolved, discord.Message) else None,
        is_system=message.is_system(),
    )


def thread_name(question: str, user_name: str | None) -> str:
    """A thread title from the question's first line (Discord allows 1–100 characters)."""
    first = next((line.strip() for line in question.splitlines() if line.strip()), "")
    first = re.sub(r"\s+", " ", first)
    if not first:
        return f"Question from {user_name}"[:THREAD_NAME_LIMIT] if user_name else "Question"
    if len(first) > THREAD_NAME_LIMIT:
        first = first[: THREAD_NAME_LIMIT - 1].rstrip() + "…"
    return first
