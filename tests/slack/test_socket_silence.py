"""Socket Mode going silent (no envelopes, no pongs, the socket left open) is noticed and replaced.

The bound is ``slack_socket_ping_seconds`` (3 × it, see ``adapters.slack.server.start_socket_mode``);
the test sets it short and waits on the fake's own events: a new ``apps.connections.open`` and a
new websocket, then an event sent on the new connection is answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from slack_bolt.adapter.socket_mode.aiohttp import AsyncSocketModeHandler

from adapters.slack.server import start_socket_mode
from adapters.slack.settings import SlackSettings
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, event_callback
from tests.fakes.slack_server import APP_TOKEN, FakeSlack
from tests.slack.conftest import SlackProcess, StartSlack

PING_SECONDS = 0.5
BOUND_SECONDS = 3 * PING_SECONDS
CONNECT_SECONDS = 5.0  # apps.connections.open + the websocket handshake, on a busy CI machine


@pytest.fixture
async def silent_bot(start_slack: StartSlack, slack: FakeSlack) -> AsyncIterator[SlackProcess]:
    proc: SlackProcess = await start_slack(
        http=False, slack_app_token=APP_TOKEN, slack_signing_secret=None, slack_socket_ping_seconds=PING_SECONDS
    )
    ping_seconds = proc.runtime.settings.platform(SlackSettings).slack_socket_ping_seconds
    handler: AsyncSocketModeHandler = await start_socket_mode(proc.bot, APP_TOKEN, ping_seconds=ping_seconds)
    try:
        await slack.wait_for(lambda: slack.connections == 1)
        yield proc
    finally:
        await handler.close_async()  # type: ignore[no-untyped-call]


async def test_a_silent_connection_is_replaced_and_the_new_one_answers(
    silent_bot: SlackProcess, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    await slack.wait_for(lambda: slack.pongs >= 4, timeout=10 * PING_SECONDS + CONNECT_SECONDS)
    # several ping intervals answered: a connection that is not silent is kept
    assert len(slack.calls_to("apps.connections.open")) == 1 and slack.sockets_opened == 1
    slack.go_silent()
    await slack.wait_for(
        lambda: len(slack.calls_to("apps.connections.open")) == 2 and slack.sockets_opened == 2
        and slack.connections == 1,
        timeout=BOUND_SECONDS + CONNECT_SECONDS,
    )
    mention = app_mention("still there?")
    envelope = await slack.send_envelope("events_api", event_callback(mention))
    assert await slack.wait_ack(envelope) == {"envelope_id": envelope}
    await silent_bot.bot.wait_processed(1)
    [answer] = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert answer.text == "The answer is in the docs [1]."
