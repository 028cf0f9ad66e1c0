"""Exactly once, losing nothing: two-state event claims (in progress with a renewed lease, then done).

The protocol on real Redis; the engine keeping, finishing and freeing its claim; and two real
``bothbot slack`` processes on one Redis, the first killed mid-answer, the platform's retry
answered by the second — once.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis

from bot.channels import ChannelSettings
from bot.messages import FinalAnswer, Status
from bot.runtime import Runtime
from bot.state import EVENT_DONE, POOL_CONNECTIONS, StateStore, connect_redis
from tests.conftest import TEST_REDIS_URL
from tests.core.helpers import ask, collect, message
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import SIGNING_SECRET, app_mention, event_callback, sign
from tests.fakes.slack_server import BOT_TOKEN, FakeSlack
from tests.processes import bothbot_command, free_port


@pytest.fixture
async def store(redis_prefix: str, redis_cleanup: aioredis.Redis) -> AsyncIterator[StateStore]:
    client, _ = connect_redis(TEST_REDIS_URL)
    state = StateStore(client, redis_prefix)
    yield state
    await state.aclose()


# --- the protocol ---------------------------------------------------------------------------------


async def test_claim_states_on_one_key_under_the_prefix(store: StateStore, redis_prefix: str) -> None:
    claim = await store.claim_event("e1", lease_seconds=30)
    assert claim is not None
    assert await store.redis.get(f"{redis_prefix}:event:e1") == claim.token
    assert 0 < await store.redis.pttl(f"{redis_prefix}:event:e1") <= 30_000  # the lease, not the dedup TTL
    assert await store.claim_event("e1", lease_seconds=30) is None  # in progress: a retry is not answered
    assert await store.renew_event(claim, lease_seconds=60)
    assert await store.redis.pttl(f"{redis_prefix}:event:e1") > 30_000
    assert await store.finish_event(claim, ttl_seconds=3600)
    assert await store.event_state("e1") == EVENT_DONE
    assert await store.redis.ttl(f"{redis_prefix}:event:e1") > 3500
    assert await store.claim_event("e1", lease_seconds=30) is None  # done: a retry is not answered
    assert not await store.renew_event(claim, lease_seconds=30)  # done is nobody's lease


async def test_a_released_claim_is_answered_by_the_retry(store: StateStore) -> None:
    first = await store.claim_event("e2", lease_seconds=30)
    assert first is not None
    assert await store.release_event(first)
    second = await store.claim_event("e2", lease_seconds=30)
    assert second is not None and second.token != first.token
    assert not await store.release_event(first)  # not ours any more: the new claim stays
    assert await store.event_state("e2") == second.token


async def test_a_lease_run_out_goes_to_the_next_claim_and_stays_there(store: StateStore, redis_prefix: str) -> None:
    dead = await store.claim_event("e3", lease_seconds=30)
    assert dead is not None
    await store.redis.delete(f"{redis_prefix}:event:e3")  # the lease runs out: the owner died
    alive = await store.claim_event("e3", lease_seconds=30)
    assert alive is not None
    assert not await store.renew_event(dead, lease_seconds=30)  # the old owner cannot take it back
    assert not await store.finish_event(dead, ttl_seconds=3600)  # nor mark the other's answer done
    assert await store.event_state("e3") == alive.token
    assert await store.finish_event(alive, ttl_seconds=3600)


async def test_finishing_after_the_lease_ran_out_unclaimed_still_marks_done(
    store: StateStore, redis_prefix: str
) -> None:
    claim = await store.claim_event("e4", lease_seconds=30)
    assert claim is not None
    await store.redis.delete(f"{redis_prefix}:event:e4")  # a long stall; nobody retried meanwhile
    assert await store.finish_event(claim, ttl_seconds=3600)
    assert await store.event_state("e4") == EVENT_DONE


# --- the engine -----------------------------------------------------------------------------------


async def test_engine_renews_its_claim_while_answering_and_marks_it_done(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    lease = 0.6
    runtime: Runtime = await start_runtime(
        **{**model_settings, "event_lease_seconds": lease, "model_timeout_seconds": 60, "answer_deadline_seconds": 60}
    )
    openai_server.hang_next()
    msg = message("How do I request a laptop?")
    answering = asyncio.create_task(collect(runtime.engine, msg))
    await openai_server.wait_for(lambda: openai_server.chat_requests)
    await asyncio.sleep(lease * 2.5)  # what the lease needs: it would have run out twice without renewal
    state = await runtime.state.event_state(msg.event_id)
    assert state is not None and state.startswith("run:")
    assert await collect(runtime.engine, msg) == []  # the retry while answering is not answered
    openai_server.release_hangs()
    events = await answering
    assert isinstance(events[-1], FinalAnswer)
    assert await runtime.state.event_state(msg.event_id) == EVENT_DONE
    assert await collect(runtime.engine, msg) == []  # nor the retry after it is done
    assert len(openai_server.chat_requests) == 1


async def test_answer_failing_before_a_reply_frees_the_claim_for_the_retry(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)

    def broken_settings(channel_key: str, overrides: Mapping[str, str]) -> ChannelSettings:
        raise RuntimeError("a fault after the claim, before any reply")

    healthy_settings = runtime.engine.channels.resolve
    runtime.engine.channels.resolve = broken_settings  # type: ignore[method-assign]
    msg = message("How do I request a laptop?")
    with pytest.raises(RuntimeError):
        await collect(runtime.engine, msg)
    assert await runtime.state.event_state(msg.event_id) is None  # freed, not left to run out
    runtime.engine.channels.resolve = healthy_settings  # type: ignore[method-assign]
    events = await collect(runtime.engine, msg)  # the platform's retry
    assert isinstance(events[-1], FinalAnswer) and events[-1].kind == "answer"
    assert await runtime.state.event_state(msg.event_id) == EVENT_DONE


async def test_answer_closed_after_only_a_status_frees_the_claim(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    msg = message("How do I request a laptop?")
    events = runtime.engine.handle(msg)
    assert isinstance(await anext(events), Status)
    await events.aclose()  # the adapter gave up (shutdown, platform error) before anything was shown
    assert await runtime.state.event_state(msg.event_id) is None
    answered = await collect(runtime.engine, msg)
    assert isinstance(answered[-1], FinalAnswer)


# --- two real processes ---------------------------------------------------------------------------


class BotProcess:
    """One ``bothbot slack`` in HTTP mode, its output read line by line as it comes."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.base = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self._changed = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for raw in self.process.stdout:
            async with self._changed:
                self.lines.append(raw.decode(errors="replace"))
                self._changed.notify_all()
        async with self._changed:
            self._changed.notify_all()

    async def wait_for_line(self, text: str, count: int = 1, timeout: float = 20) -> None:
        def seen() -> bool:
            return sum(text in line for line in self.lines) >= count or self._reader.done()

        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(seen), timeout)
        assert sum(text in line for line in self.lines) >= count, "".join(self.lines)

    async def wait_healthy(self, session: aiohttp.ClientSession, timeout: float = 30) -> None:
        async def poll() -> None:
            while True:
                assert self.process.returncode is None, "".join(self.lines)
                try:
                    async with session.get(f"{self.base}/healthz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)  # polling a starting process, bounded by the timeout

        await asyncio.wait_for(poll(), timeout)

    async def post_event(self, session: aiohttp.ClientSession, body: str, retry: int = 0) -> None:
        headers = {"Content-Type": "application/json", **sign(body)}
        if retry:
            headers |= {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"}
        async with session.post(f"{self.base}/slack/events", data=body, headers=headers) as response:
            assert response.status == 200

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
        await asyncio.wait_for(self.process.wait(), 20)
        await self._reader


async def _start_bot(tmp_path: Path, name: str, env: dict[str, str]) -> BotProcess:
    home = tmp_path / name
    home.mkdir()
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        *bothbot_command("slack"),
        env={**env, "HOME": str(home), "PORT": str(port), "BOTHBOT_DATA_DIR": str(home / "data")},
        cwd=str(home),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    return BotProcess(process, port)


async def test_a_replica_killed_mid_answer_loses_nothing(
    openai_server: FakeOpenAI, redis_prefix: str, redis_cleanup: aioredis.Redis, tmp_path: Path
) -> None:
    """SIGKILL the replica answering; the platform's retry of the same event reaches the other, which
    answers once it is sure the first is gone (its lease ran out) — exactly one complete answer."""
    lease = 2.0
    env = {
        "PATH": os.environ.get("PATH", ""),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "REDIS_URL": TEST_REDIS_URL,
        "BOTHBOT_REDIS_PREFIX": redis_prefix,
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_API_KEY": "sk-test",
        "BOTHBOT_RAG_DEFAULT": "false",
        "BOTHBOT_MODEL_MAX_RETRIES": "0",
        "BOTHBOT_MODEL_TIMEOUT_SECONDS": "120",
        "BOTHBOT_ANSWER_DEADLINE_SECONDS": "120",
        "BOTHBOT_EVENT_LEASE_SECONDS": str(lease),
        "BOTHBOT_SLACK_EDIT_INTERVAL_SECONDS": "0",
    }
    openai_server.reply_text = "Open a ticket in the IT portal."
    async with FakeSlack() as slack, aiohttp.ClientSession() as session:
        env["SLACK_API_URL"] = slack.api_url
        first, second = await asyncio.gather(_start_bot(tmp_path, "a", env), _start_bot(tmp_path, "b", env))
        try:
            await asyncio.gather(first.wait_healthy(session), second.wait_healthy(session))
            mention = app_mention("How do I request a laptop?")
            body = json.dumps(event_callback(mention))
            openai_server.hang_next()
            await first.post_event(session, body)
            await openai_server.wait_for(lambda: openai_server.chat_requests, 20)  # the first is answering

            await asyncio.sleep(lease * 1.5)  # what the lease needs: alive past it only because it is renewed
            await second.post_event(session, body, retry=1)
            await second.wait_for_line("duplicate event")  # in progress elsewhere: not answered twice

            first.process.kill()
            await first.process.wait()
            key = next(iter([k async for k in redis_cleanup.scan_iter(match=f"{redis_prefix}:event:*")]))
            left = await redis_cleanup.pttl(key)
            assert 0 < left <= lease * 1000  # still claimed by the dead replica, until its lease runs out
            await asyncio.sleep(left / 1000)  # what the lease needs: no renewal comes any more
            assert not await redis_cleanup.exists(key)
            await second.post_event(session, body, retry=2)
            await slack.wait_for(lambda: any(slack.finished(m) for m in slack.bot_messages("C1", mention["ts"])), 30)

            await second.post_event(session, body, retry=3)  # after done: ignored too
            await second.wait_for_line("duplicate event", count=2)
            answers = [m for m in slack.bot_messages("C1", mention["ts"]) if slack.finished(m)]
            assert len(answers) == 1
            assert "Open a ticket in the IT portal." in answers[0].text
            assert len(openai_server.chat_requests) == 2  # the killed try, and the retry's
            state = await redis_cleanup.get(key)
            assert (state.decode() if isinstance(state, bytes) else state) == EVENT_DONE
        finally:
            for bot in (first, second):
                if bot.process.returncode is None:
                    bot.process.send_signal(signal.SIGTERM)
            for bot in (first, second):
                await bot.stop()
    assert second.process.returncode == 0, "".join(second.lines)


@pytest.mark.parametrize("in_process", [False, True], ids=["redis", "in-process"])
async def test_a_burst_of_conversations_beyond_the_redis_pool_is_answered_whole(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI, in_process: bool
) -> None:
    """More answers start at once than the pool has connections: they wait for one, none fails."""
    limits = {"rate_limit_user": 0, "rate_limit_channel": 0}
    runtime: Runtime = await start_runtime(**model_settings, **limits, **({"redis_url": None} if in_process else {}))
    burst = POOL_CONNECTIONS + 50
    finals = await asyncio.gather(
        *(ask(runtime.engine, "How do I request a laptop?", thread=f"burst-{i}", user=f"U{i}") for i in range(burst))
    )
    assert [f.kind for f in finals] == ["answer"] * burst
    assert len(openai_server.chat_requests) == burst
    lengths = [await runtime.state.history_length(f"slack:T1:C1:burst-{i}") for i in range(burst)]
    assert lengths == [2] * burst
