"""One driver per adapter, so the same conversation scenarios run through every platform.

Each driver speaks to its adapter the way its platform does (console lines; signed Slack Events API
requests and slash commands; Discord gateway MESSAGE_CREATE and INTERACTION_CREATE; posts in the
toy platform's in-process room) and reads back what a person would see.
"""

from __future__ import annotations

import asyncio
import io
import json
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp

from adapters.console.chat import to_message
from adapters.console.render import render_reply
from adapters.discord.client import build_client
from adapters.slack.app import SlackBot, build_slack_bot
from adapters.slack.server import EVENTS_PATH, start_http
from bot.listener import Listener
from bot.runtime import Runtime
from bot.settings import Settings
from tests.contract.toy.platform import Said, ToyRoom
from tests.fakes import discord_payloads as payloads
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.slack_payloads import app_mention, event_callback, form_body, sign, slash_command
from tests.fakes.slack_server import FakeSlack

TIMEOUT = 20.0


class Driver(Protocol):
    supports_non_admins: bool

    async def ask(self, text: str, *, channel: str, user: str = "alice") -> str:
        """Post a question addressed to the bot; return everything the bot showed in answer."""
        ...

    async def command(self, line: str, *, channel: str, admin: bool, user: str = "alice") -> str:
        """Run a bot command the platform's way; return the reply the caller sees."""
        ...

    async def close(self) -> None: ...


@dataclass
class ConsoleDriver:
    runtime: Runtime
    supports_non_admins: bool = False

    async def _say(self, line: str, channel: str, user: str) -> str:
        out = io.StringIO()
        await render_reply(self.runtime.engine.handle(to_message(line, channel=channel, user=user)), out)
        return out.getvalue()

    async def ask(self, text: str, *, channel: str, user: str = "alice") -> str:
        return await self._say(text, channel, user)

    async def command(self, line: str, *, channel: str, admin: bool, user: str = "alice") -> str:
        assert admin, "the console user is always an admin"
        return await self._say(f"/{line}", channel, user)

    async def close(self) -> None:
        await self.runtime.aclose()


@dataclass
class SlackDriver:
    runtime: Runtime
    fake: FakeSlack
    bot: SlackBot
    http: Listener
    session: aiohttp.ClientSession = field(default_factory=aiohttp.ClientSession)
    supports_non_admins: bool = True

    @classmethod
    async def start(cls, settings: Settings, fake: FakeSlack) -> SlackDriver:
        runtime = await Runtime.start(settings)
        bot = await build_slack_bot(runtime, settings)
        http = await start_http(bot, "127.0.0.1", 0)
        return cls(runtime, fake, bot, http)

    async def _post(self, body: str, content_type: str) -> None:
        headers = {"Content-Type": content_type, **sign(body)}
        url = f"http://127.0.0.1:{self.http.port}{EVENTS_PATH}"
        async with self.session.post(url, data=body.encode(), headers=headers) as response:
            assert response.status == 200, await response.text()

    async def ask(self, text: str, *, channel: str, user: str = "alice") -> str:
        mention = app_mention(text, user=f"U{user.upper()}", channel=channel)
        await self._post(json.dumps(event_callback(mention)), "application/json")

        def answered() -> list[Any]:
            return [m for m in self.fake.bot_messages(channel, mention["ts"]) if m.buttons()]

        await self.fake.wait_for(answered, TIMEOUT)
        return "\n".join(f"{m.block_text}\n{m.context_text()}" for m in self.fake.bot_messages(channel, mention["ts"]))

    async def command(self, line: str, *, channel: str, admin: bool, user: str = "alice") -> str:
        before = len(self.fake.responses)
        url = self.fake.response_url(f"{channel}-{before}")
        fields = slash_command(line, user="UADMIN" if admin else f"U{user.upper()}", channel=channel, response_url=url)
        await self._post(form_body(fields), "application/x-www-form-urlencoded")
        await self.fake.wait_for(lambda: len(self.fake.responses) > before, TIMEOUT)
        return str(self.fake.responses[before]["text"])

    async def close(self) -> None:
        await self.http.aclose()
        await self.bot.aclose()
        await self.runtime.aclose()
        await self.session.close()


