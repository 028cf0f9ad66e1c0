"""Pure conversions: who is addressed, the text the engine sees, admin checks, command lines, custom ids."""

from __future__ import annotations

from typing import Any

import pytest

from adapters.discord.convert import (
    MessageFacts,
    SlashCommand,
    addressed,
    clean_text,
    command_line,
    command_to_incoming,
    created_thread_id,
    feedback_custom_id,
    is_admin,
    message_to_incoming,
    parse_feedback_custom_id,
    sent_message_id,
    slash_command,
    thread_name,
)
from adapters.discord.payloads import normalize_event
from bot.commands import split_command

BOT = "900"


def facts(**overrides: object) -> MessageFacts:
    values: dict[str, object] = {
        "message_id": "1",
        "channel_id": "10",
        "guild_id": "100",
        "author_id": "7",
        "author_name": "alice",
        "author_is_bot": False,
        "content": "hello",
    }
    values.update(overrides)
    return MessageFacts(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("overrides", "context", "expected"),
    [
        ({"guild_id": None}, {}, "dm"),
        ({"mentioned_user_ids": (BOT,)}, {}, "mention"),
        ({"mentioned_role_ids": ("55",)}, {"bot_role_ids": ("55",)}, "mention"),
        ({}, {}, None),
        ({}, {"in_bot_thread": True}, "followup"),
        ({"content": ""}, {"in_bot_thread": True}, None),  # no message-content intent: nothing to answer
        ({}, {"replies_to_bot": True}, "reply_followup"),
        ({"author_is_bot": True, "mentioned_user_ids": (BOT,)}, {}, None),
        ({"author_id": BOT, "guild_id": None}, {}, None),
        ({"is_system": True, "mentioned_user_ids": (BOT,)}, {}, None),
    ],
)
def test_addressed(overrides: dict[str, object], context: dict[str, object], expected: str | None) -> None:
    assert addressed(facts(**overrides), BOT, **context) == expected  # type: ignore[arg-type]


def test_clean_text_drops_bot_mentions_and_names_other_users() -> None:
    text = f"<@{BOT}>  ask <@!{BOT}> about <@42> and <@&55> <@&66>"
    assert clean_text(text, BOT, ("55",), {"42": "bob"}) == "ask about @bob and <@&66>"


def test_message_to_incoming_keys_by_guild_channel_and_thread() -> None:
    msg = message_to_incoming(
        facts(content=f"<@{BOT}> why?", mentioned_user_ids=(BOT,)), BOT, channel_id="10", thread="1", is_mention=True
    )
    assert (msg.platform, msg.workspace, msg.channel, msg.thread) == ("discord", "100", "10", "1")
    assert msg.text == "why?"
    assert msg.event_id == "discord:message:1"
    assert msg.channel_key == "discord:100:10"
    dm = message_to_incoming(facts(guild_id=None), BOT, channel_id="10", thread=None)
    assert dm.is_direct and dm.workspace == "@me"


def test_command_in_a_thread_applies_to_the_parent_channel() -> None:
    common = {"interaction_id": "5", "guild_id": "100", "user_id": "7", "user_name": "a", "line": "reset"}
    in_thread = command_to_incoming(channel_id="11", parent_id="10", is_admin=False, **common)  # type: ignore[arg-type]
    assert (in_thread.channel, in_thread.thread, in_thread.command) == ("10", "11", True)
    top = command_to_incoming(channel_id="10", parent_id=None, is_admin=True, **common)  # type: ignore[arg-type]
    assert (top.channel, top.thread, top.is_admin) == ("10", "slash-7", True)


@pytest.mark.parametrize(
    ("permissions", "roles", "admin_roles", "expected"),
    [
        (1 << 5, [], [], True),  # Manage Server
        (1 << 3, [], [], True),  # Administrator
        ((1 << 11) | (1 << 10), [], [], False),
        (0, ["77"], ["77"], True),
        (0, ["78"], ["77"], False),
    ],
)
def test_is_admin(permissions: int, roles: list[str], admin_roles: list[str], expected: bool) -> None:
    assert is_admin(permissions, roles, admin_roles) is expected


def test_dm_is_never_admin() -> None:
    assert not is_admin(1 << 3, [], [], in_guild=False)


def test_command_lines_survive_the_cores_parser() -> None:
    assert split_command(command_line("model", "tuned")) == ("model", ["tuned"])
    assert split_command(command_line("model", None)) == ("model", [])
    assert split_command(command_line("kb", 'hr "docs"')) == ("kb", ['hr "docs"'])
    assert command_line("ask", "what's up?") == "ask what's up?"


def test_feedback_custom_id_round_trip_and_limits() -> None:
    custom_id = feedback_custom_id("down", "0f" * 16)
    assert len(custom_id) <= 100
    assert parse_feedback_custom_id(custom_id) == ("down", "0f" * 16)
    assert parse_feedback_custom_id("bothbot:fb:maybe:abc") is None
    assert parse_feedback_custom_id("other:thing") is None


def test_thread_name() -> None:
    assert thread_name("  how do   I\nsecond line", "alice") == "how do I"
    assert thread_name("", "alice") == "Question from alice"
    assert len(thread_name("x" * 300, None)) == 100


def _sub(name: str, *options: dict[str, Any]) -> dict[str, Any]:
    return {"name": "bothbot", "type": 1, "options": [{"name": name, "type": 1, "options": list(options)}]}


