"""Pure conversion: Slack payloads → IncomingMessage, and Markdown → mrkdwn."""

from __future__ import annotations

from typing import Any, cast

import pytest

from adapters.slack.blocks import citation_line, closing_blocks, mrkdwn_size
from adapters.slack.convert import (
    BotIdentity,
    Classified,
    EventCallback,
    SlashCommand,
    classify_event,
    event_id_for,
    feedback_value,
    malformed,
    message_from_command,
    parse_feedback,
    parse_slash_command,
    plain_text,
    workspace_admin,
)
from adapters.slack.mrkdwn import split_all, to_mrkdwn
from bot.messages import Citation, FinalAnswer, IncomingMessage
from tests.fakes.slack_payloads import app_mention, block_action, event_callback, message_event, slash_command

BOT = BotIdentity(user_id="UBOT", bot_id="BBOT", team_id="T1")


def classify(body: dict[str, Any], bot: BotIdentity = BOT) -> Classified:
    return classify_event(cast(EventCallback, body), bot)


def command(fields: dict[str, str], *, is_admin: bool) -> IncomingMessage:
    return message_from_command(cast(SlashCommand, fields), is_admin=is_admin)


def test_mention_becomes_a_question_in_the_thread_of_the_post() -> None:
    event = app_mention("how do I get a laptop?", ts="1.000100")
    decision = classify(event_callback(event))
    assert decision.route == "answer"
    msg = decision.message
    assert msg is not None
    assert (msg.workspace, msg.channel, msg.user, msg.thread) == ("T1", "C1", "U1", "1.000100")
    assert msg.text == "how do I get a laptop?"
    assert msg.mentions_bot and not msg.is_direct and not msg.command
    assert msg.event_id == event_id_for("T1", "C1", "1.000100")


def test_both_copies_of_a_post_share_one_event_id() -> None:
    mention = app_mention("x", ts="5.5")
    copy = message_event(mention["text"], ts="5.5")
    a = classify(event_callback(mention)).message
    b = classify(event_callback(copy)).message
    assert a is not None and b is not None
    assert a.event_id == b.event_id and a.thread == b.thread and a.text == b.text


def test_mention_inside_a_thread_answers_in_that_thread() -> None:
    msg = classify(event_callback(app_mention("x", ts="9.2", thread_ts="9.1"))).message
    assert msg is not None and msg.thread == "9.1"


def test_direct_messages() -> None:
    top = classify(event_callback(message_event("hi", channel="D1", channel_type="im")))
    threaded = classify(
        event_callback(message_event("hi", channel="D1", channel_type="im", ts="3.2", thread_ts="3.1"))
    )
    assert top.route == "answer" and top.message is not None
    assert top.message.is_direct and top.message.thread is None
    assert threaded.message is not None and threaded.message.thread == "3.1"


def test_thread_reply_without_mention_is_a_followup_candidate() -> None:
    decision = classify(event_callback(message_event("more?", ts="2.2", thread_ts="2.1")))
    assert decision.route == "followup"
    assert decision.message is not None and decision.message.thread == "2.1"


@pytest.mark.parametrize(
    "event",
    [
        message_event("chatter"),
        message_event("mine", user="UBOT"),
        message_event("beep", bot_id="B2"),
        message_event("beep", user=None, bot_id="B2", subtype="bot_message"),
        message_event("", user=None, subtype="message_changed", message={"user": "U1", "text": "<@UBOT> x"}),
        message_event("", user=None, subtype="message_deleted"),
        message_event("joined", subtype="channel_join"),
        {"type": "reaction_added", "user": "U1"},
    ],
    ids=["no-mention", "own", "bot", "bot_message", "edit", "delete", "join", "other-type"],
)
def test_ignored_events(event: dict[str, object]) -> None:
    assert classify(event_callback(event)).route == "ignore"


def test_plain_text_decodes_slack_markup() -> None:
    raw = (
        "<@UBOT> ask <@U2|ann> about <#C9|general>, <https://x.io/a?b=1&amp;c=2|the doc> &amp; "
        "<mailto:a@b.c|a@b.c> &lt;3"
    )
    assert plain_text(raw, "UBOT") == "ask @ann about #general, the doc (https://x.io/a?b=1&c=2) & a@b.c <3"


