"""Operations: /healthz, /readyz and /metrics (on Slack's HTTP port and on BOTHBOT_HEALTH_PORT), and
the metrics the engine and the platform API sessions record."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from adapters.base import RuntimePort
from adapters.serve import serve_platforms
from bot.observability import REGISTRY, Readiness, api_method, readiness_of
from bot.settings import PlatformSettings, Settings
from tests.core.conftest import StartRuntime, data_dir, model_settings, start_runtime
from tests.core.helpers import ask, message
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import app_mention
from tests.fakes.slack_server import FakeSlack
from tests.processes import free_port
from tests.slack.conftest import StartSlack, slack, slack_settings, start_slack

__all__ = ["data_dir", "model_settings", "slack", "slack_settings", "start_runtime", "start_slack"]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


# --- labels -----------------------------------------------------------------------------------


def test_api_method_labels_are_bounded_and_hold_no_ids_or_tokens() -> None:
    assert api_method("slack", "/api/chat.postMessage") == "chat.postMessage"
    assert api_method("slack", "/services/T1/B2/secretwebhookpath") == "other"
    assert api_method("discord", "/api/v10/channels/123456789/messages/987") == "channels"
    assert api_method("discord", "/api/v10/webhooks/111/aW50ZXJhY3Rpb246c2VjcmV0/messages/@original") == "webhooks"
    assert api_method("discord", "/api/v10/interactions/222/tok-en.secret/callback") == "interactions"
    assert api_method("discord", "/api/v10/123") == "other"


# --- engine metrics ---------------------------------------------------------------------------


async def test_an_answer_is_counted_by_platform_profile_and_outcome(
    start_runtime: StartRuntime, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime = await start_runtime(**model_settings)
    answers = sample("bothbot_answers_total", platform="slack", profile="base", outcome="answer")
    retrievals = sample("bothbot_stage_seconds_count", stage="retrieval")
    firsts = sample("bothbot_stage_seconds_count", stage="model_first_token")
    totals = sample("bothbot_stage_seconds_count", stage="model_total")
    wholes = sample("bothbot_stage_seconds_count", stage="answer")
    completion = sample("bothbot_model_tokens_total", profile="base", kind="completion")

    final = await ask(runtime.engine, "How do I request a laptop?")

    assert final.kind == "answer"
    assert sample("bothbot_answers_total", platform="slack", profile="base", outcome="answer") == answers + 1
    assert sample("bothbot_stage_seconds_count", stage="retrieval") == retrievals + 1
    assert sample("bothbot_stage_seconds_count", stage="model_first_token") == firsts + 1
    assert sample("bothbot_stage_seconds_count", stage="model_total") == totals + 1
    assert sample("bothbot_stage_seconds_count", stage="answer") == wholes + 1
    if final.usage is not None:
        assert sample("bothbot_model_tokens_total", profile="base", kind="completion") == (
            completion + final.usage.completion_tokens
        )
    assert sample("bothbot_answers_in_progress") == 0


async def test_model_errors_dedup_hits_and_rate_limit_refusals_are_counted(
    start_runtime: StartRuntime, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime = await start_runtime(**model_settings, rate_limit_user=1, rag_default=False)
    model_errors = sample("bothbot_errors_total", kind="model")
    dedup = sample("bothbot_dedup_hits_total", platform="discord")
    refused = sample("bothbot_rate_limit_refusals_total", platform="discord")
    error_answers = sample("bothbot_answers_total", platform="discord", profile="base", outcome="error")

    openai_server.fail_next(500)
    failed = await ask(runtime.engine, "first", platform="discord", event_id="e-1")
    assert failed.kind == "error"
    assert sample("bothbot_errors_total", kind="model") == model_errors + 1
    assert sample("bothbot_answers_total", platform="discord", profile="base", outcome="error") == error_answers + 1

    again = [e async for e in runtime.engine.handle(message("first", platform="discord", event_id="e-1"))]
    assert again == []
    assert sample("bothbot_dedup_hits_total", platform="discord") == dedup + 1

    limited = await ask(runtime.engine, "second", platform="discord", event_id="e-2")
    assert limited.kind == "refused"
    assert sample("bothbot_rate_limit_refusals_total", platform="discord") == refused + 1


# --- readiness --------------------------------------------------------------------------------


async def test_readiness_names_what_is_unreachable_and_reports_models(
    start_runtime: StartRuntime, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime = await start_runtime(**model_settings)
    ready, body = await readiness_of(runtime).check()
    assert ready, body
    assert body["checks"] == {"redis": "ok", "store": "ok"}
    host = openai_server.base_url.split("//")[1].split("/")[0]
    assert body["models"]["base"]["endpoint"] == host  # host:port only: no path, key or password

    import redis.asyncio as aioredis

    nowhere = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")  # nothing listens there
    try:
        ready, body = await Readiness(redis=nowhere, store=runtime.knowledge).check()
    finally:
        await nowhere.aclose()
    assert not ready
    assert body["checks"]["store"] == "ok"
    assert body["checks"]["redis"].startswith("error")


# --- the health port (Socket Mode, Discord) ---------------------------------------------------


class Held:
    """A platform that, once stopped, drains until the test lets it (an answer in flight)."""

    name = "held"
    settings_model = PlatformSettings

    def __init__(self) -> None:
        self.serving = asyncio.Event()
        self.draining = asyncio.Event()
        self.finish = asyncio.Event()

    def check(self, settings: Settings) -> None:
        pass

    async def serve(self, runtime: RuntimePort, stop: asyncio.Event) -> None:
        self.serving.set()
        await stop.wait()
        self.draining.set()
        await self.finish.wait()


async def test_health_port_serves_health_readiness_and_metrics_until_drained(
    make_settings: Callable[..., Settings],
) -> None:
    port = free_port()
    platform, stop = Held(), asyncio.Event()
    task = asyncio.create_task(
        serve_platforms(make_settings(health_port=port, health_host="127.0.0.1"), [platform], stop=stop)
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await asyncio.wait_for(platform.serving.wait(), 60)
        async with aiohttp.ClientSession() as session:
            async with session.get(f"{base}/healthz") as r:
                assert r.status == 200 and (await r.json())["ok"] is True
            async with session.get(f"{base}/readyz") as r:
                body = await r.json()
                assert r.status == 200, body
                assert body["checks"] == {"redis": "ok", "store": "ok"}
            async with session.get(f"{base}/metrics") as r:
                text = await r.text()
                assert r.status == 200 and r.headers["Content-Type"].startswith("text/plain")
                assert "# TYPE bothbot_answers_total counter" in text
                assert "bothbot_stage_seconds" in text

            stop.set()  # SIGTERM: the platform drains; the load balancer must stop sending
            await asyncio.wait_for(platform.draining.wait(), 30)
            async with session.get(f"{base}/readyz") as r:
                assert r.status == 503
                assert (await r.json())["stopping"] is True
            async with session.get(f"{base}/healthz") as r:
                assert r.status == 200  # still alive while draining
        platform.finish.set()
        await asyncio.wait_for(task, 30)
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientConnectionError):
                async with session.get(f"{base}/healthz"):
                    pass
    finally:
        platform.finish.set()
        stop.set()
        await asyncio.wait_for(task, 30)


async def test_no_health_port_by_default(make_settings: Callable[..., Settings]) -> None:
    assert make_settings().health_port is None


# --- Slack HTTP mode: the same endpoints on PORT; Web API calls and 429s --------------------------


async def test_slack_http_port_serves_readiness_and_metrics(start_slack: StartSlack, slack: FakeSlack) -> None:
    proc = await start_slack()
    assert proc.http is not None
    base = f"http://127.0.0.1:{proc.http.port}"
    async with proc.session.get(f"{base}/healthz") as r:
        assert r.status == 200 and (await r.json())["mode"] == "http"
    async with proc.session.get(f"{base}/readyz") as r:
        body = await r.json()
        assert r.status == 200, body
        assert body["checks"] == {"redis": "ok", "store": "ok"}
    async with proc.session.get(f"{base}/metrics") as r:
        assert r.status == 200 and "bothbot_platform_api_calls_total" in await r.text()


async def test_slack_web_api_calls_and_429s_are_counted(
    start_slack: StartSlack, slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    proc = await start_slack()
    posts = sample("bothbot_platform_api_calls_total", platform="slack", method="chat.startStream")
    limited = sample("bothbot_platform_api_rate_limited_total", platform="slack", method="chat.startStream")
    slack.rate_limit_next("chat.startStream")
    mention = app_mention("how do I get a laptop?")
    await proc.send_event(mention)
    await proc.settle()
    assert any(m.buttons() for m in slack.bot_messages("C1", thread_ts=mention["ts"]))
    calls = sample("bothbot_platform_api_calls_total", platform="slack", method="chat.startStream")
    assert calls >= posts + 2  # the 429, then the retry
    assert sample("bothbot_platform_api_rate_limited_total", platform="slack", method="chat.startStream") == (
        limited + 1
    )
