"""The Slack and Discord harnesses (their fixtures, reused as they are) with a model that answers
only when the test lets it, so an answer can be held in flight while the bot shuts down."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web

from tests.discord.conftest import discord_fake, start_bot
from tests.fakes.openai_server import FakeOpenAI
from tests.slack.conftest import slack, slack_settings, start_slack

__all__ = ["discord_fake", "slack", "slack_settings", "start_bot", "start_slack"]


@dataclass
class GatedOpenAI(FakeOpenAI):
    """The OpenAI fake, except that a chat completion is answered only once ``gate`` is set
    (the request is recorded at once, so a test can wait for the model call to be in progress)."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)

    async def _record(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        recorded = await super()._record(request)
        if request.path.endswith("/chat/completions"):
            await self.gate.wait()
        return recorded


@pytest.fixture
async def openai_server() -> AsyncIterator[GatedOpenAI]:
    async with GatedOpenAI(reply_text="Laptops come from the IT portal.") as fake:
        try:
            yield fake
        finally:
            fake.gate.set()  # a handler still held lets go, so the fake stops at once


class TaskTree:
    """Every task created while installed, with the task that created it: what an answer started."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.parent: dict[asyncio.Task[Any], asyncio.Task[Any] | None] = {}
        self._previous = self.loop.get_task_factory()
        self.loop.set_task_factory(self._create)

    def _create(self, loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Future[Any]:
        if self._previous is not None:
            task = self._previous(loop, coro, **kwargs)
        else:
            task = asyncio.Task(coro, loop=loop, **kwargs)
        if isinstance(task, asyncio.Task):
            self.parent[task] = asyncio.current_task(loop)
        return task

    def descendants(self, root: asyncio.Task[Any]) -> set[asyncio.Task[Any]]:
        found: set[asyncio.Task[Any]] = set()
        frontier = {root}
        while frontier:
            children = {t for t, p in self.parent.items() if p in frontier and t not in found}
            found |= children
            frontier = children
        return found

    def close(self) -> None:
        self.loop.set_task_factory(self._previous)


@pytest.fixture
async def task_tree() -> AsyncIterator[TaskTree]:
    tree = TaskTree()
    try:
        yield tree
    finally:
        tree.close()