def test_slash_command_becomes_a_command_message() -> None:
    msg = command(slash_command("model  tuned", user="U7", channel="C3"), is_admin=True)
    assert msg.command and msg.is_admin and msg.text == "model tuned"
    assert (msg.workspace, msg.channel, msg.user) == ("T1", "C3", "U7")
    assert msg.channel_key == "slack:T1:C3"
    assert command(slash_command("   "), is_admin=False).text == "help"
    a = command(slash_command("status"), is_admin=False)
    b = command(slash_command("status"), is_admin=False)
    assert a.event_id != b.event_id  # every invocation is new


def test_feedback_values() -> None:
    assert feedback_value("bothbot_feedback_up") == "up"
    assert feedback_value("bothbot_feedback_down") == "down"
    assert feedback_value("other") is None


def test_markdown_to_mrkdwn() -> None:
    source = (
        "# Laptops\n"
        "Use **the portal** or *ask* in [#it](https://it.example.com/x?a=1&b=2) ~~now~~.\n"
        "- one & two\n"
        "* three <b>\n"
        "```\nif a < b && c:\n    pass\n```\n"
        "Call `f(x<y)` then see <https://docs.example.com>."
    )
    assert to_mrkdwn(source) == (
        "*Laptops*\n"
        "Use *the portal* or _ask_ in <https://it.example.com/x?a=1&amp;b=2|#it> ~now~.\n"
        "• one &amp; two\n"
        "• three &lt;b&gt;\n"
        "```\nif a &lt; b &amp;&amp; c:\n    pass\n```\n"
        "Call `f(x&lt;y)` then see <https://docs.example.com>."
    )


def test_split_keeps_every_character_and_fences_balanced() -> None:
    text = "intro\n\n```\n" + "line of code\n" * 400 + "```\n\n" + "words " * 800
    parts = split_all(text, 3000, mrkdwn_size)
    assert len(parts) >= 3
    assert all(mrkdwn_size(p) <= 3000 for p in parts)
    assert all(p.count("```") % 2 == 0 for p in parts)
    rejoined = "".join(parts).replace("```", "").replace("\n", "").replace(" ", "")
    assert rejoined == text.replace("```", "").replace("\n", "").replace(" ", "")


def test_citations_and_buttons() -> None:
    final = FinalAnswer(
        text="x",
        kind="answer",
        trace_id="t1",
        feedback=True,
        citations=(
            Citation(1, "VPN | setup", "vpn.md", url="https://w.example.com/vpn?a=1&b=2", heading="Setup"),
            Citation(2, "Holidays", "holidays.md"),
        ),
    )
    assert citation_line(final.citations[0]) == "[1] <https://w.example.com/vpn?a=1&amp;b=2|VPN ¦ setup › Setup>"
    assert citation_line(final.citations[1]) == "[2] Holidays (holidays.md)"
    context, actions = closing_blocks(final)
    assert context["type"] == "context" and len(context["elements"]) == 2
    assert [e["value"] for e in actions["elements"]] == ["t1", "t1"]
    assert closing_blocks(FinalAnswer(text="x", kind="command", trace_id="t2")) == []


# --- payloads shaped differently from Slack's own (another server, a future field, a broken one) --

UNKNOWN = BotIdentity(user_id="")


def test_bare_event_without_outer_fields_uses_the_bots_own_workspace() -> None:
    """No team_id, no authorizations, no team inside the event: the workspace is the bot's own, so
    the channel's settings (chosen by a slash command carrying team_id) are found."""
    event = {"type": "app_mention", "user": "U1", "text": "<@UBOT> hi", "ts": "4.1", "channel": "C1"}
    msg = classify({"type": "event_callback", "event": event}).message
    assert msg is not None and msg.channel_key == "slack:T1:C1"
    assert command(slash_command("status"), is_admin=False).channel_key == msg.channel_key
    assert classify({"type": "event_callback", "event": event}, UNKNOWN).message.workspace == "T0"  # type: ignore[union-attr]


