"""``bothbot discord`` against a Discord that implements only what a minimal bot needs.

The bot is started as docs/discord.md says (a subprocess, settings from the environment, profiles
from ``bothbot.toml``) with its URLs on ``tests/fakes/discord_minimal.py``: no application info,
no command registration, no threads unless asked, edits optional, 404s for everything else (JSON
or plain text), minimal GUILD_CREATE and response bodies. It must answer every event it has not
seen before exactly once, with the right model per channel, and refuse non-admins.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import discord
import discord.webhook.async_
import pytest
from discord.gateway import DiscordWebSocket
from discord.http import Route

from adapters.discord.client import build_client
from bot.runtime import Runtime
from bot.settings import Settings
from tests.conftest import TEST_REDIS_URL
from tests.fakes.discord_minimal import MANAGE_GUILD, MinimalDiscord, Posted, snowflake
from tests.fakes.openai_server import FakeOpenAI

BASE, TUNED = "base-model", "ft:base-model:acme:support:x1"
TOML = f"""
default_profile = "base"
rag_default = false

[profiles.base]
model = "{BASE}"

[profiles.tuned]
model = "{TUNED}"
"""


def _reply(body: dict[str, Any]) -> str:
    question = str(body["messages"][-1]["content"]).rsplit("\n", 1)[-1].strip()
    return f"{body['model']} answers: {question}"


def model_of(openai: FakeOpenAI, question: str) -> list[str]:
    asked = [r.body for r in openai.chat_requests if str(r.body["messages"][-1]["content"]).endswith(question)]
    return [str(body["model"]) for body in asked]


def slash(sub: str, **options: str) -> dict[str, Any]:
    """``/bothbot <sub> [name:value…]`` in the shape Discord sends (a subcommand of one command)."""
    values = [{"name": k, "type": 3, "value": v} for k, v in options.items()]
    return {"id": "1", "name": "bothbot", "type": 1, "options": [{"name": sub, "type": 1, "options": values}]}


Launch = Callable[..., Awaitable[MinimalDiscord]]


@pytest.fixture
async def launch(
    openai_server: FakeOpenAI, redis_prefix: str, tmp_path: Path, redis_cleanup: object
) -> AsyncIterator[Launch]:
    """Start ``python -m bot discord`` against a fresh MinimalDiscord; stop it with SIGTERM after the test."""
    openai_server.reply_text = _reply
    openai_server.chunks_per_reply = 3
    running: list[tuple[asyncio.subprocess.Process, MinimalDiscord]] = []
    (tmp_path / "bothbot.toml").write_text(TOML)

    async def start(**fake_options: Any) -> MinimalDiscord:
        fake = await MinimalDiscord(**fake_options).__aenter__()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("BOTHBOT_", "OPENAI_", "DISCORD_", "REDIS_"))},
            "DISCORD_TOKEN": fake.token,
            "DISCORD_API_URL": fake.base_url,
            "DISCORD_GATEWAY_URL": fake.gateway_url,
            "OPENAI_BASE_URL": openai_server.base_url,
            "OPENAI_API_KEY": "sk-minimal-secret",
            "REDIS_URL": TEST_REDIS_URL,
            "BOTHBOT_REDIS_PREFIX": redis_prefix,
            "BOTHBOT_DATA_DIR": str(tmp_path / "data"),
            "BOTHBOT_DISCORD_EDIT_INTERVAL_SECONDS": "0",
            "BOTHBOT_DISCORD_COMPAT": "true",  # a stranger's server: tolerate its non-Discord answers
            "BOTHBOT_MODEL_MAX_RETRIES": "0",
        }
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "discord",
            env=env, cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        running.append((proc, fake))
        waiter = asyncio.ensure_future(fake.wait_for(lambda: fake.identified, timeout=30))
        exited = asyncio.ensure_future(proc.wait())
        await asyncio.wait({waiter, exited}, return_when=asyncio.FIRST_COMPLETED)
        if exited.done():
            waiter.cancel()
            _, err = await proc.communicate()
            pytest.fail(f"bothbot discord exited ({proc.returncode}):\n{err.decode()[-3000:]}")
        exited.cancel()
        await waiter
        return fake

    yield start
    for proc, fake in running:
        stderr = b""
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            try:
                _, stderr = await asyncio.wait_for(proc.communicate(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
            assert proc.returncode == 0, f"SIGTERM stops it cleanly: {stderr.decode()[-3000:]}"
        await fake.__aexit__()
        log = stderr.decode()
        print(log[-8000:], *fake.calls, *fake.posted.values(), sep="\n")  # shown when a test fails
        assert fake.token not in log and "sk-minimal-secret" not in log, "a secret reached the log"
        assert "Traceback" not in log, "nothing failed unexpectedly"


def one_answer(fake: MinimalDiscord, question: dict[str, Any], expected: str) -> Callable[[], list[Posted]]:
    def done() -> list[Posted]:
        replies = fake.replies_to(question)
        final = [m for m in replies if m.content.startswith(expected) and m.body.get("components")]  # 👍/👎: done
        return replies if final else []

    return done


async def test_unseen_events_are_answered_once_with_the_channels_model_and_admins_only(
    launch: Launch, openai_server: FakeOpenAI
) -> None:
    fake = await launch()
    alice, ada, mallory = fake.user("alice"), fake.user("ada"), fake.user("mallory")
    first, second = fake.channel_ids

    q1 = await fake.message(alice, "where is the handbook?", channel_id=first)
    q2 = await fake.message(alice, "who approves leave?", channel_id=second)
    dm = await fake.message(alice, "a private question", dm=True, mention=False)
    await fake.dispatch("MESSAGE_CREATE", q1)  # delivered twice: answered once
    for question, text in ((q1, "where is the handbook?"), (q2, "who approves leave?"), (dm, "a private question")):
        await fake.wait_for(one_answer(fake, question, f"{BASE} answers: {text}"))

    admin_cmd = await fake.slash(ada, slash("model", profile="tuned"), channel_id=first, permissions=MANAGE_GUILD)
    refused = await fake.slash(mallory, slash("model", profile="tuned"), channel_id=second)
    [switched] = await fake.wait_for(lambda: fake.followups(admin_cmd))
    [refusal] = await fake.wait_for(lambda: fake.followups(refused))
    assert "now uses profile `tuned`" in switched.content
    assert "Only an admin" in refusal.content

    q3 = await fake.message(alice, "and now?", channel_id=first)
    q4 = await fake.message(alice, "and here?", channel_id=second)
    await fake.wait_for(one_answer(fake, q3, f"{TUNED} answers: and now?"))
    await fake.wait_for(one_answer(fake, q4, f"{BASE} answers: and here?"))

    assert model_of(openai_server, "where is the handbook?") == [BASE]  # once, though delivered twice
    assert model_of(openai_server, "and now?") == [TUNED]
    assert model_of(openai_server, "and here?") == [BASE]
    for question in (q1, q2, dm, q3, q4):
        assert len(fake.replies_to(question)) == 1, "one answer message per question"
    assert len(fake.callbacks[admin_cmd["id"]]) == len(fake.callbacks[refused["id"]]) == 1
    assert len(fake.followups(admin_cmd)) == len(fake.followups(refused)) == 1


# ---------------------------------------------------------------------------------- in process
# The same fake with a client started in this process: quicker, for the variations.

StartMinimal = Callable[..., Awaitable[MinimalDiscord]]


@pytest.fixture
async def minimal_bot(
    monkeypatch: pytest.MonkeyPatch, make_settings: Callable[..., Settings], openai_server: FakeOpenAI
) -> AsyncIterator[StartMinimal]:
    # build_client points discord.py at the fake (class attributes): restore them after. The compat
    # json_or_text needs no restoring: it is removed when the client closes (checked below).
    monkeypatch.setattr(Route, "BASE", Route.BASE)
    monkeypatch.setattr(DiscordWebSocket, "DEFAULT_GATEWAY", DiscordWebSocket.DEFAULT_GATEWAY)
    original = discord.http.json_or_text, discord.webhook.async_.json_or_text
    openai_server.reply_text = _reply
    started: list[tuple[discord.Client, Runtime, asyncio.Task[None], MinimalDiscord]] = []

    async def start(*, settings: dict[str, Any] | None = None, **fake_options: Any) -> MinimalDiscord:
        fake = await MinimalDiscord(**fake_options).__aenter__()
        values: dict[str, Any] = {
            "openai_base_url": openai_server.base_url,
            "openai_api_key": "sk-test",
            "profiles": {"base": {"model": BASE}, "tuned": {"model": TUNED}},
            "default_profile": "base",
            "rag_default": False,
            "discord_token": fake.token,
            "discord_api_url": fake.base_url,  # no gateway URL: the bot asks the server
            "discord_edit_interval_seconds": 0.0,
            "discord_compat": True,  # a stranger's server: tolerate its non-Discord answers
            "model_max_retries": 0,
            **(settings or {}),
        }
        runtime = await Runtime.start(make_settings(**values))
        client = build_client(runtime)
        task = asyncio.create_task(client.start(fake.token))
        started.append((client, runtime, task, fake))
        await fake.wait_for(lambda: fake.identified or task.done())
        if task.done():
            task.result()
        return fake

    yield start
    for client, runtime, task, fake in started:
        await client.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 10)
        await runtime.aclose()
        await fake.__aexit__()
    assert (discord.http.json_or_text, discord.webhook.async_.json_or_text) == original, "compat outlived its client"


async def test_without_edits_or_json_404s_every_answer_still_arrives_once(
    minimal_bot: StartMinimal, openai_server: FakeOpenAI
) -> None:
    fake = await minimal_bot(edits=False, text_404=True, gateway_paths=("/gateway/bot",))
    alice, ada = fake.user("alice"), fake.user("ada")

    question = await fake.message(alice, "is it delivered?")
    command = await fake.slash(ada, slash("model", profile="tuned"), permissions=MANAGE_GUILD)

    await fake.wait_for(one_answer(fake, question, f"{BASE} answers: is it delivered?"))
    [switched] = await fake.wait_for(lambda: fake.followups(command))
    assert "now uses profile `tuned`" in switched.content
    replies = fake.replies_to(question)
    finals = [m for m in replies if m.content.startswith(f"{BASE} answers")]
    assert len(finals) == 1, "the answer is posted once, as a new message, when it cannot be edited"
    assert [m.content for m in replies if m not in finals] == [replies[0].content]  # only the status line
    assert replies[0].content.startswith("-# ")
    assert len(fake.calls_to("PATCH", r"/channels/\d+/messages/\d+")) == 1, "a failed edit is not retried"
    assert not any("went wrong" in m.content for m in fake.posted.values())
    assert fake.calls_to("GET", "/gateway") and fake.calls_to("GET", "/gateway/bot"), "discovery fell back"


async def test_answers_go_into_a_new_thread_when_the_server_has_threads(
    minimal_bot: StartMinimal, openai_server: FakeOpenAI
) -> None:
    fake = await minimal_bot(threads=True)

    question = await fake.message(fake.user("alice"), "thread please")

    [answer] = await fake.wait_for(one_answer(fake, question, f"{BASE} answers: thread please"))
    assert answer.channel_id == question["id"], "answered inside the thread opened on the question"
    assert answer.body.get("message_reference") is None


async def test_a_thread_that_cannot_be_posted_in_falls_back_to_a_reply(
    minimal_bot: StartMinimal, openai_server: FakeOpenAI
) -> None:
    fake = await minimal_bot(threads=True, known_channels_only=True)

    question = await fake.message(fake.user("alice"), "no thread after all")

    [answer] = await fake.wait_for(one_answer(fake, question, f"{BASE} answers: no thread after all"))
    assert answer.channel_id == question["channel_id"]
    assert answer.body["message_reference"]["message_id"] == question["id"]


async def test_a_message_in_a_channel_the_cache_does_not_know_is_answered(
    minimal_bot: StartMinimal, openai_server: FakeOpenAI
) -> None:
    fake = await minimal_bot()
    unknown = snowflake()  # created after GUILD_CREATE: never announced

    question = await fake.message(fake.user("alice"), "new channel?", channel_id=unknown)

    [answer] = await fake.wait_for(one_answer(fake, question, f"{BASE} answers: new channel?"))
    assert answer.channel_id == unknown


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        pytest.param(slash("model"), "This channel uses profile `base`", id="profile-missing"),
        pytest.param(
            {"name": "bothbot", "options": [{"name": "model", "options": [{"name": "profile", "value": "tuned"}]}]},
            "now uses profile `tuned`",
            id="no-option-types",
        ),
        pytest.param(
            {"name": "model", "type": 1, "options": [{"name": "profile", "type": 3, "value": "tuned"}]},
            "now uses profile `tuned`",
            id="top-level-subcommand",
        ),
        pytest.param(
            {"name": "bothbot", "type": 1, "options": [{"name": "command", "type": 3, "value": "model tuned"}]},
            "now uses profile `tuned`",
            id="free-text-line",
        ),
        pytest.param({"name": "bothbot", "type": 1}, "Commands:", id="no-subcommand"),
        pytest.param(slash("frobnicate"), "/bothbot help", id="unknown"),
    ],
)
async def test_slash_commands_shaped_differently_are_understood(
    minimal_bot: StartMinimal, openai_server: FakeOpenAI, data: dict[str, Any], expected: str
) -> None:
    fake = await minimal_bot()

    command = await fake.slash(fake.user("ada"), data, permissions=(1 << 3))  # ADMINISTRATOR, as a string

    def answer() -> str:
        texts = [m.content for m in fake.followups(command)]
        texts += [str((b.get("data") or {}).get("content")) for b in fake.callbacks.get(command["id"], [])]
        return next((t for t in texts if expected in t), "")

    assert expected in await fake.wait_for(answer)
    assert len(fake.callbacks[command["id"]]) == 1


async def test_a_server_channel_message_without_guild_id_keeps_its_channels_settings(
    minimal_bot: StartMinimal, openai_server: FakeOpenAI
) -> None:
    fake = await minimal_bot()
    channel = fake.channel_ids[1]
    command = await fake.slash(fake.user("ada"), slash("model", profile="tuned"), channel_id=channel, permissions=32)
    await fake.wait_for(lambda: fake.followups(command))

    question = await fake.message(fake.user("alice"), "which model here?", channel_id=channel, omit_guild_id=True)

    [answer] = await fake.wait_for(one_answer(fake, question, f"{TUNED} answers: which model here?"))
    assert answer.body["message_reference"]["guild_id"] == fake.guild_id, "answered as a server message, not a DM"