@dataclass
class DiscordDriver:
    runtime: Runtime
    fake: FakeDiscord
    client: Any
    task: asyncio.Task[None]
    channels: dict[str, str] = field(default_factory=dict)
    users: dict[str, Any] = field(default_factory=dict)
    supports_non_admins: bool = True

    @classmethod
    async def start(cls, settings: Settings, fake: FakeDiscord) -> DiscordDriver:
        runtime = await Runtime.start(settings)
        client = build_client(runtime, settings)
        task = asyncio.create_task(client.start(fake.token))
        await fake.wait_for(lambda: fake.identify_count or task.done(), TIMEOUT)
        if task.done():
            task.result()
        return cls(runtime, fake, client, task)

    def _channel(self, name: str) -> str:
        if name not in self.channels:
            self.channels[name] = str(self.fake.add_channel(name)["id"])
        return self.channels[name]

    def _user(self, name: str) -> Any:
        if name not in self.users:
            self.users[name] = self.fake.new_user(name)
        return self.users[name]

    async def ask(self, text: str, *, channel: str, user: str = "alice") -> str:
        question = await self.fake.send_message(
            self._user(user), text, channel_id=self._channel(channel), mention_bot=True
        )

        def finished() -> list[Any]:
            answers = self.fake.answers(question["id"])
            return answers if any("components" in m.payload and m.payload["components"] for m in answers) else []

        answers = await self.fake.wait_for(finished, TIMEOUT)
        return "\n".join(m.content for m in answers)

    async def command(self, line: str, *, channel: str, admin: bool, user: str = "alice") -> str:
        sub, _, value = line.partition(" ")
        if sub == "experiment":  # two options, as the registered subcommand has them: action, arms
            action, _, arms = value.partition(" ")
            options = [payloads.slash_option("action", action or "show")]
            options += [payloads.slash_option("arms", arms)] if arms else []
            data = {"id": payloads.snowflake(), "name": "bothbot", "type": 1,
                    "options": [payloads.slash_option(sub, sub=options)]}
            interaction = await self.fake.send_interaction(
                kind=2, data=data, author=self._user(user), channel_id=self._channel(channel), admin=admin
            )
        else:
            interaction = await self.fake.slash(
                self._user(user), sub, value or None, channel_id=self._channel(channel), admin=admin
            )
        [reply] = await self.fake.wait_for(lambda: self.fake.followups_for(interaction), TIMEOUT)
        return reply.content

    async def close(self) -> None:
        await self.client.close()
        await asyncio.wait_for(self.task, TIMEOUT)
        await self.runtime.aclose()


@dataclass
class ToyDriver:
    """The toy platform (``tests/contract/toy``), served by ``adapters.serve`` like any registered one."""

    room: ToyRoom
    stop: asyncio.Event
    task: asyncio.Task[None]
    supports_non_admins: bool = True

    @classmethod
    async def start(cls, settings: Settings, room: ToyRoom) -> ToyDriver:
        from adapters.serve import serve

        stop = asyncio.Event()
        task = asyncio.create_task(serve(settings, ["toy"], stop=stop))  # ``bothbot serve toy``
        return cls(room, stop, task)

    async def _reply(self, post: Said) -> str:
        waiting = asyncio.ensure_future(self.room.wait_for_reply(post, TIMEOUT))
        await asyncio.wait({waiting, self.task}, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():  # serve ended: raise its error
            waiting.cancel()
            self.task.result()
        return (await waiting).text

    async def ask(self, text: str, *, channel: str, user: str = "alice") -> str:
        return await self._reply(await self.room.say(user, channel, text))

    async def command(self, line: str, *, channel: str, admin: bool, user: str = "alice") -> str:
        return await self._reply(await self.room.say(user, channel, f"!{line}", admin=admin))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, TIMEOUT)
