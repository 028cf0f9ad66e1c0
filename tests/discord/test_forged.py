"""Forged or foreign button presses get a short private refusal, never silence (Discord's "interaction failed")."""

from __future__ import annotations

import pytest

from tests.discord.conftest import StartBot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI

EPHEMERAL = 1 << 6
CHANNEL_MESSAGE = 4


@pytest.mark.parametrize(
    "custom_id",
    ["bothbot:fb:sideways:abc", "bothbot:fb:up:", "bothbot:fb:up:has spaces", "somebody-else:button", ""],
)
async def test_a_malformed_button_press_is_refused_privately(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI, custom_id: str
) -> None:
    await start_bot()
    mallory = discord_fake.new_user("mallory")
    question = await discord_fake.send_message(mallory, "rate me", mention_bot=True)
    [answer] = await discord_fake.wait_for(lambda: discord_fake.answers(question["id"]))

    click = await discord_fake.click(mallory, answer, custom_id)

    [callback] = await discord_fake.wait_for(lambda: discord_fake.callbacks_for(click))
    assert callback["type"] == CHANNEL_MESSAGE
    assert callback["data"]["flags"] & EPHEMERAL
    assert "nothing was recorded" in callback["data"]["content"]


async def test_a_press_naming_an_unknown_trace_is_refused_privately(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot()
    mallory = discord_fake.new_user("mallory")
    question = await discord_fake.send_message(mallory, "rate me", mention_bot=True)
    [answer] = await discord_fake.wait_for(lambda: discord_fake.answers(question["id"]))

    click = await discord_fake.click(mallory, answer, "bothbot:fb:up:forged-trace-id")

    [callback] = await discord_fake.wait_for(lambda: discord_fake.callbacks_for(click))
    assert callback["type"] == CHANNEL_MESSAGE
    assert callback["data"]["flags"] & EPHEMERAL
    assert "couldn't record" in callback["data"]["content"]
    assert await bot.runtime.state.load_trace("forged-trace-id") is None
