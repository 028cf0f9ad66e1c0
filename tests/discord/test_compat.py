"""``BOTHBOT_DISCORD_COMPAT``: off by default, and nothing it patches outlives its client."""

from __future__ import annotations

import discord
import discord.http
import discord.webhook.async_
import pytest

from adapters.discord import compat
from tests.discord.conftest import StartBot
from tests.fakes.discord_server import FakeDiscord


def _json_or_text() -> tuple[object, object]:
    return discord.http.json_or_text, discord.webhook.async_.json_or_text


@pytest.fixture
def original() -> tuple[object, object]:
    assert not compat.installed(), "an earlier test left the compat json_or_text in place"
    return _json_or_text()


async def test_off_by_default_discord_py_is_used_as_it_is(
    start_bot: StartBot, discord_fake: FakeDiscord, original: tuple[object, object]
) -> None:
    bot = await start_bot()
    assert bot.client.bothbot_compat is False  # type: ignore[attr-defined]
    assert not compat.installed() and _json_or_text() == original


async def test_the_patch_is_in_place_only_while_its_client_is_open(
    start_bot: StartBot, discord_fake: FakeDiscord, original: tuple[object, object]
) -> None:
    bot = await start_bot(discord_compat=True)
    assert compat.installed()
    assert discord.webhook.async_.json_or_text is discord.http.json_or_text
    await bot.client.close()
    assert not compat.installed()
    assert _json_or_text() == original, "discord.py's own json_or_text is back once the client closed"


def test_two_clients_share_the_patch_until_the_last_one_closes(original: tuple[object, object]) -> None:
    first, second = discord.Client(intents=discord.Intents.none()), discord.Client(intents=discord.Intents.none())
    compat.install(first)
    compat.install(second)
    compat.install(first)  # idempotent per client
    compat.uninstall(first)
    assert compat.installed(), "the second client still needs it"
    compat.uninstall(second)
    assert _json_or_text() == original
    compat.uninstall(second)  # closing twice is harmless
    assert _json_or_text() == original
