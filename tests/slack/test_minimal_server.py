"""``bothbot slack`` in HTTP mode against a stranger's minimal Slack server (issue 4's acceptance check).

The Web API implements only ``auth.test``, ``chat.postMessage`` and ``chat.update``; everything
else (native streaming, ``chat.postEphemeral``, ``users.info``) is an ``unknown_method`` error, a
plain 404 or an HTML page. The bot is started as the docs say (the console script, environment
only) and sent signed requests shaped differently from ours: no ``event_id``, no
``authorizations``, no ``team`` inside the event, no ``client_msg_id`` or ``blocks``, fields we
don't know. Each must be answered once, in the right thread, with the right model per channel.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest

from tests.conftest import TUNED_MODEL
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_minimal import Auth, MinimalSlack, Unknown
from tests.fakes.slack_payloads import SIGNING_SECRET, sign
from tests.processes import bothbot_command, free_port, slack_http_env

BOT_TOKEN = "xoxb-minimal-secret-token"
TUNED = TUNED_MODEL

_ts = iter(range(1, 1_000_000))


def new_ts() -> str:
    return f"1900000000.{next(_ts):06d}"


def bare_callback(event: object, **outer: Any) -> dict[str, Any]:
    """An event_callback with only what the Events API must carry, plus fields we never read."""
    return {
        "type": "event_callback",
        "team_id": "T1",
        "api_app_id": "A1",
        "event": event,
        "event_time": int(time.time()),
        "context_team_id": "T1",
        "x_unexpected": {"nested": [1, 2, 3]},
        **outer,
    }


def bare_mention(text: str, *, channel: str = "C1", user: str = "U1", ts: str | None = None) -> dict[str, Any]:
    ts = ts or new_ts()
    return {
        "type": "app_mention",
        "user": user,
        "text": f"<@UBOT> {text}",
        "ts": ts,
        "channel": channel,
        "event_ts": ts,
        "x_future_field": True,
    }


def bare_message(
    text: str, *, channel: str, channel_type: str, user: str = "U1", ts: str | None = None
) -> dict[str, Any]:
    ts = ts or new_ts()
    return {
        "type": "message",
        "user": user,
        "text": text,
        "ts": ts,
        "channel": channel,
        "channel_type": channel_type,
        "event_ts": ts,
    }


def command(text: str, *, user: str, channel: str = "C1", response_url: str | None) -> dict[str, str]:
    """A slash command with only the fields the bot needs (no trigger_id, user_name …)."""
    fields = {"command": "/bothbot", "text": text, "user_id": user, "channel_id": channel, "team_id": "T1"}
    if response_url is not None:
        fields["response_url"] = response_url
    return fields


@dataclass
class RunningBot:
    base: str
    session: aiohttp.ClientSession
    process: asyncio.subprocess.Process
    sent: int = 0  # requests that reach a listener (each is counted as handled once done)

    async def post(self, body: str, content_type: str, *, retry: int = 0, secret: str = SIGNING_SECRET) -> int:
        headers = {"Content-Type": content_type, **sign(body, secret)}
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        async with self.session.post(f"{self.base}/slack/events", data=body.encode(), headers=headers) as r:
            return r.status

    async def event(self, callback: dict[str, Any], *, retry: int = 0) -> int:
        self.sent += 1
        return await self.post(json.dumps(callback), "application/json", retry=retry)

    async def command(self, fields: dict[str, str]) -> int:
        self.sent += 1
        return await self.post(urlencode(fields), "application/x-www-form-urlencoded")

    async def health(self) -> dict[str, Any]:
        async with self.session.get(f"{self.base}/healthz") as r:
            assert r.status == 200
            return dict(await r.json())

    async def wait(self, what: str, condition: Any, timeout: float = 30.0) -> None:
        """Poll the process (it is another process: nothing to await) until ``condition`` holds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise AssertionError(f"bothbot slack exited with {self.process.returncode} waiting for {what}")
            try:
                if await condition():
                    return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.05)  # polling a subprocess, bounded by the deadline
        raise AssertionError(f"timed out waiting for {what}")

    async def settled(self) -> None:
        """Every request sent so far has been fully handled (answered, refused, or found a duplicate)."""

        async def done() -> bool:
            health = await self.health()
            return bool(health["handled"] >= self.sent and health["in_flight"] == 0)

        await self.wait(f"{self.sent} handled requests", done)


@pytest.fixture
async def openai() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


async def _start(slack: MinimalSlack, openai: FakeOpenAI, tmp_path: Path, redis_prefix: str) -> RunningBot:
    port = free_port()
    (tmp_path / "bothbot.toml").write_text(
        f'default_profile = "base"\n\n[profiles.base]\nmodel = "base-model"\n\n[profiles.tuned]\nmodel = "{TUNED}"\n',
        encoding="utf-8",
    )
    env = slack_http_env(
        slack_api_url=slack.api_url, openai_base_url=openai.base_url, redis_prefix=redis_prefix, home=tmp_path,
        port=port, SLACK_BOT_TOKEN=BOT_TOKEN, OPENAI_API_KEY="sk-minimal-test", BOTHBOT_SLACK_ADMINS="UADMIN",
        BOTHBOT_SLACK_EDIT_INTERVAL_SECONDS="0",
        BOTHBOT_SLACK_COMPAT="true",  # a stranger's server: tolerate its non-Slack answers
    )  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *bothbot_command("slack"),
        env=env,
        cwd=str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    bot = RunningBot(base=f"http://127.0.0.1:{port}", session=aiohttp.ClientSession(), process=process)

    async def healthy() -> bool:
        async with bot.session.get(f"{bot.base}/healthz") as r:
            return r.status == 200

    try:
        await bot.wait("the health check", healthy)
    except BaseException:
        await _stop(bot)
        raise
    return bot


