"""Per-channel model routing, admin gating and the audit stream, against the OpenAI fake."""

from __future__ import annotations

from typing import Any

from bot.runtime import Runtime
from tests.core.helpers import ask
from tests.fakes.openai_server import FakeOpenAI


async def test_admin_switches_one_channel_only(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    engine = runtime.engine

    answer = await ask(engine, "How do I request a laptop?", channel="A")
    assert answer.kind == "answer"
    assert openai_server.chat_requests[-1].body["model"] == "base-model"

    refused = await ask(engine, "model tuned", channel="B", command=True, is_admin=False)
    assert refused.kind == "refused"
    assert "admin" in refused.text.lower()
    await ask(engine, "How many holiday days?", channel="B")
    assert openai_server.chat_requests[-1].body["model"] == "base-model"

    switched = await ask(engine, "model tuned", channel="B", command=True, is_admin=True, user="UADMIN")
    assert switched.kind == "command"
    assert "ft:base-model:acme:support:abc123" in switched.text

    b_answer = await ask(engine, "How many holiday days?", channel="B")
    assert openai_server.chat_requests[-1].body["model"] == "ft:base-model:acme:support:abc123"
    assert b_answer.profile == "tuned"
    assert b_answer.model == "ft:base-model:acme:support:abc123"

    await ask(engine, "How do I set up the VPN?", channel="A")
    assert openai_server.chat_requests[-1].body["model"] == "base-model"

    entries = await runtime.state.recent_audit(10)
    assert [(e.setting, e.before, e.after, e.channel) for e in entries] == [
        ("profile", "base", "tuned", "slack:T1:B")
    ]
    assert entries[0].who.startswith("slack:UADMIN")
    audit_reply = await ask(engine, "audit", channel="B", command=True)
    assert "tuned" in audit_reply.text


async def test_second_replica_sees_the_change(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI, make_settings: Any
) -> None:
    first: Runtime = await start_runtime(**model_settings)
    await ask(first.engine, "model tuned", channel="B", command=True, is_admin=True)
    await first.aclose()
    second: Runtime = await start_runtime(**model_settings)
    shown = await ask(second.engine, "model", channel="B", command=True)
    assert "tuned" in shown.text


async def test_unknown_command_and_bad_arguments_get_usage(
    start_runtime: Any, model_settings: dict[str, Any]
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    unknown = await ask(runtime.engine, "frobnicate now", command=True, is_admin=True)
    assert unknown.kind == "refused"
    assert "Unknown command" in unknown.text
    bad = await ask(runtime.engine, "rag maybe", command=True, is_admin=True)
    assert bad.kind == "refused"
    assert bad.text.startswith("Usage: rag on|off")
    missing = await ask(runtime.engine, "model nosuch", command=True, is_admin=True)
    assert missing.kind == "refused"
    assert "base" in missing.text and "tuned" in missing.text
    models = await ask(runtime.engine, "models", command=True)
    assert "ft:base-model:acme:support:abc123" in models.text


async def test_rag_off_sends_no_sources(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    await ask(runtime.engine, "rag off", command=True, is_admin=True)
    answer = await ask(runtime.engine, "How do I request a laptop?")
    system = openai_server.chat_requests[-1].body["messages"][0]["content"]
    assert "Sources:" not in system
    assert answer.citations == ()
    await ask(runtime.engine, "rag on", command=True, is_admin=True)
    await ask(runtime.engine, "How do I request a laptop?")
    system = openai_server.chat_requests[-1].body["messages"][0]["content"]
    assert "IT portal" in system