def _opt(name: str, value: Any, kind: int = 3) -> dict[str, Any]:
    return {"name": name, "type": kind, "value": value}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_sub("model", _opt("profile", "tuned")), SlashCommand("model tuned", False)),
        (_sub("model"), SlashCommand("model", False)),
        (_sub("ask", _opt("question", 'how do I  "quote"?')), SlashCommand('ask how do I  "quote"?', True)),
        (_sub("kb", _opt("names", "handbook, wiki  it")), SlashCommand("kb handbook wiki it", False)),
        (_sub("rag", _opt("state", False, kind=5)), SlashCommand("rag off", False)),
        (_sub("model", _opt("name", "tuned")), SlashCommand("model tuned", False)),  # another option name
        (_sub("help", _opt("topic", "x")), SlashCommand("help", False)),  # takes no option: ignored
        ({"name": "bothbot", "options": [{"name": "reset"}]}, SlashCommand("reset", False)),  # no types
        (
            {"name": "bothbot", "options": [{"name": "s", "type": 2, "options": [{"name": "status", "type": 1}]}]},
            SlashCommand("status", False),
        ),  # a subcommand group
        ({"name": "replymode", "options": [_opt("mode", "reply")]}, SlashCommand("replymode reply", False)),
        ({"name": "bothbot"}, SlashCommand("help", False)),
        ({"name": "bothbot", "options": [_opt("text", "models")]}, SlashCommand("models", False)),
        ({"name": "bothbot", "options": [_opt("text", "what is new?")]}, SlashCommand("ask what is new?", True)),
        (_sub("frobnicate"), None),
        ({"name": "other"}, None),
        ({"name": "bothbot", "options": "garbage"}, SlashCommand("help", False)),
    ],
)
def test_slash_command_reads_every_reasonable_shape(data: dict[str, Any], expected: SlashCommand | None) -> None:
    assert slash_command(data) == expected
    if expected is not None:
        assert split_command(expected.line)[0] == expected.line.split()[0]


def test_response_ids() -> None:
    assert sent_message_id({"id": "123", "content": "x"}) == "123"
    assert sent_message_id({"id": 123}) == "123"
    assert sent_message_id("") is None  # 204, or a text body
    assert sent_message_id({"content": "x"}) is None
    assert created_thread_id("", "55") == "55"  # a thread on a message has the message's id


def test_sparse_events_get_discords_defaults_and_full_ones_keep_their_values() -> None:
    user = {"id": "7", "username": "alice"}
    interaction = normalize_event(
        "INTERACTION_CREATE",
        {"id": "1", "type": 2, "token": "t", "application_id": "9", "guild_id": "5", "channel_id": "6",
         "member": {"user": user, "permissions": "32"}},
    )  # fmt: skip
    assert interaction["version"] == 1 and interaction["attachment_size_limit"] > 0
    assert interaction["channel"]["id"] == "6", "discord.py reads the channel id from the channel object only"
    assert interaction["member"]["flags"] == 0 and interaction["member"]["roles"] == []
    assert interaction["member"]["user"] == {"id": "7", "username": "alice", "discriminator": "0", "avatar": None}
    assert interaction["member"]["permissions"] == "32"

    guild = normalize_event("GUILD_CREATE", {"id": "5", "channels": [{"id": "6", "type": 0}, {"id": "8", "type": 0}]})
    assert [c["position"] for c in guild["channels"]] == [0, 1]
    assert guild["threads"] == [] and guild["roles"] == []

    message = normalize_event("MESSAGE_CREATE", {"id": "2", "channel_id": "6", "author": user, "content": "hi"})
    assert message["type"] == 0 and message["mentions"] == [] and message["content"] == "hi"

    full = {"id": "2", "channel_id": "6", "author": {**user, "discriminator": "1234", "avatar": "a"}, "type": 19}
    assert normalize_event("MESSAGE_CREATE", full)["type"] == 19
    assert normalize_event("MESSAGE_CREATE", full)["author"]["discriminator"] == "1234"
    assert normalize_event("TYPING_START", full) is full
    assert normalize_event("GUILD_CREATE", {"id": "5", "unavailable": True}) == {"id": "5", "unavailable": True}


@pytest.mark.parametrize(
    ("data", "line"),
    [
        (_sub("experiment"), "experiment show"),
        (_sub("experiment", _opt("action", "stop")), "experiment stop"),
        (
            _sub("experiment", _opt("action", "start"), _opt("arms", "tuned, base:norag")),
            "experiment start tuned base:norag",
        ),
        (_sub("experiment", _opt("text", "start tuned base")), "experiment start tuned base"),  # one free option
        ({"name": "bothbot", "options": [_opt("text", "experiment stop")]}, "experiment stop"),
    ],
)
def test_experiment_subcommand_becomes_the_core_line(data: dict[str, Any], line: str) -> None:
    assert slash_command(data) == SlashCommand(line, False)


def test_the_registered_experiment_subcommand_has_action_and_arms() -> None:
    from adapters.discord.commands import build_group

    async def handler(*_: object) -> None:
        return None

    command = build_group(handler, lambda: ["base", "tuned"]).get_command("experiment")
    assert command is not None
    params = {p.name: p for p in command.parameters}  # type: ignore[union-attr]
    assert list(params) == ["action", "arms"]
    assert [c.value for c in params["action"].choices] == ["show", "start", "stop"]
    assert not params["action"].required and not params["arms"].required
