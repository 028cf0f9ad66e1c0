"""The shutdown path of both platforms, through the real bolt app / discord.Client and the fakes:
answers in flight are finished within the grace period; past it, they are cancelled and awaited,
and nothing they started is left running."""

from __future__ import annotations

import asyncio

from adapters.discord.client import stop_discord
from adapters.discord.handlers import DiscordAdapter
from tests.adapters.conftest import GatedOpenAI, TaskTree
from tests.discord.conftest import StartBot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_payloads import app_mention
from tests.fakes.slack_server import FakeSlack
from tests.slack.conftest import StartSlack

REPLY = "Laptops come from the IT portal."


# --- Slack ------------------------------------------------------------------------------------


async def test_slack_shutdown_finishes_the_answers_in_flight(
    start_slack: StartSlack, slack: FakeSlack, openai_server: GatedOpenAI
) -> None:
    proc = await start_slack()
    mention = app_mention("how do I get a laptop?")
    await proc.send_event(mention)
    await openai_server.wait_for_requests(1)  # the answer is being written: the model is answering
    assert proc.bot.in_flight == 1

    closing = asyncio.create_task(proc.bot.aclose(timeout=60))  # what SIGTERM runs
    openai_server.gate.set()  # the model answers while the bot is shutting down
    await asyncio.wait_for(closing, 60)

    [answer] = slack.bot_messages("C1", thread_ts=mention["ts"])
    assert answer.text == REPLY and slack.finished(answer) and answer.buttons()
    assert proc.bot.in_flight == 0 and proc.bot.processed == 1


async def test_slack_shutdown_past_the_grace_period_cancels_and_awaits_the_answers(
    start_slack: StartSlack, slack: FakeSlack, openai_server: GatedOpenAI, task_tree: TaskTree
) -> None:
    proc = await start_slack()
    await proc.send_event(app_mention("how do I get a laptop?"))
    await openai_server.wait_for_requests(1)  # held: this answer will not finish by itself
    [answering] = proc.bot.inflight.tasks

    await asyncio.wait_for(proc.bot.aclose(timeout=0), 60)

    assert answering.cancelled(), "cancelled, and awaited: done when aclose returns"
    assert proc.bot.in_flight == 0
    left = {t for t in task_tree.descendants(answering) if not t.done()}
    assert left == set(), f"still running after shutdown: {left}"
    assert all(not m.buttons() for m in slack.bot_messages("C1")), "no answer was made up"


# --- Discord ----------------------------------------------------------------------------------


async def test_discord_shutdown_finishes_the_answers_in_flight(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: GatedOpenAI
) -> None:
    bot = await start_bot()
    adapter: DiscordAdapter = bot.client.bothbot  # type: ignore[attr-defined]
    question = await discord_fake.send_message(discord_fake.new_user("alice"), "laptop?", mention_bot=True)
    await openai_server.wait_for_requests(1)
    assert adapter.inflight.in_flight == 1

    closing = asyncio.create_task(stop_discord(bot.client, grace=60))  # what SIGTERM runs
    openai_server.gate.set()
    await asyncio.wait_for(closing, 60)

    [answer] = discord_fake.answers(question["id"])  # in the thread opened on the question
    assert answer.content == REPLY
    assert adapter.inflight.in_flight == 0
    assert bot.client.is_closed()


async def test_discord_shutdown_past_the_grace_period_cancels_and_awaits_the_answers(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: GatedOpenAI, task_tree: TaskTree
) -> None:
    bot = await start_bot()
    adapter: DiscordAdapter = bot.client.bothbot  # type: ignore[attr-defined]
    question = await discord_fake.send_message(discord_fake.new_user("alice"), "laptop?", mention_bot=True)
    await openai_server.wait_for_requests(1)
    [answering] = adapter.inflight.tasks

    assert await asyncio.wait_for(adapter.drain(0), 60) == 1

    assert answering.done(), "cancelled, and awaited: done when drain returns"
    assert adapter.inflight.in_flight == 0
    left = {t for t in task_tree.descendants(answering) if not t.done()}
    assert left == set(), f"still running after shutdown: {left}"
    assert discord_fake.answers(question["id"]) == [], "no answer was made up"
    await stop_discord(bot.client, grace=0)
    assert bot.client.is_closed()
