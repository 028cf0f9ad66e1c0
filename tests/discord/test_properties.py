"""Property-based: any interaction or message payload becomes an IncomingMessage or a refusal, never an exception."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.discord.convert import (
    GROUP_NAME,
    MessageFacts,
    SlashCommand,
    addressed,
    command_to_incoming,
    created_thread_id,
    feedback_custom_id,
    message_to_incoming,
    parse_feedback_custom_id,
    sent_message_id,
    slash_command,
)
from adapters.discord.payloads import normalize_event
from bot.command_specs import specs_for
from bot.commands import split_command
from bot.messages import IncomingMessage

_NAMES = [s.name for s in specs_for("discord")]
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.text(max_size=30),
    st.sampled_from([GROUP_NAME, *_NAMES, "profile", "question", "value", "name", "options", "type"]),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["name", "type", "value", "options", "id", "focused"]) | st.text(max_size=8),
                        inner, max_size=5),
    ),
    max_leaves=25,
)
_OPTION = st.recursive(
    st.fixed_dictionaries(
        {"name": st.sampled_from(["profile", "question", "names", "value", "x", ""]) | st.text(max_size=10)},
        optional={"type": st.integers(min_value=0, max_value=12) | _SCALARS, "value": _SCALARS},
    ),
    lambda inner: st.fixed_dictionaries(
        {"name": st.sampled_from(_NAMES) | st.text(max_size=10), "options": st.lists(inner | _JSON, max_size=3)},
        optional={"type": st.sampled_from([1, 2]) | _SCALARS},
    ),
    max_leaves=10,
)
_COMMAND_DATA = st.one_of(
    st.dictionaries(st.text(max_size=10), _JSON, max_size=5),
    st.fixed_dictionaries(
        {"name": st.sampled_from([GROUP_NAME, *_NAMES]) | _SCALARS},
        optional={"type": _SCALARS, "options": st.lists(_OPTION | _JSON, max_size=3) | _JSON},
    ),
)
_EXAMPLES = settings(max_examples=200, deadline=None)


@given(_COMMAND_DATA, st.one_of(st.none(), st.text(min_size=1, max_size=20)), st.booleans())
@_EXAMPLES
def test_any_slash_command_payload_is_a_command_line_or_refused(
    data: dict[str, Any], guild: str | None, admin: bool
) -> None:
    command = slash_command(data)
    if command is None:
        return  # refused: the handler answers "I don't know that command"
    assert isinstance(command, SlashCommand)
    name, _ = split_command(command.line)
    assert name
    msg = command_to_incoming(
        interaction_id="1", guild_id=guild, channel_id="2", parent_id=None, user_id="3", user_name=None,
        line=command.line, is_admin=admin,
    )
    assert isinstance(msg, IncomingMessage) and msg.command


@given(st.text(max_size=120) | st.sampled_from(["bothbot:fb:up:", "bothbot:fb:down:x", "bothbot:fb:up:a b"]))
@_EXAMPLES
def test_any_custom_id_is_a_vote_or_refused(custom_id: str) -> None:
    parsed = parse_feedback_custom_id(custom_id)
    if parsed is not None:
        value, trace = parsed
        assert feedback_custom_id(value, trace) == custom_id


@given(st.sampled_from(["up", "down"]), st.from_regex(r"[A-Za-z0-9_-]{1,80}", fullmatch=True))
@_EXAMPLES
def test_our_own_custom_ids_round_trip(value: str, trace: str) -> None:
    assert parse_feedback_custom_id(feedback_custom_id(value, trace)) == (value, trace)  # type: ignore[arg-type]


@given(
    content=st.text(max_size=300) | st.lists(st.sampled_from(["<@1>", "<@!1>", "<@&9>", "<@2>", " ", "hi"]),
                                             max_size=8).map("".join),
    guild=st.one_of(st.none(), st.just("g")),
    author_is_bot=st.booleans(),
    mentioned=st.lists(st.sampled_from(["1", "2", "3"]), max_size=3),
    roles=st.lists(st.sampled_from(["9", "8"]), max_size=2),
    names=st.dictionaries(st.sampled_from(["1", "2"]), st.text(max_size=10), max_size=2),
    followup=st.booleans(),
)
@_EXAMPLES
def test_any_message_is_an_incoming_message_or_ignored(
    content: str, guild: str | None, author_is_bot: bool, mentioned: list[str], roles: list[str],
    names: dict[str, str], followup: bool,
) -> None:
    facts = MessageFacts(
        message_id="m", channel_id="c", guild_id=guild, author_id="u", author_name=None,
        author_is_bot=author_is_bot, content=content, mentioned_user_ids=tuple(mentioned),
        mentioned_role_ids=tuple(roles), mention_names=names,
    )
    why = addressed(facts, "1", bot_role_ids=["9"], in_bot_thread=followup)
    if why is None:
        return
    msg = message_to_incoming(facts, "1", channel_id="c", thread=None, bot_role_ids=["9"], is_mention=why == "mention")
    assert isinstance(msg, IncomingMessage)
    assert "<@1>" not in msg.text and "<@!1>" not in msg.text


@given(_JSON)
@_EXAMPLES
def test_any_response_body_gives_an_id_or_none(data: Any) -> None:
    found = sent_message_id(data)
    assert found is None or found.strip()
    assert created_thread_id(data, "m")


@given(st.sampled_from(["MESSAGE_CREATE", "INTERACTION_CREATE", "GUILD_CREATE", "READY", "OTHER"]), _JSON)
@_EXAMPLES
def test_payload_normalisation_never_raises(event: str, data: Any) -> None:
    normalize_event(event, data, lambda _channel: None)
