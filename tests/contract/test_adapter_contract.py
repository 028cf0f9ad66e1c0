"""The same conversation scenarios through every adapter: the console, every registered platform
(Slack, Discord) and a toy platform that the tests register themselves (``tests/contract/toy``)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

import adapters
from adapters.discord.specs import DISCORD_SPECS
from bot.command_specs import specs_for
from bot.runtime import Runtime
from bot.settings import Settings
from tests.conftest import BASE_MODEL, TUNED_MODEL, IngestDocs
from tests.contract.drivers import ConsoleDriver, DiscordDriver, Driver, SlackDriver, ToyDriver
from tests.contract.toy.platform import ROOMS, ToyRoom
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import SIGNING_SECRET
from tests.fakes.slack_server import BOT_TOKEN, FakeSlack

BASE, TUNED = BASE_MODEL, TUNED_MODEL


@pytest.fixture
def data_dir(ingest_docs: IngestDocs) -> Path:
    return ingest_docs(
        {
            "laptops.md": "# Laptops\n\nTo request a laptop, open a ticket in the IT portal under Hardware.\n",
            "holidays.md": "# Holidays\n\nEvery employee has 28 days of paid holiday a year.\n",
        }
    )


DRIVEN = ("console", "slack", "discord", "toy")
"""Platforms the contract drives; every registered one must be here (see the first test)."""


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    """A third platform, registered the way a real one is: one line in ``adapters.PLATFORMS``."""
    monkeypatch.setattr(adapters, "PLATFORMS", MappingProxyType({**REGISTERED, "toy": "tests.contract.toy"}))


REGISTERED = dict(adapters.PLATFORMS)


def test_every_registered_platform_is_driven_by_the_contract() -> None:
    assert set(REGISTERED) <= set(DRIVEN)


@pytest.fixture(params=DRIVEN)
async def driver(
    request: pytest.FixtureRequest,
    make_settings: Callable[..., Settings],
    openai_server: FakeOpenAI,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    redis_prefix: str,
    profiles: dict[str, dict[str, str]],
) -> AsyncIterator[Driver]:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "openai_base_url": openai_server.base_url,
        "openai_api_key": "sk-contract",
        "profiles": profiles,
        "default_profile": "base",
        "model_max_retries": 0,
    }
    built: Driver
    if request.param == "console":
        built = ConsoleDriver(await Runtime.start(make_settings(**values)))
        yield built
        await built.close()
    elif request.param == "slack":
        async with FakeSlack(users={"UADMIN": {"is_admin": True}}) as fake:
            settings = make_settings(
                **values,
                slack_bot_token=BOT_TOKEN,
                slack_signing_secret=SIGNING_SECRET,
                slack_api_url=fake.api_url,
                slack_edit_interval_seconds=0.0,
            )
            built = await SlackDriver.start(settings, fake)
            yield built
            await built.close()
    elif request.param == "toy":
        room = ToyRoom()
        monkeypatch.setitem(ROOMS, redis_prefix, room)
        built = await ToyDriver.start(make_settings(**values, toy_room=redis_prefix), room)
        yield built
        await built.close()
    else:
        monkeypatch.setattr(Route, "BASE", Route.BASE)
        monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", DiscordWebSocket.DEFAULT_GATEWAY)
        fake = await FakeDiscord().start()
        try:
            settings = make_settings(
                **values,
                discord_token=fake.token,
                discord_api_url=fake.base_url,
                discord_edit_interval_seconds=0.0,
            )
            built = await DiscordDriver.start(settings, fake)
            yield built
            await built.close()
        finally:
            await fake.close()


async def test_a_question_is_answered_once_from_the_right_source(
    driver: Driver, openai_server: FakeOpenAI
) -> None:
    openai_server.reply_text = "Open a ticket in the IT portal under Hardware [1]."
    shown = await driver.ask("How do I request a laptop?", channel="general")
    assert "Open a ticket in the IT portal under Hardware" in shown
    assert "Laptops" in shown  # the cited source is shown
    assert "Holidays" not in shown  # an uncited one is not
    assert len(openai_server.chat_requests) == 1
    system = openai_server.chat_requests[0].body["messages"][0]["content"]
    assert "[1] Laptops" in system


async def test_an_admin_switches_one_channel_to_the_tuned_model(
    driver: Driver, openai_server: FakeOpenAI
) -> None:
    reply = await driver.command("model tuned", channel="support", admin=True)
    assert "now uses profile `tuned`" in reply
    await driver.ask("How do I request a laptop?", channel="support")
    assert openai_server.chat_requests[-1].body["model"] == TUNED
    await driver.ask("How do I request a laptop?", channel="general")
    assert openai_server.chat_requests[-1].body["model"] == BASE
    shown = await driver.command("model", channel="support", admin=not driver.supports_non_admins)
    assert "`tuned`" in shown


@pytest.mark.parametrize("driver", ["slack", "discord", "toy"], indirect=True)  # the console user is always admin
async def test_a_member_who_is_not_an_admin_changes_nothing(
    driver: Driver, openai_server: FakeOpenAI
) -> None:
    reply = await driver.command("model tuned", channel="support", admin=False, user="mallory")
    assert "Only an admin" in reply
    await driver.ask("How do I request a laptop?", channel="support", user="mallory")
    assert openai_server.chat_requests[-1].body["model"] == BASE


async def test_unknown_commands_get_a_usage_line(driver: Driver) -> None:
    reply = await driver.command("model nosuch", channel="general", admin=True)
    assert "No profile `nosuch`" in reply
    assert "`base`" in reply


async def test_an_admin_runs_an_experiment_between_two_models(driver: Driver, openai_server: FakeOpenAI) -> None:
    started = await driver.command("experiment start tuned base:norag", channel="support", admin=True)
    assert "Started experiment" in started and "`tuned`" in started and "`base:norag`" in started
    await driver.ask("How do I request a laptop?", channel="support")
    request = openai_server.chat_requests[-1].body
    if request["model"] == BASE:  # the base:norag arm answers closed book
        assert "Sources:" not in request["messages"][0]["content"]
    else:
        assert request["model"] == TUNED and "[1] Laptops" in request["messages"][0]["content"]
    shown = await driver.command("experiment", channel="support", admin=not driver.supports_non_admins)
    assert "running since" in shown
    assert "tuned: " in shown and "base:norag: " in shown and "1 answer, 0 rated" in shown
    assert "experiment: tuned vs base:norag" in await driver.command(
        "status", channel="support", admin=not driver.supports_non_admins
    )
    stopped = await driver.command("experiment stop", channel="support", admin=True)
    assert "Stopped experiment" in stopped and "back on its default profile" in stopped
    await driver.ask("How do I request a laptop?", channel="support")
    assert openai_server.chat_requests[-1].body["model"] == BASE
    assert "Sources:" in openai_server.chat_requests[-1].body["messages"][0]["content"]


@pytest.mark.parametrize("driver", ["slack", "discord", "toy"], indirect=True)  # the console user is always admin
async def test_a_member_cannot_start_or_stop_an_experiment(driver: Driver) -> None:
    refused = await driver.command("experiment start tuned base", channel="support", admin=False, user="mallory")
    assert "Only an admin can start an experiment" in refused
    assert "No experiment in this channel" in await driver.command(
        "experiment", channel="support", admin=False, user="mallory"
    )
    await driver.command("experiment start tuned base", channel="support", admin=True)
    refused = await driver.command("experiment stop", channel="support", admin=False, user="mallory")
    assert "Only an admin can stop an experiment" in refused
    assert "running since" in await driver.command("experiment", channel="support", admin=False, user="mallory")


async def test_help_lists_exactly_the_platforms_commands(driver: Driver, request: pytest.FixtureRequest) -> None:
    platform = request.node.callspec.params["driver"]
    shown = await driver.command("help", channel="general", admin=not driver.supports_non_admins)
    offered = specs_for(platform, DISCORD_SPECS)  # Discord's own commands count on Discord only
    for spec in offered:
        assert spec.help in shown, f"{spec.name} is missing from {platform}'s help"
    assert ("replymode" in shown) is (platform == "discord"), "a platform's own command stays on that platform"
