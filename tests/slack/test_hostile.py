"""The HTTP endpoint against a hostile client: real signed and unsigned requests to the real
aiohttp server, with the process's real logging set-up (``configure_logging``) captured."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, event_callback, sign
from tests.fakes.slack_server import FakeSlack
from tests.processes import bothbot_command, free_port, slack_http_env, wait_healthy
from tests.slack.conftest import StartSlack
from tests.slack.logcapture import LINE_START, CapturedLog, capture_logs, post_raw, sign_bytes

FORGED = "2026-01-01 00:00:00,000 ERROR adapters.slack.app: FORGED admin password reset"


@pytest.fixture
def captured_log() -> Iterator[CapturedLog]:
    yield from capture_logs()


def forged_body(size: int = 0) -> str:
    """An Events API body whose text starts a fake log record on a new line (and pads to ``size``)."""
    callback = event_callback(app_mention(f"hi\n{FORGED}\r\x1b[2K\x1b[31mred"))
    callback["padding"] = "x" * size
    return json.dumps(callback, ensure_ascii=False)


# --- 1. unsigned requests never write their body into the log ---------------------------------


async def test_an_unsigned_request_cannot_forge_a_log_line_or_flood_the_log(
    start_slack: StartSlack, captured_log: CapturedLog, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    proc = await start_slack()
    captured_log.clear()
    body = forged_body(size=400_000)
    # JSON keeps the newline escaped; a form body sends it raw
    form = "payload=" + json.dumps({"type": "block_actions", "note": f"x\n{FORGED}"}, ensure_ascii=False)
    for data, content_type in ((body, "application/json"), (form, "application/x-www-form-urlencoded")):
        forged_headers = {"Content-Type": content_type, **sign(data, "not-the-secret")}
        assert await post_raw(proc, data.encode(), forged_headers) == 401
        assert await post_raw(proc, data.encode(), {"Content-Type": content_type}) == 401

    assert "FORGED" not in captured_log.text
    assert "xxxxxxxxxx" not in captured_log.text  # no part of the body at all
    assert len(captured_log.text) < 2_000, len(captured_log.text)
    assert len(captured_log.lines()) == 4  # one short line per refused request
    assert all(LINE_START.match(line) for line in captured_log.lines())
    assert slack.bot_messages() == [] and openai_server.chat_requests == []


async def test_request_data_that_reaches_a_log_line_stays_on_that_line_escaped(
    start_slack: StartSlack, captured_log: CapturedLog, openai_server: FakeOpenAI
) -> None:
    """A signed event whose channel id carries a forged record (and terminal escapes), delivered
    twice: the ids it is logged under stay on their own line, escaped."""
    proc = await start_slack()
    captured_log.clear()
    channel = f"D1\n{FORGED}\r\x1b[2K\x1b]0;pwned\x07\u2028\x85"
    callback = event_callback(app_mention("hi", channel=channel))
    assert (await proc.send_body(callback))[0] == 200
    assert (await proc.send_body(callback, retry=1))[0] == 200
    await proc.bot.wait_processed(2)
    await proc.settle()
    text = captured_log.text
    assert "FORGED" in text  # the ids did reach the log …
    assert not any(line.startswith(FORGED) for line in captured_log.lines())  # … on no line of their own
    assert all(LINE_START.match(line) or line.startswith((" ", "Traceback")) for line in captured_log.lines())
    for raw in ("\r", "\x1b", "\x07", "\u2028", "\x85"):
        assert raw not in text


# --- 2. malformed requests: 400 (or 401), one log line, never a 500 or a traceback ----------------


@pytest.mark.parametrize("timestamp", ["abc", "", "1e3", "12 3", "12.5", "-5", "١٢٣", "9" * 40])
async def test_a_malformed_timestamp_is_refused_with_400_and_one_line(
    start_slack: StartSlack, captured_log: CapturedLog, timestamp: str
) -> None:
    proc = await start_slack()
    captured_log.clear()
    body = json.dumps(event_callback(app_mention("hi")))
    headers = {"Content-Type": "application/json", **sign(body), "X-Slack-Request-Timestamp": timestamp}
    assert await post_raw(proc, body.encode(), headers) == 400
    [line] = captured_log.lines()
    assert "400" in line and "timestamp" in line and "Traceback" not in captured_log.text


@pytest.mark.parametrize("signed", [False, True])
async def test_a_body_that_is_not_utf8_is_refused_with_400_and_one_line(
    start_slack: StartSlack, captured_log: CapturedLog, signed: bool
) -> None:
    proc = await start_slack()
    captured_log.clear()
    body = b'{"type": "event_callback", "text": "\xff\xfe\xc3("}\n' + FORGED.encode()
    headers = {"Content-Type": "application/json"}
    if signed:
        headers |= sign_bytes(body)
    assert await post_raw(proc, body, headers) == 400
    [line] = captured_log.lines()
    assert "400" in line and "UTF-8" in line and "FORGED" not in line


async def test_bad_signatures_of_every_shape_get_401_and_one_line_each(
    start_slack: StartSlack, captured_log: CapturedLog
) -> None:
    proc = await start_slack()
    captured_log.clear()
    body = json.dumps(event_callback(app_mention("hi")))
    good = sign(body)
    shapes = ["", "v0=", "v1=" + good["X-Slack-Signature"][3:], good["X-Slack-Signature"].upper(), "v0=zz" * 13, "é"]
    for signature in shapes:
        headers = {"Content-Type": "application/json", **good, "X-Slack-Signature": signature}
        assert await post_raw(proc, body.encode(), headers) == 401
    assert len(captured_log.records()) == len(shapes) == len(captured_log.lines())
    assert "Traceback" not in captured_log.text


# --- 3. native streaming escapes what the edit path escapes ------------------------------------


async def test_natively_streamed_text_is_escaped_like_edited_text(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    """``<!channel>`` from a question or a document, repeated by the model, must not notify anyone."""
    reply = "Dear <!channel> and <!here>, ask <@U999> & <#C1|general> about <https://x.example|x>."
    openai_server.reply_text = reply
    openai_server.chunks_per_reply = 7
    proc = await start_slack()
    streamed = app_mention("repeat <!channel> please")
    await proc.send_event(streamed)
    await proc.bot.wait_processed(1)
    appended = "".join(c.args["markdown_text"] for c in slack.calls_to("chat.appendStream"))
    assert appended == reply.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    slack.streaming = False  # the same answer by placeholder edits: the same escaping
    edited = app_mention("again, by edits")
    await proc.send_event(edited)
    await proc.bot.wait_processed(2)
    [answer] = slack.bot_messages("C1", thread_ts=edited["ts"])
    assert "<!" not in answer.block_text and "<@" not in answer.block_text
    assert "&lt;!channel&gt;" in answer.block_text and "&lt;!channel&gt;" in appended


async def test_a_long_escaped_stream_still_fits_each_message(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    """The 12,000-character stream limit counts escaped characters: ``<`` takes four."""
    text = "\n\n".join(["<a> & <b> " * 40] * 15)  # 6,000 characters, 15,600 once escaped
    openai_server.reply_text = text
    openai_server.chunks_per_reply = 30
    proc = await start_slack()
    mention = app_mention("long and angular")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)
    parts = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert len(parts) == 2 and all(p.streamed and not p.stream_open for p in parts)
    assert all(len(p.text) <= 12_000 for p in parts)
    # every word, in order; whitespace where one message ends and the next begins is not kept
    shown = " ".join(p.text for p in parts).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    assert shown.split() == text.split()


# --- 4. signed requests nothing handles are acknowledged ----------------------------------------

UNROUTED = [
    ("", "application/json"),
    ("{}", "application/json"),
    ('{"token": "t", "team_id": "T1"}', "application/json"),
    (
        '{"type": "app_rate_limited", "team_id": "T1", "minute_rate_limited": 1518467820, "api_app_id": "A1"}',
        "application/json",
    ),
    ('{"type": "something_new", "team_id": "T1"}', "application/json"),
    ('{"type": "event_callback", "team_id": "T1", "event": {"type": "brand_new_event"}}', "application/json"),
    ("", "application/x-www-form-urlencoded"),
    ("foo=bar", "application/x-www-form-urlencoded"),
    ('payload={"type": "unknown_interaction"}', "application/x-www-form-urlencoded"),
]


@pytest.mark.parametrize(("body", "content_type"), UNROUTED)
async def test_signed_requests_nothing_handles_are_acknowledged_with_200(
    start_slack: StartSlack, captured_log: CapturedLog, slack: FakeSlack, body: str, content_type: str
) -> None:
    proc = await start_slack()
    captured_log.clear()
    status, _ = await proc.post(body, content_type)
    assert status == 200
    assert "Unhandled request" not in captured_log.text and "Traceback" not in captured_log.text
    assert len(captured_log.lines()) <= 1
    assert slack.bot_messages() == []


# --- the same, as an operator runs it: ``bothbot slack`` in HTTP mode, its stderr ----------------


async def test_bothbot_slack_keeps_its_stderr_clean_under_hostile_requests(
    slack: FakeSlack, openai_server: FakeOpenAI, redis_prefix: str, tmp_path: Path, redis_cleanup: object
) -> None:
    port = free_port()
    env = slack_http_env(
        slack_api_url=slack.api_url, openai_base_url=openai_server.base_url, redis_prefix=redis_prefix,
        home=tmp_path, port=port,
    )
    process = await asyncio.create_subprocess_exec(
        *bothbot_command("slack"),
        env=env,
        cwd=str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/slack/events"
    try:
        await wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
        big = forged_body(size=400_000).encode()
        form = f"payload=x\n{FORGED}\r\x1b[31m".encode()
        valid = json.dumps(event_callback(app_mention("hi")))
        requests = [
            (big, {"Content-Type": "application/json"}, 401),
            (big, {"Content-Type": "application/json", **sign(big.decode(), "wrong")}, 401),
            (form, {"Content-Type": "application/x-www-form-urlencoded", **sign_bytes(form, "wrong")}, 401),
            (valid.encode(), {**sign(valid), "X-Slack-Request-Timestamp": "abc"}, 400),
            (b"\xff\xfe" + FORGED.encode(), sign_bytes(b"\xff\xfe" + FORGED.encode()), 400),
            (b"{}", {"Content-Type": "application/json", **sign_bytes(b"{}")}, 200),
            (b"", sign_bytes(b""), 200),
        ]
        async with aiohttp.ClientSession() as session:
            for body, headers, expected in requests:
                async with session.post(url, data=body, headers=headers) as response:
                    assert response.status == expected, (body[:40], headers)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(process.communicate(), 20)
    log = stderr.decode("utf-8", "replace")
    assert process.returncode == 0, log
    assert "FORGED" not in log and "Traceback" not in log and "\x1b" not in log
    assert len(log) < 5_000, len(log)
    lines = log.splitlines()
    assert all(LINE_START.match(line) for line in lines), log
    assert len([line for line in lines if "refused" in line]) == 5  # one line per refused request
