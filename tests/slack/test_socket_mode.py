"""Socket Mode: the real slack-sdk client connects to the fake's websocket and acks envelopes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

from adapters.slack.server import start_socket_mode
from tests.conftest import TUNED_MODEL
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, block_action, event_callback, message_event, slash_command
from tests.fakes.slack_server import APP_TOKEN, FakeSlack
from tests.slack.conftest import SlackProcess, StartSlack


@pytest.fixture
async def socket_bot(start_slack: StartSlack, slack: FakeSlack) -> AsyncIterator[SlackProcess]:
    proc: SlackProcess = await start_slack(http=False, slack_app_token=APP_TOKEN, slack_signing_secret=None)
    handler: AsyncSocketModeHandler = await start_socket_mode(proc.bot, APP_TOKEN)
    await slack.wait_for(lambda: slack.connections == 1)
    yield proc
    await handler.close_async()  # type: ignore[no-untyped-call]


async def test_connects_with_the_app_token(socket_bot: SlackProcess, slack: FakeSlack) -> None:
    [opened] = slack.calls_to("apps.connections.open")
    assert opened.token == APP_TOKEN


async def test_mention_over_socket_mode_is_acked_and_answered_in_thread(
    socket_bot: SlackProcess, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    mention = app_mention("socket question")
    envelope = await slack.send_envelope("events_api", event_callback(mention))
    ack = await slack.wait_ack(envelope)
    assert ack == {"envelope_id": envelope}
    await socket_bot.bot.wait_processed(1)
    [answer] = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert answer.text == "The answer is in the docs [1]." and answer.buttons()


async def test_redelivered_envelope_is_answered_once(
    socket_bot: SlackProcess, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    callback = event_callback(message_event("dm over socket", channel="D3", channel_type="im"))
    first = await slack.send_envelope("events_api", callback)
    second = await slack.send_envelope("events_api", callback, retry_attempt=1)
    await slack.wait_ack(first)
    await slack.wait_ack(second)
    await socket_bot.bot.wait_processed(2)
    assert len(slack.bot_messages("D3")) == 1
    assert len(openai_server.chat_requests) == 1


async def test_slash_command_and_button_over_socket_mode(
    socket_bot: SlackProcess, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    envelope = await slack.send_envelope(
        "slash_commands", slash_command("model tuned", user="UADMIN", response_url=slack.response_url("cmd"))
    )
    await slack.wait_ack(envelope)
    await slack.wait_for(lambda: slack.responses)
    assert slack.responses[0]["response_type"] == "ephemeral" and "tuned" in slack.responses[0]["text"]

    mention = app_mention("now tuned?")
    await slack.send_envelope("events_api", event_callback(mention))
    await slack.wait_for(lambda: any(m.buttons() for m in slack.bot_messages("C1", thread_ts=mention["ts"])))
    assert openai_server.chat_requests[-1].body["model"] == TUNED_MODEL
    [answer] = slack.bot_messages("C1", thread_ts=mention["ts"])

    click = await slack.send_envelope(
        "interactive",
        block_action("bothbot_feedback_up", answer.buttons()[0]["value"], message_ts=answer.ts),
    )
    await slack.wait_ack(click)
    await slack.wait_for(lambda: slack.ephemerals)
    assert "👍" in slack.ephemerals[0].text


async def test_envelopes_nobody_handles_are_acked(socket_bot: SlackProcess, slack: FakeSlack) -> None:
    """Unacked envelopes are redelivered by Slack; bolt leaves one unacked when no listener matches."""
    reaction = {"type": "reaction_added", "user": "U1", "reaction": "tada", "event_ts": "1.1"}
    envelopes = [
        await slack.send_envelope("events_api", event_callback(reaction)),
        await slack.send_envelope("interactive", block_action("not_ours", "v", message_ts="1.2")),
    ]
    for envelope in envelopes:
        await slack.wait_ack(envelope)


async def test_malformed_envelopes_are_acked_and_the_bot_carries_on(
    socket_bot: SlackProcess, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    broken = dict(event_callback(app_mention("x")), event="app_mention")
    envelope = await slack.send_envelope("events_api", broken)
    await slack.wait_ack(envelope)
    mention = app_mention("still answering?")
    await slack.send_envelope("events_api", event_callback(mention))
    await socket_bot.bot.wait_processed(1)
    [answer] = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert answer.buttons()
