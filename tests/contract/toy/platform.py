"""``PLATFORM``: the toy platform — a tiny IncomingMessage producer and a plain-text renderer."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from dataclasses import dataclass, field

from adapters.base import RuntimePort
from bot.messages import FinalAnswer, IncomingMessage, TextDelta
from bot.settings import Settings
from tests.contract.toy.settings import ToySettings

COMMAND_PREFIX = "!"


@dataclass(frozen=True)
class Said:
    """A post in the toy room: who, where, what; ``reply_to`` is the post a bot reply answers."""

    id: int
    channel: str
    user: str
    text: str
    admin: bool = False
    reply_to: int | None = None


@dataclass
class ToyRoom:
    """The toy "network": people post into it, the bot reads from it and posts its replies back."""

    posts: list[Said] = field(default_factory=list)
    inbox: asyncio.Queue[Said] = field(default_factory=asyncio.Queue)
    changed: asyncio.Condition = field(default_factory=asyncio.Condition)
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    async def say(self, user: str, channel: str, text: str, *, admin: bool = False) -> Said:
        post = Said(next(self._ids), channel, user, text, admin)
        self.posts.append(post)
        await self.inbox.put(post)
        return post

    async def reply(self, to: Said, text: str) -> None:
        self.posts.append(Said(next(self._ids), to.channel, "bot", text, reply_to=to.id))
        async with self.changed:
            self.changed.notify_all()

    def replies(self, to: Said) -> list[Said]:
        return [p for p in self.posts if p.reply_to == to.id]

    async def wait_for_reply(self, to: Said, timeout: float) -> Said:
        async with self.changed:
            await asyncio.wait_for(self.changed.wait_for(lambda: self.replies(to)), timeout)
        return self.replies(to)[0]


ROOMS: dict[str, ToyRoom] = {}
"""Rooms by name (``toy_room``); a test creates one and points the setting at it."""


def to_incoming(post: Said) -> IncomingMessage:
    """The producer: a toy post as the engine's one message type."""
    command = post.text.startswith(COMMAND_PREFIX)
    return IncomingMessage(
        platform="toy",
        workspace="toyland",
        channel=post.channel,
        user=post.user,
        text=post.text.removeprefix(COMMAND_PREFIX) if command else post.text,
        event_id=f"toy:{post.id}",
        mentions_bot=not command,
        is_admin=post.admin,
        command=command,
    )


def render(final: FinalAnswer, streamed: str) -> str:
    """The renderer: the answer's text, then its sources, one line each."""
    lines = [streamed or final.text]
    lines += [f"[{c.index}] {c.title}" for c in final.citations]
    return "\n".join(lines)


class ToyPlatform:
    name = "toy"
    settings_model = ToySettings

    def check(self, settings: Settings) -> None:
        settings.platform(ToySettings)

    async def serve(self, runtime: RuntimePort, stop: asyncio.Event) -> None:
        room = ROOMS[runtime.settings.platform(ToySettings).toy_room]
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                receiving = asyncio.create_task(room.inbox.get())
                await asyncio.wait({receiving, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not receiving.done():
                    receiving.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await receiving
                    break
                await self._answer(runtime, room, receiving.result())
        finally:
            stopping.cancel()

    async def _answer(self, runtime: RuntimePort, room: ToyRoom, post: Said) -> None:
        streamed, final = "", None
        async for event in runtime.engine.handle(to_incoming(post)):
            if isinstance(event, TextDelta):
                streamed += event.text
            elif isinstance(event, FinalAnswer):
                final = event
        if final is not None:
            await room.reply(post, render(final, streamed))


PLATFORM = ToyPlatform()
