"""Pure functions: Slack payloads (Events API, slash commands, block actions) → core types.

Nothing here does I/O. The wire formats are described once, as TypedDicts, and parsed here only.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from typing import Literal, NotRequired, TypedDict

from bot.messages import FeedbackValue, IncomingMessage

FEEDBACK_ACTION_PREFIX = "bothbot_feedback_"
FEEDBACK_UP = FEEDBACK_ACTION_PREFIX + "up"
FEEDBACK_DOWN = FEEDBACK_ACTION_PREFIX + "down"

# Message subtypes that are still a person's new post; every other subtype (edits, deletions,
# joins, bot messages, …) is ignored.
_ANSWERABLE_SUBTYPES = frozenset({"", "file_share", "thread_broadcast"})


class SlackEvent(TypedDict, total=False):
    """The ``event`` of an ``event_callback``: ``app_mention`` or ``message`` (any subtype)."""

    type: str
    subtype: str
    user: str
    bot_id: str
    app_id: str
    text: str
    ts: str
    thread_ts: str
    parent_user_id: str
    channel: str
    channel_type: str
    team: str
    user_team: str
    event_ts: str


class EventCallback(TypedDict, total=False):
    """The outer Events API body (HTTP request body, or a Socket Mode envelope's payload)."""

    type: str
    team_id: str
    api_app_id: str
    event_id: str
    event_time: int
    event: SlackEvent


class SlashCommand(TypedDict):
    """Form fields of a slash command invocation."""

    command: str
    text: str
    user_id: str
    channel_id: str
    team_id: str
    trigger_id: str
    response_url: NotRequired[str]
    user_name: NotRequired[str]
    channel_name: NotRequired[str]


@dataclass(frozen=True, slots=True)
class BotIdentity:
    """Who the bot is in its workspace, from ``auth.test``."""

    user_id: str
    bot_id: str | None = None
    team_id: str | None = None


Route = Literal["answer", "followup", "ignore"]


@dataclass(frozen=True, slots=True)
class Classified:
    """What to do with one event: answer it, answer it if the thread is the bot's, or ignore it."""

    route: Route
    reason: str
    message: IncomingMessage | None = None


def event_id_for(workspace: str, channel: str, ts: str) -> str:
    """The dedup id of one post: the ``app_mention`` and ``message`` copies (and retries) share it."""
    return f"slack:{workspace}:{channel}:{ts}"


def _mention_pattern(bot_user_id: str) -> re.Pattern[str]:
    return re.compile(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>")


_SLACK_TOKEN = re.compile(r"<([^<>]+)>")


def _decode_token(inner: str) -> str:
    target, _, label = inner.partition("|")
    if target.startswith("@"):
        return f"@{label or target[1:]}"
    if target.startswith("#"):
        return f"#{label or target[1:]}"
    if target.startswith("!subteam^"):
        return f"@{label or target.removeprefix('!subteam^')}"
    if target.startswith("!"):
        special = target[1:].split("^", 1)[0]
        return f"@{label or special}"
    if label and label != target.removeprefix("mailto:"):
        return f"{label} ({target})"
    return target.removeprefix("mailto:")


def plain_text(text: str, bot_user_id: str | None = None) -> str:
    """Slack message text → the plain text a person typed.

    Removes the bot's own mention, turns ``<@U1>``, ``<#C1|name>`` and ``<url|label>`` into
    readable text, and decodes Slack's ``&amp;`` / ``&lt;`` / ``&gt;`` escaping.
    """
    if bot_user_id:
        text = _mention_pattern(bot_user_id).sub(" ", text)
    text = _SLACK_TOKEN.sub(lambda m: _decode_token(m.group(1)), text)
    text = html.unescape(text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


def mentions(text: str, bot_user_id: str) -> bool:
    return bool(_mention_pattern(bot_user_id).search(text))


def workspace_of(body: EventCallback) -> str:
    event = body.get("event") or {}
    return body.get("team_id") or event.get("team") or event.get("user_team") or "T0"


def classify_event(body: EventCallback, bot: BotIdentity) -> Classified:
    """Decide what an ``app_mention`` or ``message`` event asks of the bot.

    - ``answer``: a mention (either copy of it) or a DM — the message is ready for the engine.
    - ``followup``: a reply in a channel thread without a mention; answer only if the bot is
      part of that thread and the channel allows follow-ups (the caller checks both).
    - ``ignore``: the bot's own posts, other bots, edits, deletions and everything else.
    """
    event: SlackEvent = body.get("event") or {}
    kind = event.get("type", "")
    if kind not in ("app_mention", "message"):
        return Classified("ignore", f"event type {kind!r}")
    subtype = event.get("subtype", "")
    if subtype not in _ANSWERABLE_SUBTYPES:
        return Classified("ignore", f"subtype {subtype!r}")
    user = event.get("user", "")
    if event.get("bot_id") or not user:
        own = event.get("bot_id") == bot.bot_id or user == bot.user_id
        return Classified("ignore", "own message" if own else "bot message")
    if user == bot.user_id:
        return Classified("ignore", "own message")
    channel = event.get("channel", "")
    ts = event.get("ts", "")
    if not channel or not ts:
        return Classified("ignore", "no channel or ts")

    raw_text = event.get("text", "")
    workspace = workspace_of(body)
    channel_type = event.get("channel_type", "")
    is_direct = channel_type == "im" or (not channel_type and channel.startswith("D"))
    mentioned = kind == "app_mention" or mentions(raw_text, bot.user_id)
    thread_ts = event.get("thread_ts") or None
    text = plain_text(raw_text, bot.user_id)

    # A DM's top level is one conversation (a thread in it is another); in a channel the answer
    # always goes in the thread of the post.
    thread = thread_ts if is_direct else thread_ts or ts

    message = IncomingMessage(
        platform="slack",
        workspace=workspace,
        channel=channel,
        user=user,
        text=text,
        event_id=event_id_for(workspace, channel, ts),
        thread=thread,
        is_direct=is_direct,
        mentions_bot=mentioned,
    )
    if is_direct or mentioned:
        return Classified("answer", "direct message" if is_direct else "mention", message)
    if kind == "message" and thread_ts and thread_ts != ts:
        return Classified("followup", "thread reply without mention", message)
    return Classified("ignore", "channel message without mention")


def command_text(text: str) -> str:
    """Slash command text → core command line; an empty invocation asks for help."""
    cleaned = plain_text(text)
    return cleaned or "help"


def message_from_command(payload: SlashCommand, *, is_admin: bool) -> IncomingMessage:
    """``/bothbot model tuned`` → IncomingMessage(command=True, text="model tuned")."""
    workspace = payload.get("team_id") or "T0"
    channel = payload["channel_id"]
    trigger = payload.get("trigger_id") or ""
    return IncomingMessage(
        platform="slack",
        workspace=workspace,
        channel=channel,
        user=payload["user_id"],
        text=command_text(payload.get("text", "")),
        event_id=f"slack:{workspace}:command:{trigger}",
        thread=None,
        is_direct=channel.startswith("D"),
        mentions_bot=True,
        is_admin=is_admin,
        command=True,
        user_name=payload.get("user_name"),
    )


def feedback_value(action_id: str) -> FeedbackValue | None:
    if action_id == FEEDBACK_UP:
        return "up"
    if action_id == FEEDBACK_DOWN:
        return "down"
    return None
