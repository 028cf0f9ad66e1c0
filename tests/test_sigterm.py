"""SIGTERM, per platform, as an operator's process manager sends it: ``bothbot slack`` (HTTP and
Socket Mode) and ``bothbot discord`` in a subprocess, against the fakes, with an answer held open by
the model. The process stops taking events, finishes that answer, and exits 0.

Every wait is on an event: a line on the process's stderr, a request reaching a fake, or the
fake's own condition; the answer is let go only once the process has logged that it is stopping.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import pytest

from tests.adapters.conftest import GatedOpenAI
from tests.conftest import TEST_REDIS_URL
from tests.discord.conftest import discord_fake
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_payloads import SIGNING_SECRET, app_mention, event_callback, sign
from tests.fakes.slack_server import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.processes import free_port

__all__ = ["discord_fake"]

REPLY = "Laptops come from the IT portal."
STOPPING = "SIGTERM: finishing the answers in progress"
MODEL_KEY = "sk-sigterm-secret-31337"


@pytest.fixture
async def model() -> AsyncIterator[GatedOpenAI]:
    async with GatedOpenAI(reply_text=REPLY) as fake:
        try:
            yield fake
        finally:
            fake.gate.set()


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as fake:
        yield fake


class Bothbot:
    """One ``bothbot <platform>`` subprocess; its stderr read line by line, kept for the end."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.lines: list[str] = []

    @classmethod
    async def start(cls, platform: str, env: dict[str, str], cwd: Path) -> Bothbot:
        base = {k: v for k, v in os.environ.items() if not k.startswith(("BOTHBOT_", "OPENAI_", "DISCORD_", "SLACK_"))}
        base.pop("PORT", None)
        base.pop("REDIS_URL", None)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", platform,
            env={**base, **env}, cwd=cwd, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        return cls(proc)

    async def line(self, predicate: Callable[[str], bool], timeout: float = 60) -> str:
        """The next stderr line for which ``predicate`` holds (every line read is kept)."""
        assert self.proc.stderr is not None

        async def read() -> str:
            assert self.proc.stderr is not None
            while True:
                raw = await self.proc.stderr.readline()
                if not raw:
                    raise AssertionError(f"bothbot exited ({self.proc.returncode}):\n" + "\n".join(self.lines))
                text = raw.decode(errors="replace").rstrip("\n")
                self.lines.append(text)
                if predicate(text):
                    return text

        return await asyncio.wait_for(read(), timeout)

    async def sigterm(self) -> None:
        """SIGTERM, and wait until the process says it is stopping."""
        self.proc.send_signal(signal.SIGTERM)
        await self.line(lambda text: STOPPING in text)

    async def finish(self, model: GatedOpenAI) -> str:
        """The model answers now (the process is already stopping); the exit status must be 0."""
        model.gate.set()
        assert self.proc.stderr is not None
        rest = await asyncio.wait_for(self.proc.stderr.read(), 60)
        self.lines.extend(rest.decode(errors="replace").splitlines())
        await asyncio.wait_for(self.proc.wait(), 30)
        log = "\n".join(self.lines)
        assert self.proc.returncode == 0, log
        assert MODEL_KEY not in log
        return log

    async def kill(self) -> None:
        if self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()


def _env(tmp_path: Path, redis_prefix: str, model: GatedOpenAI, **more: str) -> dict[str, str]:
    return {
        "REDIS_URL": TEST_REDIS_URL,
        "BOTHBOT_REDIS_PREFIX": redis_prefix,
        "BOTHBOT_DATA_DIR": str(tmp_path / "data"),
        "BOTHBOT_RAG_DEFAULT": "false",
        "OPENAI_BASE_URL": model.base_url,
        "OPENAI_API_KEY": MODEL_KEY,
        **more,
    }


# --- Slack ------------------------------------------------------------------------------------


