"""Redis stopped and restarted mid-conversation, on both platforms (a private redis-server the test
owns; the real bolt app and the real discord.Client against their fakes).

While Redis is down, a mention and a thread follow-up in the bot's own thread each get the short,
true ``MEMORY_UNAVAILABLE`` message (within the lookup bound or the client's retries, not a hang),
logged as one warning line each and no traceback; a thread reply the payload does not tie to the
bot stays unanswered. Once Redis is back on the same port, the client reconnects and the next
mention and follow-up are answered as usual.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from adapters.common.memory import StoreUnavailable, lookup
from adapters.common.texts import MEMORY_UNAVAILABLE
from adapters.discord.handlers import DiscordAdapter
from adapters.slack.mrkdwn import escape
from tests.discord.conftest import StartBot
from tests.fakes import discord_payloads as p
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention, message_event, next_ts
from tests.fakes.slack_server import FakeSlack
from tests.redis_server import PrivateRedis
from tests.slack.conftest import StartSlack

ANSWER = "Laptops come from the IT portal."
OUTAGE_SECONDS = 30.0  # an upper bound for waits while Redis is down (the client retries ~5 s)


@pytest.fixture
async def private_redis(tmp_path: Path) -> AsyncIterator[PrivateRedis]:
    async with PrivateRedis(tmp_path / "redis") as server:
        yield server


@pytest.fixture
def redis_url(private_redis: PrivateRedis) -> str:
    """The bot's REDIS_URL (and ``redis_cleanup``'s): the private server."""
    return private_redis.url


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    """The plain OpenAI fake (this folder's conftest holds answers behind a gate)."""
    async with FakeOpenAI(reply_text=ANSWER) as fake:
        yield fake


async def test_a_lookup_is_bounded_and_says_what_failed() -> None:
    with pytest.raises(StoreUnavailable, match="thread lookup: no answer from the state store within 0 s"):
        await lookup(asyncio.Event().wait(), "thread lookup", timeout=0)

    async def refused() -> bool:
        raise RedisConnectionError("Error 111 connecting to 127.0.0.1:1.")

    with pytest.raises(StoreUnavailable, match="reply lookup: Error 111"):
        await lookup(refused(), "reply lookup")


def outage_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


def assert_one_line_each(caplog: pytest.LogCaptureFixture, count: int) -> None:
    records = outage_records(caplog)
    assert len(records) == count, [r.getMessage() for r in records]
    assert all(r.exc_info is None and "state store is unreachable" in r.getMessage() for r in records)
    assert "Traceback" not in caplog.text


async def test_slack_tells_the_user_while_redis_is_down_and_recovers(
    start_slack: StartSlack, slack: FakeSlack, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    proc = await start_slack()
    note = f":warning: {escape(MEMORY_UNAVAILABLE)}"

    def texts(thread_ts: str) -> list[str]:
        return [m.block_text for m in slack.bot_messages("C1", thread_ts=thread_ts)]

    # (1) a mention is answered normally
    first = app_mention("how do I get a laptop?")
    await proc.send_event(first)
    await proc.bot.wait_processed(1)
    assert texts(first["ts"]) == [ANSWER]

    # (2) Redis stops: the mention and the follow-up in a thread under the bot's post hear why
    await private_redis.stop()
    caplog.clear()
    mention = app_mention("and a monitor?")
    bots_thread = next_ts()  # a thread whose parent the bot posted: the payload says so
    followup = message_event("still there?", thread_ts=bots_thread, parent_user_id="UBOT")
    elsewhere = message_event("people talking", thread_ts=next_ts(), parent_user_id="U2")
    for event in (mention, followup, elsewhere):
        await proc.send_event(event)
    await proc.bot.wait_processed(4, timeout=OUTAGE_SECONDS)
    assert texts(mention["ts"]) == [note]
    assert texts(bots_thread) == [note]
    assert [m for m in slack.bot_messages() if m.thread_ts == elsewhere["thread_ts"]] == []  # can't tell: silent
    assert_one_line_each(caplog, 2)

    # (3) Redis is back on the same port: the client reconnects, answers are as usual
    await private_redis.start()
    again = app_mention("and a keyboard?")
    await proc.send_event(again)
    await proc.bot.wait_processed(5, timeout=OUTAGE_SECONDS)
    assert texts(again["ts"]) == [ANSWER]
    await proc.send_event(message_event("and a follow-up?", thread_ts=again["ts"], parent_user_id="U1"))
    await proc.send_event(message_event("back?", thread_ts=bots_thread, parent_user_id="UBOT"))
    await proc.bot.wait_processed(7)
    assert texts(again["ts"]) == [ANSWER, ANSWER]  # the thread was remembered in the restarted Redis
    assert texts(bots_thread) == [note, ANSWER]


async def test_discord_tells_the_user_while_redis_is_down_and_recovers(
    start_bot: StartBot, discord_fake: FakeDiscord, private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture
) -> None:
    general, random = discord_fake.general["id"], discord_fake.random["id"]
    bot = await start_bot(
        discord_message_content=True, channels={f"discord:{discord_fake.guild_id}:{random}": {"reply_mode": "reply"}}
    )
    adapter: DiscordAdapter = bot.client.bothbot  # type: ignore[attr-defined]
    alice = discord_fake.new_user("alice")

    def texts(channel_id: str) -> list[str]:
        return [m.content for m in discord_fake.bot_messages(channel_id)]

    # (1) a mention is answered normally, in a thread the bot opens (and owns)
    question = await discord_fake.send_message(alice, "how do I get a laptop?", mention_bot=True)
    thread_id = question["id"]
    await discord_fake.wait_for(lambda: discord_fake.answers(thread_id))
    assert texts(thread_id) == [ANSWER]
    await discord_fake.send_message(alice, "and a mouse?", mention_bot=True, channel_id=random)  # reply mode
    [answer] = await discord_fake.wait_for(lambda: discord_fake.answers(random))

    # (2) Redis stops: a mention, a follow-up in the bot's thread and a reply to the bot's answer
    # (Discord sends the replied-to message along) each hear why
    await private_redis.stop()
    await adapter.inflight.wait_idle(OUTAGE_SECONDS)
    caplog.clear()
    mention = await discord_fake.send_message(alice, "and a monitor?", mention_bot=True)
    await discord_fake.send_message(alice, "still there?", channel_id=thread_id)
    reply_to_bot = p.message(
        message_id=p.snowflake(), channel_id=random, author=alice, content="and the charger?",
        guild_id=discord_fake.guild_id, member_payload=p.member(alice),
        reference={"message_id": answer.payload["id"], "channel_id": random, "guild_id": discord_fake.guild_id},
    )
    await discord_fake.dispatch("MESSAGE_CREATE", dict(reply_to_bot, referenced_message=answer.payload))
    await discord_fake.wait_for(
        lambda: MEMORY_UNAVAILABLE in texts(general) and len(texts(thread_id)) == 2 and len(texts(random)) == 2,
        timeout=OUTAGE_SECONDS,
    )
    await adapter.inflight.wait_idle(OUTAGE_SECONDS)
    [told] = discord_fake.bot_messages(general)
    assert told.content == MEMORY_UNAVAILABLE
    assert told.payload["message_reference"]["message_id"] == mention["id"]
    assert texts(thread_id) == [ANSWER, MEMORY_UNAVAILABLE]
    assert texts(random) == [ANSWER, MEMORY_UNAVAILABLE]
    assert discord_fake.bot_messages(random)[1].payload["message_reference"]["message_id"] == reply_to_bot["id"]
    assert_one_line_each(caplog, 3)

    # (3) Redis is back on the same port: the next mention and its follow-up are answered as usual
    await private_redis.start()
    again = await discord_fake.send_message(alice, "and a keyboard?", mention_bot=True)
    await discord_fake.wait_for(lambda: discord_fake.answers(again["id"]), timeout=OUTAGE_SECONDS)
    await discord_fake.send_message(alice, "and a follow-up?", channel_id=again["id"])
    await discord_fake.wait_for(lambda: len(discord_fake.answers(again["id"])) == 2)
    assert texts(again["id"]) == [ANSWER, ANSWER]
