"""Events API over HTTP: signed requests to the real bolt app, Web API calls asserted at the fake."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, event_callback, message_event, next_ts, sign
from tests.fakes.slack_server import FakeSlack
from tests.slack.conftest import StartSlack


async def test_mention_gets_a_streamed_answer_in_its_thread(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    openai_server.reply_text = "Open a **ticket** in the IT portal."
    proc = await start_slack()
    mention = app_mention("how do I get a laptop?")
    status, _ = await proc.send_event(mention)
    assert status == 200
    await proc.bot.wait_processed(1)

    [answer] = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert answer.streamed and not answer.stream_open
    assert answer.text == "Open a **ticket** in the IT portal."  # native streaming takes Markdown
    assert answer.appends >= 1
    start = slack.calls_to("chat.startStream")[0].args
    assert start["recipient_user_id"] == "U1" and start["recipient_team_id"] == "T1"
    [up, down] = answer.buttons()
    assert up["value"] == down["value"] and len(up["value"]) >= 16  # the trace id
    question = openai_server.chat_requests[-1].body["messages"][-1]["content"]
    assert "how do I get a laptop?" in question and "UBOT" not in question


async def test_without_native_streaming_a_placeholder_is_edited(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    slack.streaming = False
    openai_server.reply_text = "See [the portal](https://it.example.com/?a=1&b=2) & ask <IT>."
    openai_server.chunks_per_reply = 6
    proc = await start_slack()
    mention = app_mention("laptop?")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)

    [answer] = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert not answer.streamed
    assert answer.edits >= 2  # status/partial edits, then the final one
    assert answer.block_text == "See <https://it.example.com/?a=1&amp;b=2|the portal> &amp; ask &lt;IT&gt;."
    assert len(answer.buttons()) == 2
    # The first delivery found streaming unsupported; the next answer goes straight to edits.
    await proc.send_event(app_mention("again?"))
    await proc.bot.wait_processed(2)
    assert len(slack.calls_to("chat.startStream")) == 1


async def test_edits_are_throttled_but_the_final_edit_is_always_sent(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    slack.streaming = False
    openai_server.reply_text = "word " * 40
    openai_server.chunks_per_reply = 40
    proc = await start_slack(slack_edit_interval_seconds=30.0)
    mention = app_mention("q")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)
    [answer] = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert answer.edits == 1  # 40 deltas within the interval: no intermediate edit, one final
    assert answer.block_text == ("word " * 40).strip()


async def test_direct_message_is_answered_in_the_dm(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    openai_server.reply_text = "Hello in private."
    proc = await start_slack()
    dm = message_event("hi there", channel="D1", channel_type="im")
    await proc.send_event(dm)
    await proc.bot.wait_processed(1)
    [answer] = slack.bot_messages("D1")
    assert answer.thread_ts is None  # a DM's top level is answered at the top level
    assert answer.block_text == "Hello in private."


async def test_thread_followup_without_mention_is_answered(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    proc = await start_slack()
    mention = app_mention("first question")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)
    followup = message_event("and a follow-up?", thread_ts=mention["ts"], parent_user_id="U1")
    await proc.send_event(followup)
    await proc.bot.wait_processed(2)
    answers = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert len(answers) == 2
    # The follow-up carried the thread's history to the model.
    contents = [m["content"] for m in openai_server.chat_requests[-1].body["messages"]]
    assert any("first question" in c for c in contents)
    assert "and a follow-up?" in contents[-1]


async def test_thread_reply_elsewhere_and_plain_channel_messages_are_ignored(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    proc = await start_slack()
    root = next_ts()
    await proc.send_event(message_event("people talking", thread_ts=root, parent_user_id="U2"))
    await proc.send_event(message_event("just chatting in the channel"))
    await proc.bot.wait_processed(2)
    assert slack.bot_messages() == []
    assert openai_server.chat_requests == []


async def test_followups_can_be_switched_off_per_channel(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    proc = await start_slack(channels={"slack:T1:C1": {"thread_followups": False}})
    mention = app_mention("first")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)
    await proc.send_event(message_event("follow-up", thread_ts=mention["ts"], parent_user_id="U1"))
    await proc.bot.wait_processed(2)
    assert len(slack.bot_messages("C1", thread_ts=mention["ts"])) == 1
    # A new mention in the same thread is still answered.
    await proc.send_event(app_mention("with a mention", thread_ts=mention["ts"]))
    await proc.bot.wait_processed(3)
    assert len(slack.bot_messages("C1", thread_ts=mention["ts"])) == 2


async def test_mention_and_message_copies_of_one_post_give_one_answer(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    proc = await start_slack()
    mention = app_mention("one post, two events")
    copy = message_event(mention["text"], ts=mention["ts"])
    await proc.send_event(mention)
    await proc.send_event(copy)
    await proc.bot.wait_processed(2)
    assert len(slack.bot_messages("C1", thread_ts=mention["ts"])) == 1
    assert len(openai_server.chat_requests) == 1


async def test_retried_delivery_is_answered_once(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    proc = await start_slack()
    callback = event_callback(app_mention("retry me"))
    assert (await proc.send_body(callback))[0] == 200
    assert (await proc.send_body(callback, retry=1))[0] == 200
    assert (await proc.send_body(callback, retry=2))[0] == 200
    await proc.bot.wait_processed(3)
    assert len(slack.bot_messages("C1")) == 1
    assert len(openai_server.chat_requests) == 1


async def test_two_instances_sharing_redis_answer_once(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI, tmp_path: object
) -> None:
    from pathlib import Path

    base = Path(str(tmp_path))
    first = await start_slack(data_dir=base / "replica-1")
    second = await start_slack(data_dir=base / "replica-2")
    callback = event_callback(app_mention("who answers?"))
    await first.send_body(callback)
    await second.send_body(callback, retry=1)
    await first.bot.wait_processed(1)
    await second.bot.wait_processed(1)
    assert len(slack.bot_messages("C1")) == 1
    assert len(openai_server.chat_requests) == 1


async def test_own_messages_other_bots_edits_and_deletions_are_ignored(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    proc = await start_slack()
    mention = app_mention("start a thread")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)
    thread = mention["ts"]
    events = [
        # the bot's own reply arriving as a message event in its thread
        message_event("my answer", user="UBOT", bot_id="BBOT", thread_ts=thread, parent_user_id="U1"),
        # another bot in the thread and in a DM
        message_event("beep", user="UOTHERBOT", bot_id="B2", thread_ts=thread, parent_user_id="U1"),
        message_event("beep", bot_id="B2", subtype="bot_message", user=None, channel="D1", channel_type="im"),
        # an edit and a deletion in the DM and the thread
        message_event(
            "",
            user=None,
            channel="D1",
            channel_type="im",
            subtype="message_changed",
            message={"type": "message", "user": "U1", "text": "edited", "ts": next_ts()},
        ),
        message_event("", user=None, thread_ts=thread, subtype="message_deleted", deleted_ts=next_ts()),
        message_event(
            "",
            user=None,
            subtype="message_changed",
            message={"type": "message", "user": "UBOT", "bot_id": "BBOT", "text": "<@UBOT> hi", "ts": thread},
        ),
    ]
    for event in events:
        assert (await proc.send_event(event))[0] == 200
    # A last, answerable DM: once it is answered, every earlier event has long been handled.
    await proc.send_event(message_event("sentinel", channel="D9", channel_type="im"))
    await slack.wait_for(lambda: slack.bot_messages("D9") and slack.bot_messages("D9")[0].buttons())
    await proc.settle()
    assert [m.channel for m in slack.bot_messages()] == ["C1", "D9"]
    assert len(openai_server.chat_requests) == 2


async def test_a_long_answer_continues_in_new_messages(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    slack.streaming = False
    paragraph = ("This sentence is part of a long answer about laptops & docks. " * 10).strip()
    text = "\n\n".join([paragraph] * 15)
    assert 9_000 <= len(text) <= 9_700
    openai_server.reply_text = text
    openai_server.chunks_per_reply = 30
    proc = await start_slack()
    mention = app_mention("tell me everything")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)

    parts = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert len(parts) >= 4  # 3,000 mrkdwn characters per message; escaping makes it longer
    for part in parts:
        assert len(part.block_text) <= 3000
    assert [len(p.buttons()) for p in parts] == [0] * (len(parts) - 1) + [2]  # buttons on the last only
    shown = "".join(p.block_text for p in parts)
    assert shown.replace("\n", "").replace("&amp;", "&") == text.replace("\n", "")


async def test_a_very_long_streamed_answer_continues_in_a_new_stream(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    paragraph = ("Streaming keeps going and going. " * 12).strip()
    text = "\n\n".join([paragraph] * 40)
    assert len(text) > 12_000
    openai_server.reply_text = text
    openai_server.chunks_per_reply = 50
    proc = await start_slack()
    mention = app_mention("long one")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)
    parts = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert len(parts) == 2 and all(p.streamed and not p.stream_open for p in parts)
    assert all(len(p.text) <= 12_000 for p in parts)
    assert "".join(p.text for p in parts).replace("\n", "") == text.replace("\n", "")
    assert [len(p.buttons()) for p in parts] == [0, 2]


async def test_failed_model_call_gives_a_short_true_message_in_the_thread(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    openai_server.fail_next(500, count=5)
    proc = await start_slack()
    mention = app_mention("will this work?")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)
    [answer] = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert "couldn't get an answer" in answer.text.lower() or "model" in answer.text.lower()
    assert len(answer.text) < 400


async def test_rate_limited_web_api_call_is_retried_after_retry_after(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    slack.streaming = False
    slack.rate_limit_next("chat.postMessage", retry_after=0)
    proc = await start_slack()
    mention = app_mention("busy workspace")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)
    assert len(slack.calls_to("chat.postMessage")) == 2  # the 429, then the retry
    [answer] = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert answer.block_text == "The answer is in the docs [1]."


async def test_bad_or_stale_signatures_are_rejected_with_401(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    proc = await start_slack()
    body = json.dumps(event_callback(app_mention("forged")))
    status, _ = await proc.post(body, "application/json", secret="not-the-secret")
    assert status == 401
    stale = sign(body, timestamp=int(time.time()) - 3600)
    async with proc.session.post(
        proc.events_url, data=body, headers={"Content-Type": "application/json", **stale}
    ) as response:
        assert response.status == 401
    async with proc.session.post(proc.events_url, data=body, headers={"Content-Type": "application/json"}) as r:
        assert r.status == 401
    assert slack.bot_messages() == []
    assert openai_server.chat_requests == []


async def test_url_verification_and_health(start_slack: StartSlack) -> None:
    proc = await start_slack()
    body = json.dumps({"token": "t", "challenge": "c-123", "type": "url_verification"})
    status, text = await proc.post(body, "application/json")
    assert status == 200 and "c-123" in text
    assert proc.http is not None
    async with proc.session.get(f"http://127.0.0.1:{proc.http.port}/healthz") as response:
        assert response.status == 200
        assert (await response.json())["ok"] is True


async def test_answer_from_the_knowledge_base_cites_its_sources(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI, knowledge_dir: Path
) -> None:
    openai_server.reply_text = "Open a ticket under Hardware [1]."
    proc = await start_slack(data_dir=knowledge_dir, rag_default=True)
    mention = app_mention("how do I request a laptop?")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)
    [answer] = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert answer.text == "Open a ticket under Hardware [1]."
    assert "[1]" in answer.context_text() and "Laptops" in answer.context_text()
    prompt = json.dumps(openai_server.chat_requests[-1].body["messages"])
    assert "IT portal" in prompt  # the retrieved passage reached the model


async def test_a_failed_stream_start_falls_back_for_that_answer_only(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    slack.fail_next("chat.startStream", "channel_type_not_supported")
    proc = await start_slack()
    first, second = app_mention("one"), app_mention("two")
    await proc.send_event(first)
    await proc.bot.wait_processed(1)
    await proc.send_event(second)
    await proc.bot.wait_processed(2)
    [a] = slack.bot_messages("C1", thread_ts=first["ts"])
    [b] = slack.bot_messages("C1", thread_ts=second["ts"])
    assert not a.streamed and a.buttons()
    assert b.streamed and b.buttons()


async def test_slack_failing_mid_answer_closes_the_stream_and_continues_with_edits(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    slack.fail_next("chat.appendStream", "msg_too_long")
    proc = await start_slack()
    mention = app_mention("break please")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)
    streamed, rest = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert streamed.streamed and not streamed.stream_open  # closed, not left "typing"
    assert not rest.streamed and rest.block_text == "The answer is in the docs [1]."  # nothing lost
    assert rest.buttons()
    # The workspace keeps native streaming: msg_too_long is about that message, not the method.
    await proc.send_event(app_mention("again"))
    await proc.bot.wait_processed(2)
    assert len(slack.calls_to("chat.startStream")) == 2


STREAM_FAILURES = [
    ("chat.startStream", 500, "text/plain", "Internal Server Error", 2),  # 2: the client retries a 500 once
    ("chat.startStream", 404, "text/plain", "404: Not Found", 1),
    ("chat.startStream", 200, "text/html", "<html><body>It works!</body></html>", 1),
    ("chat.startStream", 200, "application/json", "not json at all", 1),
    ("chat.appendStream", 503, "text/html", "<h1>Service Unavailable</h1>", 2),
    ("chat.appendStream", 200, "application/json", '{"ok": false, "error": "internal_error"}', 1),
    ("chat.stopStream", 404, "text/plain", "404: Not Found", 1),
]


@pytest.mark.parametrize(
    ("method", "status", "content_type", "body", "count"),
    STREAM_FAILURES,
    ids=[f"{m}-{s}-{c.split('/')[1]}" for m, s, c, _, _ in STREAM_FAILURES],
)
async def test_any_failure_of_the_streaming_methods_falls_back_to_edits(
    start_slack: StartSlack,
    slack: FakeSlack,
    openai_server: FakeOpenAI,
    method: str,
    status: int,
    content_type: str,
    body: str,
    count: int,
) -> None:
    """Error JSON, HTTP 4xx/5xx, HTML or broken JSON from any streaming method: the answer still
    arrives whole (once), with its buttons, in its thread, and no stream is left open by us."""
    openai_server.reply_text = "Whole answer."
    slack.fail_http_next(method, status, body, content_type, count=count)
    proc = await start_slack()
    mention = app_mention("stream, or else")
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)
    parts = slack.bot_messages("C1", thread_ts=mention["ts"])
    shown = "\n".join(p.text if p.streamed else p.block_text for p in parts)
    assert shown.count("Whole answer.") == 1, shown
    assert parts[-1].buttons()
    assert not any(":warning:" in p.text for p in parts)


async def test_events_nobody_handles_are_acknowledged_not_404(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    """bolt answers 404 to a request no listener matches; Slack retries those, then disables the
    subscription."""
    proc = await start_slack()
    for event in (
        {"type": "reaction_added", "user": "U1", "reaction": "tada", "event_ts": next_ts()},
        {"type": "member_joined_channel", "user": "U1", "channel": "C1", "event_ts": next_ts()},
        {"type": "app_home_opened", "user": "U1", "tab": "home", "event_ts": next_ts()},
    ):
        status, _ = await proc.send_event(event)
        assert status == 200
    assert slack.bot_messages() == []


async def test_malformed_signed_requests_are_acknowledged_and_the_bot_carries_on(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    proc = await start_slack()
    broken = '{"type": "event_callback", "event": {"type": "app_mention", '
    assert (await proc.post(broken, "application/json"))[0] == 200
    assert (await proc.post(broken, "application/json", secret="forged"))[0] == 401
    assert (await proc.post("[1, 2, 3]", "application/json"))[0] == 200
    not_an_object = dict(event_callback(app_mention("x")), event="app_mention")
    assert (await proc.send_body(not_an_object))[0] == 200
    assert (await proc.post(json.dumps(not_an_object), "application/json", secret="forged"))[0] == 401
    empty = app_mention("text is null") | {"text": None}  # a mention with nothing after it
    odd_fields = [
        empty,
        app_mention("ts is a number") | {"ts": 1700000000.5},
        app_mention("user is an object") | {"user": {"id": "U1"}},
        app_mention("channel is a list") | {"channel": ["C1"]},
        message_event("subtype is a number", channel="D1", channel_type="im") | {"subtype": 7},
        {"type": "message", "channel_type": "im"},  # nearly empty
        {"type": 42},
    ]
    for event in odd_fields:
        assert (await proc.send_event(event))[0] == 200
    mention = app_mention("still there?")
    assert (await proc.send_event(mention))[0] == 200
    await slack.wait_for(lambda: any(m.buttons() for m in slack.bot_messages("C1", thread_ts=mention["ts"])))
    await proc.settle()
    [prompt] = slack.bot_messages("C1", thread_ts=empty["ts"])
    assert "Ask me something" in prompt.block_text
    assert {m.thread_ts for m in slack.bot_messages()} == {empty["ts"], mention["ts"]}
    assert len(openai_server.chat_requests) == 1


async def test_bolt_does_not_call_auth_test_again_per_request(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    proc = await start_slack()
    await proc.send_event(app_mention("one"))
    await proc.bot.wait_processed(1)
    assert len(slack.calls_to("auth.test")) == 1  # ours, at start-up


async def test_without_auth_test_the_bot_learns_its_id_from_the_events(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    """A server without auth.test: the bot starts anyway, recognises its mention in message events
    through ``authorizations``, strips it from the question, and ignores its own messages."""
    slack.fail_next("auth.test", "unknown_method")
    proc = await start_slack()
    assert proc.bot.identity.user_id == ""
    mention = app_mention("who am I?")
    copy = message_event(mention["text"], ts=mention["ts"])
    await proc.send_event(copy)  # the message copy first: a mention, known from authorizations
    await proc.send_event(mention)
    await proc.send_event(message_event("my own reply", user="UBOT", channel="D1", channel_type="im"))
    await proc.bot.wait_processed(3)
    [answer] = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert answer.buttons()
    assert slack.bot_messages("D1") == []
    question = openai_server.chat_requests[-1].body["messages"][-1]["content"]
    assert "who am I?" in question and "UBOT" not in question
    assert len(openai_server.chat_requests) == 1


async def test_a_40000_character_message_gets_the_polite_refusal_in_its_thread(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    proc = await start_slack()
    mention = app_mention("y" * 40_000)
    await proc.send_event(mention)
    await proc.bot.wait_processed(1)
    [refusal] = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert "40,000 characters" in refusal.text and "12,000" in refusal.text
    assert openai_server.chat_requests == []


async def test_without_chat_update_answers_are_posted_once_when_complete(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    """An API without chat.update (nor streaming): the first answer learns it (its placeholder
    stays, the answer follows in full); every later answer is one message, posted when complete."""
    slack.streaming = False
    slack.fail_next("chat.update", "unknown_method", count=50)
    openai_server.reply_text = "Complete answer."
    openai_server.chunks_per_reply = 8
    proc = await start_slack()
    first, second = app_mention("one"), app_mention("two")
    await proc.send_event(first)
    await proc.bot.wait_processed(1)
    *_, answer = slack.bot_messages("C1", thread_ts=first["ts"])
    assert answer.block_text == "Complete answer." and answer.buttons()
    updates = len(slack.calls_to("chat.update"))
    await proc.send_event(second)
    await proc.bot.wait_processed(2)
    [only] = slack.bot_messages("C1", thread_ts=second["ts"])
    assert only.block_text == "Complete answer." and only.buttons()
    assert len(slack.calls_to("chat.update")) == updates  # not tried again


async def test_a_post_message_without_ts_means_answers_are_posted_once(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    """A server whose chat.postMessage answers just {"ok": true}: nothing can be edited, so after
    the first answer each answer is a single message."""
    slack.streaming = False
    slack.fail_http_next("chat.postMessage", 200, '{"ok": true}', "application/json", count=1)
    proc = await start_slack()
    first, second = app_mention("one"), app_mention("two")
    await proc.send_event(first)
    await proc.bot.wait_processed(1)
    [answer] = slack.bot_messages("C1", thread_ts=first["ts"])  # the placeholder went unrecorded
    assert answer.buttons() and not slack.calls_to("chat.update")
    await proc.send_event(second)
    await proc.bot.wait_processed(2)
    [only] = slack.bot_messages("C1", thread_ts=second["ts"])
    assert only.buttons() and only.edits == 0
    assert len(slack.calls_to("chat.postMessage")) == 3  # placeholder (no ts), answer, answer
