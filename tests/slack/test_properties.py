"""Property-based tests: the Slack converters and the HTTP endpoint take anything a client sends.

- converters (``adapters.slack.convert``): any payload gives an ``IncomingMessage`` or a clean
  refusal, never an exception;
- text we send (``adapters.slack.mrkdwn``): no ``<!…>``, ``<@…>`` or ``<#…>`` survives, whatever
  the model or a document wrote;
- the endpoint (the real aiohttp server, real requests): any headers and body, signed or not, get
  2xx or 4xx, never 5xx, and the log gets no traceback and no raw newline from the request.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.slack.blocks import citation_line
from adapters.slack.convert import (
    BotIdentity,
    classify_event,
    malformed,
    message_from_command,
    parse_feedback,
    parse_slash_command,
    plain_text,
)
from adapters.slack.mrkdwn import escape, to_mrkdwn
from bot.messages import Citation, IncomingMessage
from tests.slack.conftest import SlackProcess, StartSlack
from tests.slack.logcapture import LINE_START, CapturedLog, capture_logs, post_raw, sign_bytes

# --- strategies ------------------------------------------------------------------------------

SLACKISH = st.sampled_from(
    [
        "",
        "U1",
        "UBOT",
        "BBOT",
        "C1",
        "D1",
        "G1",
        "T1",
        "im",
        "channel",
        "1700000000.000100",
        "<@UBOT> hi",
        "app_mention",
        "message",
        "file_share",
        "thread_broadcast",
        "message_changed",
        "event_callback",
    ]
)
scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30) | SLACKISH
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
field = SLACKISH | json_values

EVENT_KEYS = [
    "subtype",
    "user",
    "bot_id",
    "app_id",
    "text",
    "ts",
    "thread_ts",
    "parent_user_id",
    "channel",
    "channel_type",
    "team",
    "user_team",
    "event_ts",
    "message",
    "files",
    "blocks",
]
events = st.fixed_dictionaries(
    {"type": st.sampled_from(["app_mention", "message"]) | field},
    optional={key: field for key in EVENT_KEYS},
)
authorizations = st.lists(
    st.fixed_dictionaries({}, optional={"user_id": field, "is_bot": field, "team_id": field}), max_size=2
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["event_callback", "url_verification", "app_rate_limited", "block_actions"]) | field,
        "team_id": field,
        "api_app_id": field,
        "event_id": field,
        "event": events | json_values,
        "authorizations": authorizations | json_values,
        "challenge": field,
        "team": field,
        "user": field,
        "channel": field,
        "actions": st.lists(st.fixed_dictionaries({}, optional={"action_id": field, "value": field})) | field,
        "message": field,
        "container": field,
        "response_url": field,
    },
)
identities = st.builds(
    BotIdentity,
    user_id=st.sampled_from(["UBOT", ""]) | st.text(max_size=5),
    bot_id=st.none() | st.sampled_from(["BBOT"]),
    team_id=st.none() | st.sampled_from(["T1"]),
)


def assert_message(msg: IncomingMessage) -> None:
    for value in (msg.workspace, msg.channel, msg.user, msg.text, msg.event_id):
        assert isinstance(value, str)
    assert msg.channel and msg.user and msg.event_id.startswith("slack:")
    assert msg.thread is None or isinstance(msg.thread, str)


# --- converters ------------------------------------------------------------------------------


@settings(max_examples=400, deadline=None)
@given(body=bodies | json_values, identity=identities)
def test_any_event_payload_is_classified_or_refused_cleanly(body: Any, identity: BotIdentity) -> None:
    decision = classify_event(body, identity)
    assert decision.route in ("answer", "followup", "ignore")
    assert isinstance(decision.reason, str)
    if decision.route != "ignore":
        assert decision.message is not None
    if decision.message is not None:
        assert_message(decision.message)
    assert malformed(body) is None or isinstance(malformed(body), str)


@settings(max_examples=300, deadline=None)
@given(
    body=st.dictionaries(
        st.sampled_from(
            [
                "user_id",
                "channel_id",
                "team_id",
                "text",
                "trigger_id",
                "command",
                "response_url",
                "user_name",
                "channel_name",
            ]
        ),
        field,
    )
    | json_values,
    is_admin=st.booleans(),
)
def test_any_slash_command_form_is_parsed_or_refused_cleanly(body: Any, is_admin: bool) -> None:
    command = parse_slash_command(body)
    if command is not None:
        msg = message_from_command(command, is_admin=is_admin, default_team="T1")
        assert msg.command and msg.channel and msg.user and isinstance(msg.text, str) and msg.text


@settings(max_examples=300, deadline=None)
@given(body=bodies | json_values)
def test_any_block_action_payload_is_parsed_or_refused_cleanly(body: Any) -> None:
    click = parse_feedback(body)
    if click is not None:
        assert click.value in ("up", "down") and click.trace_id and click.user


@settings(max_examples=300, deadline=None)
@given(text=st.text(), bot=st.none() | st.text(max_size=6))
def test_plain_text_takes_any_text(text: str, bot: str | None) -> None:
    assert isinstance(plain_text(text, bot), str)


MARKDOWNISH = st.lists(
    st.sampled_from([*"<>!@#&|[]()`*_~ \nabU1:/.-", "channel", "here", "http", "https://x.io", "mailto:"]),
    max_size=40,
).map("".join)
LINKS = st.builds(
    lambda bang, label, url: f"{bang}[{label}]({url})",
    st.sampled_from(["", "!"]),
    MARKDOWNISH,
    st.sampled_from(["", "<", "!", "@", "#", "!sub"]).flatmap(lambda p: MARKDOWNISH.map(lambda rest: p + rest)),
)
MARKDOWN = st.lists(MARKDOWNISH | LINKS, max_size=4).map(" ".join)
SLACK_CONTROL = re.compile(r"<[!@#]")


@settings(max_examples=500, deadline=None)
@given(text=MARKDOWN | st.text())
def test_nothing_we_send_can_mention_or_broadcast(text: str) -> None:
    """Whatever the model writes (or repeats from a question or a document), neither the edit path
    (``to_mrkdwn``) nor the native stream (``escape``) sends a Slack control token."""
    assert not SLACK_CONTROL.search(to_mrkdwn(text)), to_mrkdwn(text)
    assert not SLACK_CONTROL.search(escape(text))
    assert "<" not in escape(text) and ">" not in escape(text)


@settings(max_examples=300, deadline=None)
@given(
    title=MARKDOWN,
    source=MARKDOWN,
    url=st.none() | MARKDOWN | st.sampled_from(["!channel", "@U1", "#C1|x", "!subteam^S1", "https://x.io/?a=<b>"]),
    heading=st.none() | MARKDOWN,
)
def test_a_document_cited_under_an_answer_cannot_mention_anyone(
    title: str, source: str, url: str | None, heading: str | None
) -> None:
    """Titles, sources and URLs come from ingested documents."""
    line = citation_line(Citation(index=1, title=title, source=source, url=url, heading=heading))
    assert not SLACK_CONTROL.search(line), line


# --- the HTTP endpoint -----------------------------------------------------------------------

TOKEN = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_"),
    min_size=1,
    max_size=20,
)
HEADER_VALUE = st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60)
SLACK_HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "X-Slack-Request-Timestamp": HEADER_VALUE | st.integers().map(str),
        "X-Slack-Signature": HEADER_VALUE | st.just("v0=" + "0" * 64),
        "Content-Type": st.sampled_from(
            ["application/json", "application/x-www-form-urlencoded", "text/plain", "multipart/form-data", ""]
        )
        | HEADER_VALUE,
        "X-Slack-Retry-Num": HEADER_VALUE,
    },
)
BODY_BYTES = (
    st.binary(max_size=300)
    | st.text(max_size=300).map(str.encode)
    | (bodies | json_values).map(lambda v: json.dumps(v).encode())
    | st.dictionaries(
        st.sampled_from(["payload", "command", "ssl_check", "text", "user_id", "channel_id"]),
        st.text(max_size=40) | (bodies | json_values).map(json.dumps),
        max_size=3,
    ).map(lambda d: "&".join(f"{k}={v}" for k, v in d.items()).encode())
)


@pytest.fixture
def captured_log() -> Iterator[CapturedLog]:
    yield from capture_logs()


@pytest.fixture
async def proc(start_slack: StartSlack) -> SlackProcess:
    """One server for all the examples of a test."""
    return await start_slack()


@settings(
    max_examples=int(os.environ.get("BOTHBOT_HTTP_EXAMPLES", "200")),  # more for a longer hunt
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    headers=SLACK_HEADERS,
    extra=st.dictionaries(TOKEN, HEADER_VALUE, max_size=3),
    body=BODY_BYTES,
    signed=st.booleans(),
)
async def test_any_request_gets_2xx_or_4xx_and_a_clean_log(
    proc: SlackProcess,
    captured_log: CapturedLog,
    headers: dict[str, str],
    extra: dict[str, str],
    body: bytes,
    signed: bool,
) -> None:
    all_headers = {**extra, **headers}
    if signed:  # signed correctly, so that it reaches bolt
        all_headers |= sign_bytes(body)
    captured_log.clear()
    status = await post_raw(proc, body, all_headers)
    assert 200 <= status < 500, status
    text = captured_log.text
    assert "Traceback" not in text, text
    for line in captured_log.lines():
        assert LINE_START.match(line), line  # a newline from the request would start a line of its own
