"""History, dedup, rate limits, input limits, retrieval-only mode and model failures."""

from __future__ import annotations

import asyncio
from typing import Any

from bot.messages import FinalAnswer, Status, TextDelta
from bot.runtime import Runtime
from tests.core.helpers import ask, collect, message
from tests.fakes.openai_server import FakeOpenAI


def _contents(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"]]


async def test_history_is_kept_within_a_thread_and_not_across(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    openai_server.reply_text = "Open a ticket in the IT portal [1]."
    await ask(runtime.engine, "How do I request a laptop?", thread="t1")
    await ask(runtime.engine, "And how long does delivery take?", thread="t1")
    in_thread = _contents(openai_server.chat_requests[-1].body)
    assert "How do I request a laptop?" in in_thread
    assert "Open a ticket in the IT portal [1]." in in_thread
    assert in_thread[-1] == "And how long does delivery take?"

    await ask(runtime.engine, "How do I request a laptop delivery?", thread="t2")
    other_thread = _contents(openai_server.chat_requests[-1].body)
    assert "How do I request a laptop?" not in other_thread
    assert len(other_thread) == 2  # system + question

    reset = await ask(runtime.engine, "reset", thread="t1", command=True)
    assert reset.kind == "command"
    await ask(runtime.engine, "How do I request a laptop again?", thread="t1")
    assert "How do I request a laptop?" not in _contents(openai_server.chat_requests[-1].body)


async def test_history_respects_turn_cap(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings, history_max_turns=2)
    for i in range(4):
        await ask(runtime.engine, f"request laptop {i}", thread="t")
    sent = _contents(openai_server.chat_requests[-1].body)
    assert "request laptop 0" not in sent
    assert "request laptop 1" in sent
    assert "request laptop 2" in sent


async def test_same_event_twice_gives_one_answer(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    # Two replicas share Redis; each has its own knowledge store, so answer from the model alone.
    first: Runtime = await start_runtime(**model_settings, qdrant_url=":memory:")
    second: Runtime = await start_runtime(**model_settings, qdrant_url=":memory:")
    await ask(first.engine, "rag off", command=True, is_admin=True)
    msg = message("How do I request a laptop?", event_id="Ev-same")
    replies = await asyncio.gather(collect(first.engine, msg), collect(second.engine, msg))
    assert sorted(len(r) > 0 for r in replies) == [False, True]
    assert len(openai_server.chat_requests) == 1


async def test_rate_limit_refuses_with_when_to_retry(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(
        **model_settings, rate_limit_user=2, rate_limit_window_seconds=60
    )
    for _ in range(2):
        assert (await ask(runtime.engine, "How do I request a laptop?")).kind == "answer"
    refused = await ask(runtime.engine, "How do I request a laptop?")
    assert refused.kind == "refused"
    assert "try again in" in refused.text
    assert len(openai_server.chat_requests) == 2
    other_user = await ask(runtime.engine, "How do I request a laptop?", user="U2")
    assert other_user.kind == "answer"


async def test_empty_and_oversized_questions_get_clear_answers(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    empty = await ask(runtime.engine, "   ")
    assert empty.kind == "refused"
    assert "Ask me" in empty.text
    huge = await ask(runtime.engine, "x" * 40_000)
    assert huge.kind == "refused"
    assert "40,000" in huge.text
    assert openai_server.chat_requests == []


async def test_retrieval_only_without_a_model(start_runtime: Any) -> None:
    runtime: Runtime = await start_runtime()
    events = await collect(runtime.engine, message("How do I request a laptop?"))
    assert isinstance(events[0], Status)
    final = events[-1]
    assert isinstance(final, FinalAnswer)
    assert final.kind == "retrieval_only"
    assert final.text.startswith("Retrieval-only answer (no model is configured)")
    assert "IT portal" in final.text
    assert final.citations[0].source.endswith("laptops.md")
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == final.text


async def test_no_match_without_a_model_says_it_does_not_know(start_runtime: Any) -> None:
    runtime: Runtime = await start_runtime()
    final = await ask(runtime.engine, "zyxxy qworp flurble")
    assert final.kind == "no_knowledge"
    assert "don't know" in final.text
    assert final.citations == ()


async def test_no_match_tells_the_model_there_are_no_sources(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    openai_server.reply_text = "The knowledge base does not cover that."
    final = await ask(runtime.engine, "zyxxy qworp flurble")
    assert final.kind == "answer"
    assert final.citations == ()
    system = openai_server.chat_requests[-1].body["messages"][0]["content"]
    assert "No source in the knowledge base matches" in system
    assert "Sources:" not in system


async def test_empty_knowledge_base_says_how_to_ingest(
    make_settings: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI, tmp_path: Any
) -> None:
    for overrides in ({}, model_settings):
        runtime = await Runtime.start(make_settings(data_dir=tmp_path / "empty", **overrides))
        try:
            final = await ask(runtime.engine, "How do I request a laptop?")
        finally:
            await runtime.aclose()
        assert "bothbot ingest PATH" in final.text
    assert len(openai_server.chat_requests) == 1  # with a model, it still answers, and says so


async def test_answer_cites_the_right_source(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    openai_server.reply_text = "Use WireGuard [1]."
    final = await ask(runtime.engine, "How do I set up the VPN with WireGuard?")
    assert final.kind == "answer"
    assert final.citations[0].source.endswith("vpn.md")
    assert final.usage is not None and final.usage.completion_tokens == 3
    system = openai_server.chat_requests[-1].body["messages"][0]["content"]
    assert "[1]" in system and "WireGuard" in system
    trace = await runtime.state.load_trace(final.trace_id)
    assert trace is not None
    assert trace["model"] == "base-model"
    assert trace["chunk_ids"]
    assert trace["usage"] == {"prompt": final.usage.prompt_tokens, "completion": 3}
    assert await runtime.engine.record_feedback(final.trace_id, user="U1", value="up", platform="slack")
    assert not await runtime.engine.record_feedback("no-such-trace", user="U1", value="up", platform="slack")


async def test_model_errors_fall_back_to_passages(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**{**model_settings, "model_max_retries": 1})
    openai_server.fail_next(500, count=2)
    final = await ask(runtime.engine, "How do I request a laptop?")
    assert final.kind == "retrieval_only"
    assert "HTTP 500" in final.text
    assert "IT portal" in final.text
    assert len(openai_server.chat_requests) == 2  # first try + one retry, then gave up

    openai_server.fail_next(429, count=1)
    recovered = await ask(runtime.engine, "How do I request a laptop?")
    assert recovered.kind == "answer"


async def test_model_timeout_gives_clear_reply(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**{**model_settings, "model_timeout_seconds": 0.3})
    openai_server.hang_next()
    final = await asyncio.wait_for(ask(runtime.engine, "How do I request a laptop?"), timeout=10)
    assert final.kind == "retrieval_only"
    assert "did not answer within 0.3 s" in final.text


async def test_model_down_and_nothing_found_is_an_error_not_a_trace(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    await ask(runtime.engine, "rag off", command=True, is_admin=True)
    openai_server.fail_next(503)
    final = await ask(runtime.engine, "hello?")
    assert final.kind == "error"
    assert "HTTP 503" in final.text
    assert "Traceback" not in final.text


async def test_redis_connection_loss_loses_nothing(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI, redis_cleanup: Any,
    redis_prefix: str,
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    await ask(runtime.engine, "How do I request a laptop?", thread="t")
    clients = await redis_cleanup.client_list()
    ours = [c["id"] for c in clients if c.get("name") == f"bothbot:{redis_prefix}"]
    assert ours, "the runtime's connections carry its name"
    for client_id in ours:
        await redis_cleanup.client_kill_filter(_id=client_id)
    answer = await ask(runtime.engine, "How do I request a laptop again?", thread="t")
    assert answer.kind == "answer"
    sent = _contents(openai_server.chat_requests[-1].body)
    assert "How do I request a laptop?" in sent  # history survived the reconnect


async def test_top_level_conversations_are_per_user(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    await ask(runtime.engine, "ask How do I request a laptop?", user="U1", command=True)
    await ask(runtime.engine, "/ask   How do I request a laptop quickly?", user="U2", command=True)
    sent = _contents(openai_server.chat_requests[-1].body)
    assert sent[-1] == "How do I request a laptop quickly?"  # the text after the command word, as typed
    assert "How do I request a laptop?" not in sent  # U1's question is not U2's history
    await ask(runtime.engine, "reset", user="U2", command=True)
    await ask(runtime.engine, "ask How do I request a laptop again?", user="U1", command=True)
    assert "How do I request a laptop?" in _contents(openai_server.chat_requests[-1].body)  # U2's reset left U1's
