"""``bothbot serve slack discord``: both adapters in one process on one embedded knowledge base."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import aiohttp
import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from tests.conftest import TEST_REDIS_URL, IngestDocs
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import SIGNING_SECRET, app_mention, event_callback, sign
from tests.fakes.slack_server import BOT_TOKEN, FakeSlack
from tests.processes import free_port, wait_healthy


@pytest.fixture
async def discord_fake(monkeypatch: pytest.MonkeyPatch) -> FakeDiscord:
    monkeypatch.setattr(Route, "BASE", Route.BASE)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", DiscordWebSocket.DEFAULT_GATEWAY)
    fake = await FakeDiscord().start()
    yield fake  # type: ignore[misc]
    await fake.close()


@pytest.fixture
def data_dir(ingest_docs: IngestDocs) -> Path:
    return ingest_docs({"laptops.md": "# Laptops\n\nTo request a laptop, open a ticket in the IT portal.\n"})


async def test_one_process_serves_slack_and_discord_from_one_knowledge_base(
    tmp_path: Path,
    data_dir: Path,
    openai_server: FakeOpenAI,
    discord_fake: FakeDiscord,
    redis_prefix: str,
    redis_cleanup: object,
) -> None:
    openai_server.reply_text = "Open a ticket in the IT portal [1]."
    port = free_port()
    async with FakeSlack() as slack:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("BOTHBOT_", "OPENAI_", "DISCORD_", "SLACK_"))},
            "BOTHBOT_DATA_DIR": str(data_dir),
            "REDIS_URL": TEST_REDIS_URL,
            "BOTHBOT_REDIS_PREFIX": redis_prefix,
            "OPENAI_BASE_URL": openai_server.base_url,
            "OPENAI_API_KEY": "sk-serve-secret-42",
            "SLACK_BOT_TOKEN": BOT_TOKEN,
            "SLACK_SIGNING_SECRET": SIGNING_SECRET,
            "SLACK_API_URL": slack.api_url,
            "PORT": str(port),
            "DISCORD_TOKEN": discord_fake.token,
            "DISCORD_API_URL": discord_fake.base_url,
            "DISCORD_GATEWAY_URL": discord_fake.gateway_url,
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", "slack", "discord",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await wait_healthy(f"http://127.0.0.1:{port}/healthz", proc)
            await discord_fake.wait_for(lambda: discord_fake.identify_count, timeout=30)

            mention = app_mention("How do I request a laptop?")
            body = json.dumps(event_callback(mention))
            async with aiohttp.ClientSession() as session:
                headers = {"Content-Type": "application/json", **sign(body)}
                async with session.post(f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers) as r:
                    assert r.status == 200
            await slack.wait_for(lambda: any(m.buttons() for m in slack.bot_messages("C1", mention["ts"])), 20)
            slack_answer = next(m for m in slack.bot_messages("C1", mention["ts"]) if m.buttons())
            assert "IT portal" in slack_answer.text
            assert "laptops.md" in slack_answer.context_text()

            question = await discord_fake.send_message(
                discord_fake.new_user("alice"), "How do I request a laptop?", mention_bot=True
            )
            [reply] = await discord_fake.wait_for(lambda: discord_fake.answers(question["id"]), timeout=20)
            assert "IT portal" in reply.content
            assert len(openai_server.chat_requests) == 2

            proc.send_signal(signal.SIGTERM)
            _, stderr = await asyncio.wait_for(proc.communicate(), 20)
            assert proc.returncode == 0, stderr.decode()
            log = stderr.decode()
            for secret in ("sk-serve-secret-42", BOT_TOKEN, SIGNING_SECRET, discord_fake.token):
                assert secret not in log
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
