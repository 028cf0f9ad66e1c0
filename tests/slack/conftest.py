"""Slack fixtures: the Slack fake, a started runtime on real Redis, and the real bolt app over HTTP."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from adapters.slack.app import SlackBot, build_slack_bot
from adapters.slack.server import EVENTS_PATH, start_http
from bot.listener import Listener
from bot.runtime import Runtime
from bot.settings import Settings
from tests.conftest import PROFILES, IngestDocs
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import (
    SIGNING_SECRET,
    event_callback,
    form_body,
    interactive_body,
    sign,
)
from tests.fakes.slack_server import APP_TOKEN, BOT_TOKEN, FakeSlack

DOCS = {
    "laptops.md": "# Laptops\n\nTo request a laptop, open a ticket in the IT portal under Hardware. "
    "Laptops are delivered within five working days.\n",
    "holidays.md": "# Holidays\n\nEvery employee has 28 days of paid holiday a year.\n",
}


@pytest.fixture
def knowledge_dir(ingest_docs: IngestDocs) -> Path:
    """A data dir with a small knowledge base, ingested with ``bothbot ingest`` as an operator would."""
    return ingest_docs(DOCS)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlack]:
    async with FakeSlack(users={"UADMIN": {"is_admin": True}, "UOWNER": {"is_owner": True}}) as fake:
        yield fake


@pytest.fixture
def slack_settings(
    make_settings: Callable[..., Settings], slack: FakeSlack, openai_server: FakeOpenAI
) -> Callable[..., Settings]:
    """Settings for one Slack process: the fakes, two model profiles, retrieval off by default."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "slack_bot_token": BOT_TOKEN,
            "slack_signing_secret": SIGNING_SECRET,
            "slack_api_url": slack.api_url,
            "openai_base_url": openai_server.base_url,
            "openai_api_key": "sk-test",
            "profiles": PROFILES,
            "default_profile": "base",
            "model_max_retries": 0,
            "model_timeout_seconds": 5,
            "rag_default": False,
            "slack_edit_interval_seconds": 0.0,
        }
        values.update(overrides)
        return make_settings(**values)

    return build


@dataclass
class SlackProcess:
    """One running bot: runtime + bolt app (+ its HTTP server when started over HTTP)."""

    runtime: Runtime
    bot: SlackBot
    http: Listener | None
    session: aiohttp.ClientSession

    @property
    def events_url(self) -> str:
        assert self.http is not None
        return f"http://127.0.0.1:{self.http.port}{EVENTS_PATH}"

    async def post(
        self, body: str, content_type: str, *, headers: dict[str, str] | None = None, secret: str = SIGNING_SECRET
    ) -> tuple[int, str]:
        all_headers = {"Content-Type": content_type, **sign(body, secret), **(headers or {})}
        async with self.session.post(self.events_url, data=body.encode(), headers=all_headers) as response:
            return response.status, await response.text()

    async def send_event(self, event: dict[str, Any], *, retry: int = 0, **kw: Any) -> tuple[int, str]:
        body = json.dumps(event_callback(event, **kw))
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else {}
        return await self.post(body, "application/json", headers=headers)

    async def send_body(self, callback: dict[str, Any], *, retry: int = 0) -> tuple[int, str]:
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else {}
        return await self.post(json.dumps(callback), "application/json", headers=headers)

    async def send_command(self, fields: dict[str, str]) -> tuple[int, str]:
        return await self.post(form_body(fields), "application/x-www-form-urlencoded")

    async def send_action(self, payload: dict[str, Any]) -> tuple[int, str]:
        return await self.post(interactive_body(payload), "application/x-www-form-urlencoded")

    async def settle(self) -> None:
        await self.bot.drain(timeout=15)


StartSlack = Callable[..., Any]


@pytest.fixture
async def start_slack(slack_settings: Callable[..., Settings]) -> AsyncIterator[StartSlack]:
    """``await start_slack(http=True, **settings)`` → a :class:`SlackProcess`; all closed at the end."""
    started: list[SlackProcess] = []
    session = aiohttp.ClientSession()

    async def start(*, http: bool = True, **overrides: Any) -> SlackProcess:
        settings = slack_settings(**overrides)
        runtime = await Runtime.start(settings)
        bot = await build_slack_bot(runtime, settings)
        service = await start_http(bot, "127.0.0.1", 0) if http else None
        process = SlackProcess(runtime=runtime, bot=bot, http=service, session=session)
        started.append(process)
        return process

    yield start
    for process in reversed(started):
        if process.http is not None:
            await process.http.aclose()
        await process.bot.aclose()
        await process.runtime.aclose()
    await session.close()
    await asyncio.sleep(0)


__all__ = ["APP_TOKEN", "PROFILES", "SlackProcess", "StartSlack"]