def test_unknown_bot_learns_its_id_from_authorizations() -> None:
    copy = message_event("<@UBOT> hello", ts="6.1")
    decision = classify(event_callback(copy), UNKNOWN)  # event_callback carries authorizations
    assert decision.route == "answer" and decision.message is not None
    assert decision.message.text == "hello"
    own = classify(event_callback(message_event("my reply", user="UBOT", channel="D1", channel_type="im")), UNKNOWN)
    assert own.route == "ignore"
    reply = message_event("more", ts="6.3", thread_ts="6.2", parent_user_id="UBOT")
    assert classify(event_callback(reply), UNKNOWN).parent_is_bot


def test_unknown_bot_without_authorizations_strips_the_leading_mention_of_an_app_mention() -> None:
    body = {"type": "event_callback", "team_id": "T1", "event": app_mention("what now?")}
    decision = classify(body, UNKNOWN)
    assert decision.route == "answer" and decision.message is not None
    assert decision.message.text == "what now?"
    # A plain message mentioning someone can't be told apart from a mention of the bot: ignored.
    plain = {"type": "event_callback", "team_id": "T1", "event": message_event("<@UBOT> hi")}
    assert classify(plain, UNKNOWN).route == "ignore"


@pytest.mark.parametrize(
    "event",
    [
        "app_mention",
        ["app_mention"],
        {"type": 42},
        {"type": "message"},
        app_mention("x") | {"ts": 17.5},
        app_mention("x") | {"user": {"id": "U1"}},
        app_mention("x") | {"channel": None},
        message_event("x", channel="D1", channel_type="im") | {"subtype": 7},
    ],
    ids=["string", "list", "type-number", "bare-message", "ts-number", "user-object", "channel-null", "subtype-number"],
)
def test_malformed_events_are_ignored_without_raising(event: object) -> None:
    assert classify(dict(event_callback({}), event=event)).route == "ignore"


def test_mention_with_null_text_is_an_empty_question() -> None:
    msg = classify(event_callback(app_mention("x") | {"text": None})).message
    assert msg is not None and msg.text == ""


def test_malformed_bodies_are_named() -> None:
    assert malformed(event_callback(app_mention("x"))) is None
    assert malformed(slash_command("status")) is None
    assert malformed([1, 2]) == "body is not an object"
    assert malformed(dict(event_callback({}), event="x")) == "event_callback without an event object"
    assert malformed(dict(event_callback({}), event={"text": "no type"})) == "event without a type"
    assert malformed({"type": "block_actions", "user": ["U1"]}) is not None


def test_slash_command_parsing_tolerates_missing_fields() -> None:
    assert parse_slash_command({"text": "status"}) is None  # no user or channel: nothing to answer
    bare = parse_slash_command({"user_id": "U1", "channel_id": "C1", "text": "status", "response_url": ""})
    assert bare is not None and "response_url" not in bare and bare["trigger_id"] == ""
    msg = message_from_command(bare, is_admin=False, default_team="T9")
    assert msg.channel_key == "slack:T9:C1"
    assert msg.event_id == ""  # no trigger_id: not de-duplicated (each invocation is new)


def test_feedback_click_parsing() -> None:
    body = block_action("bothbot_feedback_up", "trace-1", user="U2", message_ts="7.7", response_url="http://r/1")
    click = parse_feedback(body)
    assert click is not None
    assert (click.value, click.trace_id, click.user) == ("up", "trace-1", "U2")
    assert (click.channel, click.thread_ts) == ("C1", "7.7")
    assert click.response_url == "http://r/1"
    assert parse_feedback(block_action("other", "v", message_ts="1")) is None
    assert parse_feedback({"actions": "nope", "user": "U1"}) is None
    assert parse_feedback(dict(body, user=None)) is None


def test_users_info_admin_flags() -> None:
    assert workspace_admin({"ok": True, "user": {"is_admin": True}})
    assert workspace_admin({"ok": True, "user": {"is_primary_owner": True}})
    assert not workspace_admin({"ok": True, "user": {"is_admin": "false"}})
    assert not workspace_admin({"ok": True, "user": None})