async def _stop(bot: RunningBot) -> str:
    await bot.session.close()
    if bot.process.returncode is None:
        bot.process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(bot.process.communicate(), 30)
    return output.decode(errors="replace")


SERVERS: list[tuple[Unknown, Auth]] = [("json", "full"), ("404", "minimal"), ("html", "missing")]


@pytest.mark.parametrize(("unknown", "auth"), SERVERS, ids=[f"{u}-auth_{a}" for u, a in SERVERS])
async def test_minimal_server_acceptance(
    unknown: Unknown, auth: Auth, openai: FakeOpenAI, tmp_path: Path, redis_prefix: str, redis_cleanup: object
) -> None:
    openai.reply_text = "Open a ticket in the IT portal."
    async with MinimalSlack(unknown=unknown, auth=auth) as slack:
        bot = await _start(slack, openai, tmp_path, redis_prefix)
        log = ""
        try:
            # A mention: answered in the thread of the post.
            first = bare_mention("how do I get a laptop?")
            callback = bare_callback(first)
            assert await bot.event(callback) == 200
            # The same delivery retried by Slack: still one answer.
            assert await bot.event(callback, retry=1) == 200
            await slack.wait_for(lambda: slack.finished("C1", first["ts"]))

            # One post arriving as app_mention and as message (the copy also mentions the bot).
            post = bare_mention("one post, two events")
            copy = bare_message(post["text"], channel="C1", channel_type="channel", ts=post["ts"])
            assert await bot.event(bare_callback(copy)) == 200
            assert await bot.event(bare_callback(post)) == 200
            await slack.wait_for(lambda: slack.finished("C1", post["ts"]))

            # A DM, as a message event with channel_type im: answered in the DM, not in a thread.
            dm = bare_message("hello in private", channel="D5", channel_type="im")
            assert await bot.event(bare_callback(dm)) == 200
            await slack.wait_for(lambda: slack.finished("D5"))

            # /bothbot model tuned by a non-admin (users.info does not exist here), then an admin.
            assert await bot.command(command("model tuned", user="U1", response_url=slack.response_url("user"))) == 200
            await slack.wait_for(lambda: any(r["_key"] == "user" for r in slack.responses))
            admin_url = slack.response_url("admin")
            assert await bot.command(command("model tuned", user="UADMIN", response_url=admin_url)) == 200
            await slack.wait_for(lambda: any(r["_key"] == "admin" for r in slack.responses))
            replies = {r["_key"]: r for r in slack.responses}
            assert replies["user"]["response_type"] == "ephemeral"
            assert "admin" in replies["user"]["text"].lower()
            assert replies["admin"]["response_type"] == "ephemeral"
            assert "tuned" in replies["admin"]["text"] and "admin" not in replies["admin"]["text"].lower()

            # That channel now answers with the fine-tuned model; another channel keeps the base model.
            models_before = len(openai.chat_requests)
            tuned = bare_mention("which model now?")
            await bot.event(bare_callback(tuned))
            await slack.wait_for(lambda: slack.finished("C1", tuned["ts"]))
            other = bare_mention("and here?", channel="C2")
            await bot.event(bare_callback(other))
            await slack.wait_for(lambda: slack.finished("C2", other["ts"]))
            assert [r.body["model"] for r in openai.chat_requests[models_before:]] == [TUNED, "base-model"]

            # No response_url, and no chat.postEphemeral on this server: the reply comes as a DM.
            assert await bot.command(command("status", user="U7", channel="C2", response_url=None)) == 200
            await slack.wait_for(lambda: slack.in_channel("U7"))
            assert slack.in_channel("C2", None) == slack.in_channel("C2", other["ts"])  # nothing else in C2

            # A 40,000-character message: the engine's polite refusal, in the thread.
            huge = bare_mention("x" * 40_000, channel="C3")
            await bot.event(bare_callback(huge))
            await slack.wait_for(lambda: any("12,000" in m.shown() for m in slack.in_channel("C3", huge["ts"])))

            # An event type nobody subscribed to, and signed garbage: acknowledged, never an error status.
            reaction = {"type": "reaction_added", "user": "U1", "reaction": "tada", "event_ts": new_ts()}
            assert await bot.post(json.dumps(bare_callback(reaction)), "application/json") == 200
            assert await bot.post('{"type": "event_callback", "event": ', "application/json") == 200
            assert await bot.post(json.dumps(bare_callback("not an object")), "application/json") == 200
            assert await bot.post("{}", "application/json", secret="forged") == 401

            await bot.settled()
            health = await bot.health()
            assert health["ok"] is True
        finally:
            log = await _stop(bot)
            print(log)  # shown by pytest when the test fails

    assert bot.process.returncode == 0, log
    for thread in (first["ts"], post["ts"], tuned["ts"]):
        [answer] = slack.in_channel("C1", thread)  # exactly one message per post, in its thread
        assert answer.buttons() and answer.shown() == "Open a ticket in the IT portal."
    [refusal] = slack.in_channel("C3", huge["ts"])
    assert "40,000 characters" in refusal.shown()
    [private] = slack.in_channel("D5")
    assert private.thread_ts is None and private.buttons()
    assert [r.body["model"] for r in openai.chat_requests] == ["base-model"] * 3 + [TUNED, "base-model"]
    question = openai.chat_requests[0].body["messages"][-1]["content"]
    assert "how do I get a laptop?" in question and "UBOT" not in question
    assert BOT_TOKEN not in log and SIGNING_SECRET not in log and "sk-minimal-test" not in log
    assert "Traceback" not in log, log
