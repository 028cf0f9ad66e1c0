"""Profiles registered at run time in Redis: rules of registration and removal, origins, retirement warnings."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from bot.model_client import ModelRouter
from bot.profiles import ProfileError, ProfileOrigin, ProfileRegistry, openai_retirement, retirement_warning
from bot.runtime import Runtime
from bot.settings import ModelProfile
from bot.state import StateStore, connect_redis
from tests.core.helpers import ask
from tests.fakes.openai_server import FakeOpenAI

ORIGIN = ProfileOrigin(
    job="tj_1", backend="openai", base_model="gpt-4o-mini", registered_at=datetime(2026, 12, 1, tzinfo=UTC)
)


async def test_registered_profile_is_listed_with_origin_and_routes(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    reader: Runtime = await start_runtime(**model_settings)
    # another process on the same Redis: its own connection, state and router (the embedded store is per process)
    redis, _ = connect_redis(reader.settings.redis_url)
    other_state = StateStore(redis, reader.settings.redis_prefix)
    writer = ProfileRegistry(reader.settings, other_state, ModelRouter({}, timeout_seconds=5, max_retries=0))
    try:
        await reader.engine.profiles.refresh()  # the reader has read the (empty) registry before
        await writer.register("support-ft", ModelProfile(model="ft:gpt-4o-mini:acme:s:1"), ORIGIN)
    finally:
        await other_state.aclose()

    listed = await ask(reader.engine, "models", command=True)
    assert "support-ft: ft:gpt-4o-mini:acme:s:1 — registered from job tj_1 (openai) on 2026-12-01" in listed.text
    assert "base: base-model (this channel, default) — from bothbot.toml" in listed.text

    await ask(reader.engine, "model support-ft", channel="X", command=True, is_admin=True)
    await ask(reader.engine, "How do I request a laptop?", channel="X")
    assert openai_server.chat_requests[-1].body["model"] == "ft:gpt-4o-mini:acme:s:1"
    await ask(reader.engine, "How do I request a laptop?", channel="Y")
    assert openai_server.chat_requests[-1].body["model"] == "base-model"


async def test_registration_rules(start_runtime: Any, model_settings: dict[str, Any]) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    registry = runtime.engine.profiles
    with pytest.raises(ProfileError, match=r"bothbot\.toml"):
        await registry.register("tuned", ModelProfile(model="m"), ORIGIN)
    with pytest.raises(ProfileError, match="not a usable profile name"):
        await registry.register("bad name!", ModelProfile(model="m"), ORIGIN)
    await registry.register("mine", ModelProfile(model="m1"), ORIGIN)
    with pytest.raises(ProfileError, match="already registered"):
        await registry.register("mine", ModelProfile(model="m2"), ORIGIN)
    stored = await registry.registered()
    assert stored["mine"].profile.model == "m1"
    assert stored["mine"].profile.api_key is None  # no key ever reaches Redis
    raw = await runtime.state.redis.hget(runtime.state.key("profiles"), "mine")
    assert "sk-test-secret" not in raw


async def test_unregister_refused_in_use_then_forced(start_runtime: Any, model_settings: dict[str, Any]) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    registry = runtime.engine.profiles
    await registry.register("mine", ModelProfile(model="m1"), ORIGIN)
    await ask(runtime.engine, "model mine", channel="X", command=True, is_admin=True)
    with pytest.raises(ProfileError, match="in use by 1 channel"):
        await registry.unregister("mine")
    assert await registry.channels_using("mine") == ["slack:T1:X"]
    moved = await registry.unregister("mine", force=True, who="cli:ops")
    assert moved == ["slack:T1:X"]
    shown = await ask(runtime.engine, "model", channel="X", command=True)
    assert "`base`" in shown.text
    audit = await runtime.state.recent_audit(5, channel="slack:T1:X")
    assert (audit[0].who, audit[0].before, audit[0].after) == ("cli:ops", "mine", "(default)")
    with pytest.raises(ProfileError, match="no registered profile"):
        await registry.unregister("mine")
    with pytest.raises(ProfileError, match=r"bothbot\.toml"):
        await registry.unregister("base")


async def test_malformed_registered_entry_is_skipped(start_runtime: Any, model_settings: dict[str, Any]) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    await runtime.state.redis.hset(runtime.state.key("profiles"), "broken", "{not json")
    await runtime.engine.profiles.register("fine", ModelProfile(model="m1"), ORIGIN)
    listed = await ask(runtime.engine, "models", command=True)
    assert "fine: m1" in listed.text and "broken" not in listed.text


async def test_retirement_warnings_for_admins(start_runtime: Any, model_settings: dict[str, Any]) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    soon = datetime.now(UTC).date() + timedelta(days=10)
    await runtime.engine.profiles.register("old", ModelProfile(model="ft:gpt-4o:x", retires_on=soon), ORIGIN)
    await ask(runtime.engine, "model old", channel="X", command=True, is_admin=True)
    admin_status = await ask(runtime.engine, "status", channel="X", command=True, is_admin=True)
    assert f"stops answering on {soon.isoformat()}, in 10 days" in admin_status.text
    user_status = await ask(runtime.engine, "status", channel="X", command=True)
    assert "stops answering" not in user_status.text
    admin_models = await ask(runtime.engine, "models", channel="X", command=True, is_admin=True)
    assert "⚠️ profile `old`" in admin_models.text


def test_openai_retirement_dates() -> None:
    assert openai_retirement("gpt-4o-mini-2024-07-18") == date(2027, 1, 14)
    assert openai_retirement("gpt-4.1") == date(2027, 1, 14)
    assert openai_retirement("ft:gpt-4o:acme::x") == date(2027, 1, 14)
    assert openai_retirement("gpt-3.5-turbo") is None
    assert openai_retirement("SmolLM2-135M-Instruct") is None
    profile = ModelProfile(model="m", retires_on=date(2027, 1, 14))
    assert retirement_warning("p", profile, today=date(2026, 12, 1)) is None
    assert "in 30 days" in (retirement_warning("p", profile, today=date(2026, 12, 15)) or "")
    assert "retired on" in (retirement_warning("p", profile, today=date(2027, 2, 1)) or "")


async def test_a_rate_limited_question_leaves_the_registered_profiles_in_place(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    """A refused question reads nothing; the profiles it did not read are not taken as gone."""
    runtime: Runtime = await start_runtime(**{**model_settings, "rate_limit_user": 1, "rate_limit_channel": 0})
    await runtime.engine.profiles.register("mine", ModelProfile(model="m-registered"), ORIGIN)
    await ask(runtime.engine, "model mine", channel="X", command=True, is_admin=True)
    first = await ask(runtime.engine, "How do I request a laptop?", channel="X", user="U7")
    assert first.kind == "answer" and first.profile == "mine"
    refused = await ask(runtime.engine, "And a monitor?", channel="X", user="U7")
    assert refused.kind == "refused"
    assert "mine" in runtime.router.profiles
    assert runtime.router.client("mine") is not None
