"""Slash commands (admin gate, ephemeral replies, per-channel model) and feedback buttons over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import redis.asyncio as aioredis

from adapters.slack.convert import FEEDBACK_DOWN, FEEDBACK_UP
from bot.messages import IncomingMessage, ReplyEvent
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, block_action, slash_command
from tests.fakes.slack_server import FakeSlack
from tests.slack.conftest import StartSlack


async def test_a_command_is_acked_empty_and_answered_privately(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    # Who may switch a channel's model, and that only that channel changes: tests/contract.
    proc = await start_slack()
    url = slack.response_url("admin-model")
    status, body = await proc.send_command(slash_command("model tuned", user="UADMIN", response_url=url))
    assert status == 200 and body == ""  # acked at once, empty: nothing shown publicly
    await slack.wait_for(lambda: slack.responses)
    [reply] = slack.responses
    assert reply["response_type"] == "ephemeral"
    assert "tuned" in reply["text"]
    assert [c.args["user"] for c in slack.calls_to("users.info")] == ["UADMIN"]


async def test_configured_admins_and_workspace_owners_are_admins_and_cached(
    start_slack: StartSlack, slack: FakeSlack, redis_cleanup: aioredis.Redis, redis_prefix: str
) -> None:
    proc = await start_slack(slack_admins=("UCONF",))
    for user in ("UCONF", "UOWNER", "UOWNER"):
        await proc.send_command(slash_command("rag off", user=user, response_url=slack.response_url()))
    await slack.wait_for(lambda: len(slack.responses) == 3)
    assert all(r["response_type"] == "ephemeral" and "admin" not in r["text"].lower() for r in slack.responses)
    # UCONF needs no lookup; UOWNER is looked up once, then cached in Redis with a TTL.
    assert [c.args["user"] for c in slack.calls_to("users.info")] == ["UOWNER"]
    ttl = await redis_cleanup.ttl(f"{redis_prefix}:slack:admin:T1:UOWNER")
    assert 0 < ttl <= 300


async def test_commands_without_response_url_reply_with_post_ephemeral(
    start_slack: StartSlack, slack: FakeSlack
) -> None:
    proc = await start_slack()
    await proc.send_command(slash_command("status", user="U1", channel="C7"))
    await slack.wait_for(lambda: slack.ephemerals)
    [reply] = slack.ephemerals
    assert reply.channel == "C7" and reply.user == "U1"
    assert reply.text


async def test_models_help_and_empty_command(start_slack: StartSlack, slack: FakeSlack) -> None:
    proc = await start_slack()
    await proc.send_command(slash_command("models", response_url=slack.response_url("models")))
    await proc.send_command(slash_command("", response_url=slack.response_url("empty")))
    await slack.wait_for(lambda: len(slack.responses) == 2)
    by_key = {r["_key"]: r["text"] for r in slack.responses}
    assert "tuned" in by_key["models"] and "base" in by_key["models"]
    assert "model" in by_key["empty"].lower()  # empty invocation shows help


async def test_custom_command_name(start_slack: StartSlack, slack: FakeSlack) -> None:
    proc = await start_slack(slack_command="/askdocs")
    await proc.send_command(slash_command("help", command="/askdocs", response_url=slack.response_url()))
    await slack.wait_for(lambda: slack.responses)


async def test_ask_command_posts_the_question_and_answers_in_its_thread(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    openai_server.reply_text = "Five working days."
    proc = await start_slack()
    await proc.send_command(slash_command("ask how long does a laptop take?", response_url=slack.response_url()))
    await slack.wait_for(lambda: any(m.buttons() for m in slack.bot_messages("C1")))
    question, answer = slack.bot_messages("C1")
    assert question.thread_ts is None and "how long does a laptop take?" in question.text
    assert answer.thread_ts == question.ts and answer.text == "Five working days."
    assert "how long does a laptop take?" in openai_server.chat_requests[-1].body["messages"][-1]["content"]


async def test_feedback_click_is_stored_and_acknowledged(
    start_slack: StartSlack, slack: FakeSlack, redis_cleanup: aioredis.Redis, redis_prefix: str
) -> None:
    proc = await start_slack()
    mention = app_mention("rate me")
    await proc.send_event(mention)
    await slack.wait_for(lambda: any(m.buttons() for m in slack.bot_messages("C1")))
    [answer] = slack.bot_messages("C1")
    up, down = answer.buttons()
    assert (up["action_id"], down["action_id"]) == (FEEDBACK_UP, FEEDBACK_DOWN)
    trace_id = up["value"]

    url = slack.response_url("feedback")
    status, _ = await proc.send_action(
        block_action(FEEDBACK_DOWN, trace_id, user="U2", message_ts=answer.ts, response_url=url)
    )
    assert status == 200
    await slack.wait_for(lambda: slack.responses)
    [ack] = slack.responses
    assert ack["response_type"] == "ephemeral" and ack["replace_original"] is False
    assert "👎" in ack["text"]
    trace_keys = [k async for k in redis_cleanup.scan_iter(match=f"{redis_prefix}:*{trace_id}*")]
    assert trace_keys
    dump = [await _read(redis_cleanup, k) for k in trace_keys]
    assert any("slack:U2" in item and "down" in item for item in dump), dump


async def test_feedback_on_an_unknown_trace_says_so(start_slack: StartSlack, slack: FakeSlack) -> None:
    proc = await start_slack()
    await proc.send_action(block_action(FEEDBACK_UP, "no-such-trace", message_ts="1.2"))
    await slack.wait_for(lambda: slack.ephemerals)
    assert "couldn't record" in slack.ephemerals[0].text


async def _read(client: aioredis.Redis, key: bytes) -> str:
    raw_kind = await client.type(key)
    kind = raw_kind.decode() if isinstance(raw_kind, bytes) else str(raw_kind)
    if kind == "hash":
        return str(await client.hgetall(key))
    if kind == "string":
        return str(await client.get(key))
    if kind == "list":
        return str(await client.lrange(key, 0, -1))
    if kind == "stream":
        return str(await client.xrange(key))
    return kind


async def test_admin_lookup_works_against_a_post_only_api_with_compat(
    start_slack: StartSlack, slack: FakeSlack
) -> None:
    slack.post_only = True
    proc = await start_slack(slack_compat=True)  # a server that is not Slack: opt in to tolerating it
    await proc.send_command(slash_command("rag off", user="UADMIN", response_url=slack.response_url()))
    await slack.wait_for(lambda: slack.responses)
    assert "admin" not in slack.responses[0]["text"].lower()
    assert len(slack.calls_to("users.info")) == 1  # the refused GET is not recorded; the POST is


async def test_a_failing_command_is_reported_privately(start_slack: StartSlack, slack: FakeSlack) -> None:
    class BrokenEngine:
        def handle(self, msg: IncomingMessage) -> AsyncIterator[ReplyEvent]:
            raise RuntimeError("state store unavailable")

    proc = await start_slack()
    proc.bot.interactions.engine = BrokenEngine()  # the failure is injected into the real adapter
    await proc.send_command(slash_command("rag off", user="UADMIN", response_url=slack.response_url()))
    await slack.wait_for(lambda: slack.responses)
    assert "went wrong" in slack.responses[0]["text"]
    assert slack.responses[0]["response_type"] == "ephemeral"


# --- where a private reply goes when the usual ways fail ---------------------------------------


async def test_a_failing_response_url_falls_back_to_post_ephemeral(start_slack: StartSlack, slack: FakeSlack) -> None:
    """An expired response_url answers HTTP 404 without raising: the reply must not be lost."""
    slack.response_url_status = 404
    proc = await start_slack()
    await proc.send_command(slash_command("model tuned", user="UADMIN", response_url=slack.response_url()))
    await slack.wait_for(lambda: slack.ephemerals)
    [reply] = slack.ephemerals
    assert reply.user == "UADMIN" and reply.channel == "C1" and "tuned" in reply.text
    assert slack.calls_to("response_url")  # it was tried first


async def test_without_ephemeral_messages_the_reply_is_a_direct_message(
    start_slack: StartSlack, slack: FakeSlack
) -> None:
    """No response_url and no chat.postEphemeral: the caller gets a DM (still private), not a post
    in the channel."""
    slack.fail_next("chat.postEphemeral", "unknown_method", count=2)
    proc = await start_slack()
    await proc.send_command(slash_command("model tuned", user="UADMIN"))
    await proc.send_command(slash_command("model tuned", user="U1"))
    await proc.bot.wait_processed(2)
    [admin_reply] = slack.bot_messages("UADMIN")
    [user_reply] = slack.bot_messages("U1")
    assert "tuned" in admin_reply.block_text and "admin" in user_reply.block_text.lower()
    assert slack.bot_messages("C1") == []


async def test_when_nothing_private_works_the_reply_is_in_the_channel(
    start_slack: StartSlack, slack: FakeSlack
) -> None:
    slack.fail_next("chat.postEphemeral", "unknown_method")
    slack.fail_next("chat.postMessage", "cannot_dm_bot")  # the DM
    proc = await start_slack()
    await proc.send_command(slash_command("models", user="U1"))
    await proc.bot.wait_processed(1)
    [reply] = slack.bot_messages("C1")
    assert reply.text.startswith("<@U1> ") and reply.block_text.startswith("<@U1>\n")
    assert "tuned" in reply.block_text


async def test_commands_without_trigger_id_are_not_taken_for_duplicates(
    start_slack: StartSlack, slack: FakeSlack
) -> None:
    proc = await start_slack()
    for user, key in (("U1", "first"), ("UADMIN", "second")):
        fields = slash_command("model tuned", user=user, response_url=slack.response_url(key))
        del fields["trigger_id"]
        await proc.send_command(fields)
        await slack.wait_for(lambda key=key: any(r["_key"] == key for r in slack.responses))
    texts = {r["_key"]: r["text"] for r in slack.responses}
    assert "admin" in texts["first"].lower() and "tuned" in texts["second"]


async def test_another_command_name_is_acknowledged_with_a_hint(start_slack: StartSlack) -> None:
    proc = await start_slack()
    status, body = await proc.send_command(slash_command("help", command="/somethingelse"))
    assert status == 200 and "/bothbot" in body


async def test_a_button_that_is_not_ours_is_acknowledged(start_slack: StartSlack, slack: FakeSlack) -> None:
    proc = await start_slack()
    status, _ = await proc.send_action(block_action("someone_elses_button", "v", message_ts="1.2"))
    assert status == 200
    assert slack.ephemerals == []
