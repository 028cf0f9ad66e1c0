"""Traces worth exporting: the answer, its citations, the shown passages, profile, model and arm; the
channel and time indexes; votes, one per user."""

from __future__ import annotations

import time
from typing import Any

from bot.runtime import Runtime
from tests.core.helpers import ask
from tests.fakes.openai_server import FakeOpenAI


async def test_a_trace_keeps_what_an_export_needs(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    openai_server.reply_text = "Install WireGuard and import the profile [1]."
    final = await ask(runtime.engine, "How do I set up the VPN with WireGuard?", channel="C9", thread="t1")
    trace = await runtime.state.load_trace(final.trace_id)
    assert trace is not None
    assert trace["answer"] == final.text
    assert trace["question"] == "How do I set up the VPN with WireGuard?"
    assert (trace["profile"], trace["model"], trace["arm"], trace["experiment"]) == ("base", "base-model", None, None)
    assert trace["conversation"] == "slack:T1:C9:t1"
    [citation] = trace["citations"]
    assert citation == {
        "index": 1,
        "source": final.citations[0].source,
        "title": "VPN",
        "heading": "Setup",
        "chunk_id": final.citations[0].chunk_id,
    }
    assert citation["source"].endswith("vpn.md")
    shown = {p["chunk_id"]: p for p in trace["context"]}
    assert citation["chunk_id"] in shown
    assert "vpn.example.com" in shown[citation["chunk_id"]]["text"]
    system = openai_server.chat_requests[-1].body["messages"][0]["content"]
    assert all(p["text"].strip() in system for p in trace["context"])  # the passages the model was given


async def test_traces_are_indexed_by_channel_and_time(
    start_runtime: Any, model_settings: dict[str, Any]
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    state = runtime.state
    before = time.time()
    a = await ask(runtime.engine, "How do I request a laptop?", channel="A")
    b = await ask(runtime.engine, "How many holiday days?", channel="B")
    c = await ask(runtime.engine, "How do I set up the VPN?", channel="A")
    assert await state.trace_ids(channel="slack:T1:A") == [a.trace_id, c.trace_id]
    assert await state.trace_ids(channel="slack:T1:B") == [b.trace_id]
    assert await state.trace_ids() == [a.trace_id, b.trace_id, c.trace_id]
    assert await state.trace_ids(since=before - 3600, until=before - 1) == []
    created_c = (await state.load_trace(c.trace_id) or {})["created_at"]
    assert await state.trace_ids(since=created_c) == [c.trace_id]
    rows = await state.load_traces([a.trace_id, "gone", c.trace_id], ["arm", "profile"])
    assert rows == [{"arm": None, "profile": "base"}, None, {"arm": None, "profile": "base"}]


async def test_the_index_is_trimmed_to_the_trace_ttl_on_write(
    start_runtime: Any, model_settings: dict[str, Any]
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    state, ttl = runtime.state, runtime.settings.trace_ttl_seconds
    now = time.time()
    old = {"channel": "slack:T1:X", "question": "old", "created_at": now - ttl - 10}
    await state.save_trace("old", old, ttl)
    assert await state.trace_ids(channel="slack:T1:X") == ["old"]
    await state.save_trace("new", {**old, "question": "new", "created_at": now}, ttl)
    assert await state.trace_ids(channel="slack:T1:X") == ["new"]
    assert "old" not in await state.trace_ids()
    assert 0 < await state.redis.ttl(state.trace_index("slack:T1:X")) <= ttl


async def test_one_vote_per_user_and_running_counts(
    start_runtime: Any, model_settings: dict[str, Any]
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    engine, state = runtime.engine, runtime.state
    final = await ask(engine, "How do I request a laptop?")

    async def counts() -> tuple[Any, Any]:
        trace = await state.load_trace(final.trace_id)
        assert trace is not None
        return trace.get("votes_up"), trace.get("votes_down")

    assert await counts() == (None, None)
    assert await engine.record_feedback(final.trace_id, user="U1", value="up", platform="slack")
    assert await engine.record_feedback(final.trace_id, user="U1", value="up", platform="slack")
    assert await counts() == (1, None)
    await engine.record_feedback(final.trace_id, user="U2", value="down", platform="slack")
    assert await counts() == (1, 1)
    await engine.record_feedback(final.trace_id, user="U1", value="down", platform="slack")
    assert await counts() == (0, 2)
    trace = await state.load_trace(final.trace_id)
    assert trace is not None and trace["feedback:slack:U1"]["value"] == "down"
    assert not await engine.record_feedback("no-such-trace", user="U1", value="up", platform="slack")
    assert not await state.redis.exists(state.key("trace", "no-such-trace"))


async def test_a_trace_with_any_text_is_saved_field_for_field(
    start_runtime: Any, model_settings: dict[str, Any]
) -> None:
    """Control characters, NUL included, separators and non-ASCII text come back exactly as written."""
    runtime: Runtime = await start_runtime(**model_settings)
    state, ttl = runtime.state, runtime.settings.trace_ttl_seconds
    odd = "nul \x00 here, \x01\x1f, tab\t, quote \" and backslash \\, ünïcødé ✓, 🙂\n" * 3
    trace = {
        "channel": "slack:T1:Y",
        "question": odd,
        "answer": "",
        "context": [{"text": odd, "chunk_id": "c\x00d"}],
        "usage": None,
        "citations": [],
        "created_at": time.time(),
        "latency_ms": 12.5,
    }
    await state.save_trace("odd", trace, ttl)
    assert await state.load_trace("odd") == trace
    assert await state.trace_ids(channel="slack:T1:Y") == ["odd"]
