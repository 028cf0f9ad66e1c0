"""A real discord.Client (built by the adapter) against the local Discord fake, real Redis, the OpenAI fake."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import discord
import discord.webhook.async_
import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord.client import build_client
from bot.runtime import Runtime
from bot.settings import Settings
from tests.conftest import PROFILES
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI


@dataclass
class RunningBot:
    client: discord.Client
    runtime: Runtime
    settings: Settings
    task: asyncio.Task[None]


StartBot = Callable[..., Awaitable[RunningBot]]


@pytest.fixture
async def discord_fake(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeDiscord]:
    # build_client points these class attributes at the fake; restore them after the test
    monkeypatch.setattr(Route, "BASE", Route.BASE)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", DiscordWebSocket.DEFAULT_GATEWAY)
    monkeypatch.setattr(discord.http, "json_or_text", discord.http.json_or_text)
    monkeypatch.setattr(discord.webhook.async_, "json_or_text", discord.webhook.async_.json_or_text)
    fake = await FakeDiscord().start()
    yield fake
    await fake.close()


def discord_settings(
    make_settings: Callable[..., Settings], fake: FakeDiscord, openai: FakeOpenAI, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "openai_base_url": openai.base_url,
        "openai_api_key": "sk-test",
        "profiles": PROFILES,
        "default_profile": "base",
        "rag_default": False,
        "discord_token": fake.token,
        "discord_api_url": fake.base_url,
        "discord_edit_interval_seconds": 0.0,
        "model_max_retries": 0,
    }
    values.update(overrides)
    return make_settings(**values)


@pytest.fixture
async def start_bot(
    make_settings: Callable[..., Settings], discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> AsyncIterator[StartBot]:
    running: list[RunningBot] = []

    async def start(**overrides: Any) -> RunningBot:
        settings = discord_settings(make_settings, discord_fake, openai_server, **overrides)
        identified = discord_fake.identify_count
        runtime = await Runtime.start(settings)
        client = build_client(runtime)
        task = asyncio.create_task(client.start(discord_fake.token))
        bot = RunningBot(client, runtime, settings, task)
        running.append(bot)
        # Gateway frames are ordered: anything the fake sends after IDENTIFY arrives after READY and
        # GUILD_CREATE. (on_ready itself comes ~2 s later: discord.py waits for more guilds.)
        await discord_fake.wait_for(lambda: discord_fake.identify_count > identified or task.done(), timeout=15)
        if task.done():
            task.result()  # raise the start-up error
        return bot

    yield start
    for bot in running:
        await bot.client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bot.task, 10)
        await bot.runtime.aclose()
