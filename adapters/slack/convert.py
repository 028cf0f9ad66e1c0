"""Pure functions: Slack payloads (Events API, slash commands, block actions) → core types.

Nothing here does I/O. The wire formats are described once, as TypedDicts, and parsed here only.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, NotRequired, TypedDict

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
    parent_is_bot: bool = False  # a follow-up in a thread the bot started


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


def _str(value: object) -> str:
    """A payload field as text: Slack sends strings; anything else (absent, null, a number, an
    object) is treated as absent, so a malformed payload is ignored rather than crashing."""
    return value if isinstance(value, str) else ""


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _authorization(body: Mapping[str, Any]) -> dict[str, Any]:
    """The first of ``authorizations`` (the installation the event was delivered for), if any."""
    authorizations = body.get("authorizations")
    if isinstance(authorizations, list) and authorizations:
        return _dict(authorizations[0])
    return {}


def bot_user_of(body: Mapping[str, Any], bot: BotIdentity) -> str:
    """The bot's user id: from ``auth.test``, else from the event's ``authorizations`` (when the
    installation there is a bot), else unknown (``""``)."""
    if bot.user_id:
        return bot.user_id
    auth = _authorization(body)
    return _str(auth.get("user_id")) if auth.get("is_bot") else ""


def workspace_of(body: Mapping[str, Any], default: str | None = None) -> str:
    """The workspace an event belongs to, the same for every copy and retry of it.

    The outer ``team_id`` (always sent by Slack), else the installation's team, else ``default``
    (the bot's own workspace from ``auth.test``), else the team inside the event.
    """
    event = _dict(body.get("event"))
    for candidate in (
        body.get("team_id"),
        _authorization(body).get("team_id"),
        default,
        event.get("team"),
        event.get("user_team"),
    ):
        if _str(candidate):
            return _str(candidate)
    return "T0"


_LEADING_USER_MENTION = re.compile(r"^\s*<@[UW][A-Z0-9]+(?:\|[^>]*)?>")


def classify_event(body: Mapping[str, Any], bot: BotIdentity) -> Classified:
    """Decide what an ``app_mention`` or ``message`` event asks of the bot.

    - ``answer``: a mention (either copy of it) or a DM — the message is ready for the engine.
    - ``followup``: a reply in a channel thread without a mention; answer only if the bot is
      part of that thread (``parent_is_bot``, or a thread it answered in) and the channel allows
      follow-ups (the caller checks both).
    - ``ignore``: the bot's own posts, other bots, edits, deletions, malformed events and
      everything else.
    """
    if not isinstance(body, Mapping):
        return Classified("ignore", "body is not an object")
    raw_event = body.get("event")
    if not isinstance(raw_event, dict):
        return Classified("ignore", "no event object")
    event = raw_event
    kind = _str(event.get("type"))
    if kind not in ("app_mention", "message"):
        return Classified("ignore", f"event type {kind!r}")
    subtype = _str(event.get("subtype"))
    if subtype not in _ANSWERABLE_SUBTYPES or ("subtype" in event and not isinstance(event["subtype"], str)):
        return Classified("ignore", f"subtype {subtype!r}")
    bot_user = bot_user_of(body, bot)
    user = _str(event.get("user"))
    if event.get("bot_id") or not user:
        own = (bot.bot_id is not None and event.get("bot_id") == bot.bot_id) or (bool(user) and user == bot_user)
        return Classified("ignore", "own message" if own else "bot message")
    if bot_user and user == bot_user:
        return Classified("ignore", "own message")
    channel = _str(event.get("channel"))
    ts = _str(event.get("ts"))
    if not channel or not ts:
        return Classified("ignore", "no channel or ts")

    raw_text = _str(event.get("text"))
    workspace = workspace_of(body, bot.team_id)
    channel_type = _str(event.get("channel_type"))
    is_direct = channel_type == "im" or (not channel_type and channel.startswith("D"))
    mentioned = kind == "app_mention" or (bool(bot_user) and mentions(raw_text, bot_user))
    if kind == "app_mention" and not bot_user:
        # Who the bot is is unknown: an app_mention starts with the bot's mention, drop that one.
        raw_text = _LEADING_USER_MENTION.sub(" ", raw_text, count=1)
    thread_ts = _str(event.get("thread_ts")) or None
    text = plain_text(raw_text, bot_user or None)

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
        parent_is_bot = bool(bot_user) and _str(event.get("parent_user_id")) == bot_user
        return Classified("followup", "thread reply without mention", message, parent_is_bot=parent_is_bot)
    return Classified("ignore", "channel message without mention")


def malformed(body: object) -> str | None:
    """Why a request body cannot be a Slack request (None when its shape is plausible).

    Checked before bolt sees a request: an ``event_callback`` whose ``event`` is not an object, or
    a body that is not an object at all, would make bolt's middleware raise and answer 500 —
    which Slack meets with retries of the same broken body.
    """
    if not isinstance(body, Mapping):
        return "body is not an object"
    if body.get("type") == "event_callback" or "event" in body:
        event = body.get("event")
        if not isinstance(event, dict):
            return "event_callback without an event object"
        if not isinstance(event.get("type"), str):
            return "event without a type"
    for name in ("team", "user", "channel", "enterprise", "container", "view", "message"):
        if name in body and not isinstance(body[name], dict | str | None):
            return f"{name} is neither an object nor a string"
    return None


def command_text(text: str) -> str:
    """Slash command text → core command line; an empty invocation asks for help."""
    cleaned = plain_text(text)
    return cleaned or "help"


def parse_slash_command(body: Mapping[str, Any]) -> SlashCommand | None:
    """The form fields of a slash command, or None when the ones the bot needs are missing."""
    if not isinstance(body, Mapping):
        return None
    user, channel = _str(body.get("user_id")), _str(body.get("channel_id"))
    if not user or not channel:
        return None
    command: SlashCommand = {
        "command": _str(body.get("command")),
        "text": _str(body.get("text")),
        "user_id": user,
        "channel_id": channel,
        "team_id": _str(body.get("team_id")),
        "trigger_id": _str(body.get("trigger_id")),
    }
    if _str(body.get("response_url")):
        command["response_url"] = _str(body.get("response_url"))
    if _str(body.get("user_name")):
        command["user_name"] = _str(body.get("user_name"))
    if _str(body.get("channel_name")):
        command["channel_name"] = _str(body.get("channel_name"))
    return command


def message_from_command(
    payload: SlashCommand, *, is_admin: bool, default_team: str | None = None
) -> IncomingMessage:
    """``/bothbot model tuned`` → IncomingMessage(command=True, text="model tuned")."""
    workspace = payload.get("team_id") or default_team or "T0"
    channel = payload["channel_id"]
    trigger = payload.get("trigger_id") or ""
    return IncomingMessage(
        platform="slack",
        workspace=workspace,
        channel=channel,
        user=payload["user_id"],
        text=command_text(payload.get("text", "")),
        event_id=f"slack:{workspace}:command:{trigger}" if trigger else "",
        thread=None,
        is_direct=channel.startswith("D"),
        mentions_bot=True,
        is_admin=is_admin,
        command=True,
        user_name=payload.get("user_name"),
    )


def workspace_admin(users_info: Mapping[str, Any]) -> bool:
    """Whether a ``users.info`` answer describes a workspace admin or owner."""
    user = _dict(users_info.get("user"))
    return any(user.get(flag) is True for flag in ("is_admin", "is_owner", "is_primary_owner"))


def feedback_value(action_id: str) -> FeedbackValue | None:
    if action_id == FEEDBACK_UP:
        return "up"
    if action_id == FEEDBACK_DOWN:
        return "down"
    return None


@dataclass(frozen=True, slots=True)
class FeedbackClick:
    """A 👍/👎 click on an answer: who, which answer (trace id), and where to thank them."""

    value: FeedbackValue
    trace_id: str
    user: str
    channel: str
    thread_ts: str | None
    response_url: str | None


def parse_feedback(body: Mapping[str, Any]) -> FeedbackClick | None:
    """A ``block_actions`` payload of one of our buttons, or None when it isn't one."""
    if not isinstance(body, Mapping):
        return None
    actions = body.get("actions")
    action = _dict(actions[0]) if isinstance(actions, list) and actions else {}
    value = feedback_value(_str(action.get("action_id")))
    trace_id = _str(action.get("value"))
    user = _str(_dict(body.get("user")).get("id"))
    if value is None or not trace_id or not user:
        return None
    channel = _str(_dict(body.get("channel")).get("id")) or _str(_dict(body.get("container")).get("channel_id"))
    message = _dict(body.get("message"))
    thread = _str(message.get("thread_ts")) or _str(message.get("ts")) or None
    return FeedbackClick(
        value=value,
        trace_id=trace_id,
        user=user,
        channel=channel,
        thread_ts=thread,
        response_url=_str(body.get("response_url")) or None,
    )