async def test_slack_http_mode_finishes_the_answer_on_sigterm_and_exits_0(
    slack: FakeSlack, model: GatedOpenAI, redis_prefix: str, tmp_path: Path, redis_cleanup: object
) -> None:
    port = free_port()
    env = _env(
        tmp_path, redis_prefix, model,
        SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_API_URL=slack.api_url, PORT=str(port),
    )  # fmt: skip
    bot = await Bothbot.start("slack", env, tmp_path)
    try:
        await bot.line(lambda text: "HTTP Events API on" in text)
        mention = app_mention("how do I get a laptop?")
        body = json.dumps(event_callback(mention))
        async with aiohttp.ClientSession() as session:
            headers = {"Content-Type": "application/json", **sign(body)}
            async with session.post(f"http://127.0.0.1:{port}/slack/events", data=body, headers=headers) as r:
                assert r.status == 200
        await model.wait_for_requests(1)  # the answer is held open by the model

        await bot.sigterm()
        await bot.finish(model)

        [answer] = [m for m in slack.bot_messages("C1", thread_ts=mention["ts"]) if m.buttons()]
        assert answer.text == REPLY and slack.finished(answer)
    finally:
        await bot.kill()


async def test_slack_socket_mode_finishes_the_answer_on_sigterm_and_exits_0(
    slack: FakeSlack, model: GatedOpenAI, redis_prefix: str, tmp_path: Path, redis_cleanup: object
) -> None:
    env = _env(tmp_path, redis_prefix, model, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_APP_TOKEN=APP_TOKEN,
               SLACK_API_URL=slack.api_url)  # fmt: skip
    bot = await Bothbot.start("slack", env, tmp_path)
    try:
        await bot.line(lambda text: "connected in Socket Mode" in text)
        await slack.wait_for(lambda: slack.connections == 1, 30)
        mention = app_mention("how do I get a laptop?")
        envelope = await slack.send_envelope("events_api", event_callback(mention))
        await slack.wait_ack(envelope, 30)
        await model.wait_for_requests(1)

        await bot.sigterm()
        await bot.finish(model)

        [answer] = [m for m in slack.bot_messages("C1", thread_ts=mention["ts"]) if m.buttons()]
        assert answer.text == REPLY and slack.finished(answer)
        await slack.wait_for(lambda: slack.connections == 0, 30)
    finally:
        await bot.kill()


# --- Discord ----------------------------------------------------------------------------------


async def test_discord_finishes_the_answer_on_sigterm_and_exits_0_with_json_logs_and_health_port(
    discord_fake: FakeDiscord, model: GatedOpenAI, redis_prefix: str, tmp_path: Path, redis_cleanup: object
) -> None:
    """Also: BOTHBOT_LOG_FORMAT=json (every line one object) and BOTHBOT_HEALTH_PORT (/readyz 503
    while draining; /metrics counting the answer in progress and Discord's REST calls)."""
    health = free_port()
    env = _env(
        tmp_path, redis_prefix, model,
        DISCORD_TOKEN=discord_fake.token, DISCORD_API_URL=discord_fake.base_url,
        DISCORD_GATEWAY_URL=discord_fake.gateway_url,
        BOTHBOT_LOG_FORMAT="json", BOTHBOT_HEALTH_PORT=str(health), BOTHBOT_HEALTH_HOST="127.0.0.1",
    )  # fmt: skip
    bot = await Bothbot.start("discord", env, tmp_path)
    base = f"http://127.0.0.1:{health}"
    try:
        await bot.line(lambda text: "/metrics on port" in text)
        await discord_fake.wait_for(lambda: discord_fake.identify_count, timeout=30)
        question = await discord_fake.send_message(discord_fake.new_user("alice"), "laptop?", mention_bot=True)
        await model.wait_for_requests(1)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/readyz") as r:
                assert r.status == 200, await r.text()
            async with session.get(f"{base}/metrics") as r:
                metrics = await r.text()
            assert "bothbot_answers_in_progress 1.0" in metrics
            assert 'bothbot_platform_api_calls_total{method="users",platform="discord"}' in metrics

            await bot.sigterm()
            async with session.get(f"{base}/readyz") as r:  # draining: no more traffic, please
                assert r.status == 503 and (await r.json())["stopping"] is True
        assert bot.proc.returncode is None  # still running: the answer is still held
        log = await bot.finish(model)

        [answer] = discord_fake.answers(question["id"])
        assert answer.content == REPLY
        records = [json.loads(line) for line in log.splitlines()]
        assert all({"time", "level", "logger", "message"} <= set(r) for r in records)
        assert discord_fake.token not in log
    finally:
        await bot.kill()
