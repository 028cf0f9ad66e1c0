"""Connection-level behaviour: resume after a disconnect, REST rate limits, sharding, endpoints, start-up."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from adapters.discord.client import run_discord, stop_discord
from bot.settings import ConfigError, Settings
from tests.conftest import TEST_REDIS_URL
from tests.discord.conftest import StartBot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI


async def test_gateway_disconnect_is_resumed_and_the_bot_keeps_answering(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot()
    alice = discord_fake.new_user("alice")
    first = await discord_fake.send_message(alice, "before the drop", mention_bot=True)
    await discord_fake.wait_for(lambda: discord_fake.answers(first["id"]))

    await discord_fake.drop_gateway(code=4000)
    during = await discord_fake.send_message(alice, "sent while disconnected", mention_bot=True)
    await discord_fake.wait_for(lambda: discord_fake.resume_count == 1)
    after = await discord_fake.send_message(alice, "after the resume", mention_bot=True)

    await discord_fake.wait_for(lambda: discord_fake.answers(during["id"]) and discord_fake.answers(after["id"]))
    assert discord_fake.identify_count == 1, "the session was resumed, not re-identified"
    [resume] = [op for op in discord_fake.received_ops if op["op"] == 6]
    assert resume["d"]["seq"] >= 2
    assert len(openai_server.chat_requests) == 3  # each question answered exactly once


async def test_rate_limited_post_is_retried_after_retry_after(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    openai_server.reply_text = "Worth the wait."
    await start_bot()
    discord_fake.rate_limit_next("POST", r"/channels/\d+/messages", retry_after=0.05)
    alice = discord_fake.new_user("alice")

    question = await discord_fake.send_message(alice, "rate limit me", mention_bot=True)

    [reply] = await discord_fake.wait_for(lambda: discord_fake.answers(question["id"]))
    assert reply.content == "Worth the wait."
    posts = discord_fake.requests_to("POST", rf"/channels/{question['id']}/messages")
    assert len(posts) == 2, "one 429, then the same post again"
    assert len(discord_fake.bot_messages(question["id"])) == 1


@pytest.mark.parametrize("path", [r"/channels/\d+/messages", r"/channels/\d+/messages/\d+"])
async def test_rate_limit_without_via_header_is_still_honoured(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI, path: str
) -> None:
    """discord.py raises on a 429 without ``Via``; the adapter waits it out instead of losing the answer."""
    openai_server.reply_text = "Patience pays."
    await start_bot(channels={f"discord:{discord_fake.guild_id}:{discord_fake.general['id']}": {"reply_mode": "reply"}})
    discord_fake.rate_limit_next("POST" if path.endswith("messages") else "PATCH", path, retry_after=0.05, via=False)

    question = await discord_fake.send_message(discord_fake.new_user("alice"), "rate limit me", mention_bot=True)

    [reply] = await discord_fake.wait_for(lambda: discord_fake.answers(discord_fake.general["id"]))
    assert reply.content == "Patience pays."
    assert len(discord_fake.bot_messages(discord_fake.general["id"])) == 1
    assert reply.payload["message_reference"]["message_id"] == question["id"]


async def test_stopping_finishes_the_answers_in_progress_first(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    openai_server.reply_text = "Finished before the deploy."
    openai_server.chunks_per_reply = 1
    bot = await start_bot()
    discord_fake.rate_limit_next("PATCH", r"/channels/\d+/messages/\d+", retry_after=0.3)  # holds the answer up
    question = await discord_fake.send_message(discord_fake.new_user("alice"), "quick, a deploy", mention_bot=True)
    await discord_fake.wait_for(lambda: discord_fake.requests_to("PATCH", r"/channels/\d+/messages/\d+"))

    await stop_discord(bot.client)  # what SIGTERM runs

    [answer] = discord_fake.answers(question["id"])
    assert answer.content == "Finished before the deploy."
    assert bot.client.is_closed()


async def test_sharded_process_identifies_with_its_shard_and_answers(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot(discord_shard_count=2, discord_shard_ids=(1,))
    assert type(bot.client).__name__ == "ShardedBothbotClient"
    [identify] = [op for op in discord_fake.received_ops if op["op"] == 2]
    assert identify["d"]["shard"] == [1, 2]
    assert identify["d"]["intents"] & (1 << 15) == 0, "no message-content intent unless enabled"
    assert discord_fake.commands == [], "only the process running shard 0 registers /bothbot"
    alice = discord_fake.new_user("alice")

    question = await discord_fake.send_message(alice, "sharded?", mention_bot=True)

    await discord_fake.wait_for(lambda: discord_fake.answers(question["id"]))


async def test_explicit_gateway_url_skips_discovery_and_content_intent_is_requested(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot(discord_gateway_url=discord_fake.gateway_url, discord_message_content=True)
    assert discord_fake.requests_to("GET", r"/gateway") == []
    [identify] = [op for op in discord_fake.received_ops if op["op"] == 2]
    assert identify["d"]["intents"] & (1 << 15)


async def test_missing_token_names_discord_token(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="DISCORD_TOKEN"):
        await run_discord(make_settings())


async def test_shard_ids_without_count_is_a_clear_error(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="discord_shard_count"):
        await run_discord(make_settings(discord_token="x", discord_shard_ids=(0,)))


async def test_bothbot_discord_command_answers_and_stops_on_sigterm(
    discord_fake: FakeDiscord, openai_server: FakeOpenAI, redis_prefix: str, tmp_path: Path, redis_cleanup: object
) -> None:
    """``bothbot discord`` as the docs say, in a subprocess, with its Discord URLs on the fakes."""
    openai_server.reply_text = "From the real command."
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("BOTHBOT_", "OPENAI_", "DISCORD_", "REDIS_"))},
        "DISCORD_TOKEN": discord_fake.token,
        "DISCORD_API_URL": discord_fake.base_url,
        "DISCORD_GATEWAY_URL": discord_fake.gateway_url,
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_API_KEY": "sk-test",
        "REDIS_URL": TEST_REDIS_URL,
        "BOTHBOT_REDIS_PREFIX": redis_prefix,
        "BOTHBOT_DATA_DIR": str(tmp_path / "data"),
        "BOTHBOT_RAG_DEFAULT": "false",
    }
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "discord",
        env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await discord_fake.wait_for(lambda: discord_fake.identify_count, timeout=30)
        question = await discord_fake.send_message(discord_fake.new_user("alice"), "hello", mention_bot=True)
        [reply] = await discord_fake.wait_for(lambda: discord_fake.answers(question["id"]), timeout=15)
        assert reply.content == "From the real command."
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 15)
        assert proc.returncode == 0, stderr.decode()
        assert discord_fake.token not in stderr.decode()
        assert "sk-test" not in stderr.decode()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_rejected_token_is_a_clear_error(
    make_settings: Callable[..., Settings], discord_fake: FakeDiscord
) -> None:
    settings = make_settings(discord_token="wrong", discord_api_url=discord_fake.base_url)
    with pytest.raises(ConfigError, match="rejected DISCORD_TOKEN"):
        await run_discord(settings)
    assert [r.path for r in discord_fake.requests] == ["/users/@me"]  # stopped at login, nothing else tried
