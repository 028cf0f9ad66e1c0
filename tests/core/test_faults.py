"""Faults really caused: the model rate limited, failing, dropping its stream mid-answer; the knowledge
base failing underneath a running engine. Each gives a short, true reply, and the turn and trace
state stay consistent with what the user saw."""

from __future__ import annotations

from typing import Any

from bot.engine import KB_DOWN
from bot.prompts import CLOSED_BOOK_NOTE
from bot.runtime import Runtime
from retrieval.factory import RetrievalService
from tests.core.helpers import ask
from tests.fakes.openai_server import FakeOpenAI


async def _history(runtime: Runtime, conversation: str) -> list[tuple[str, str]]:
    return [(t.role, t.content) for t in await runtime.state.history(conversation)]


async def test_rate_limited_model_falls_back_to_passages_and_says_why(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**{**model_settings, "model_max_retries": 2})
    openai_server.fail_next(429, count=3)
    final = await ask(runtime.engine, "How do I request a laptop?", thread="t1")
    assert final.kind == "retrieval_only"
    assert "HTTP 429 (failed after 3 tries)" in final.text
    assert "IT portal" in final.text
    assert len(openai_server.chat_requests) == 3
    trace = await runtime.state.load_trace(final.trace_id)
    assert trace is not None
    assert trace["kind"] == "retrieval_only" and trace["answer"] == final.text
    assert trace["error"] == "the model endpoint answered HTTP 429 (failed after 3 tries)"
    assert trace["model_tries"] == 3


async def test_failing_model_without_passages_is_an_error_with_no_turn_saved(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    await ask(runtime.engine, "rag off", command=True, is_admin=True)
    openai_server.fail_next(500)
    final = await ask(runtime.engine, "hello?", thread="t2")
    assert final.kind == "error"
    assert final.text == (
        "Sorry, I couldn't get an answer: the model endpoint answered HTTP 500. Please try again in a moment."
    )
    trace = await runtime.state.load_trace(final.trace_id)
    assert trace is not None and trace["kind"] == "error"
    assert await runtime.state.history_length("slack:T1:C1:t2") == 0  # nothing answered, nothing remembered


async def test_stream_dropped_mid_answer_is_cut_short_not_repeated(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**{**model_settings, "model_max_retries": 2})
    await ask(runtime.engine, "rag off", command=True, is_admin=True)
    openai_server.reply_text = "One two three four five six seven eight nine ten."
    openai_server.drop_next(after_chunks=2)
    final = await ask(runtime.engine, "count for me", thread="t3")
    assert final.kind == "error"
    shown, note = final.text.split("\n\n", 1)
    assert shown and "One two three four five six seven eight nine ten.".startswith(shown)
    assert shown != "One two three four five six seven eight nine ten."
    assert note == "(The answer was cut short: the connection to the model broke mid-answer.)"
    assert len(openai_server.chat_requests) == 1  # text was shown: a retry would repeat it
    trace = await runtime.state.load_trace(final.trace_id)
    assert trace is not None
    assert trace["error"] == "the connection to the model broke mid-answer" and trace["answer"] == final.text
    assert await _history(runtime, "slack:T1:C1:t3") == [("user", "count for me"), ("assistant", final.text)]


async def test_stream_dropped_before_any_text_is_tried_again(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**{**model_settings, "model_max_retries": 1})
    await ask(runtime.engine, "rag off", command=True, is_admin=True)
    openai_server.reply_text = "Complete answer."
    openai_server.drop_next(after_chunks=0)
    final = await ask(runtime.engine, "hello?")
    assert final.kind == "answer"
    assert final.text == "Complete answer."
    assert len(openai_server.chat_requests) == 2


async def test_knowledge_base_failing_underneath_gives_an_answer_without_context(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    assert isinstance(runtime.knowledge, RetrievalService)
    await runtime.knowledge.store.aclose()  # the embedded store is gone under the running engine
    openai_server.reply_text = "From general knowledge: ask IT."
    final = await ask(runtime.engine, "How do I request a laptop?", thread="t4")
    assert final.kind == "answer"
    assert final.text == f"From general knowledge: ask IT.\n\n({KB_DOWN})"
    assert final.citations == ()
    system = openai_server.chat_requests[-1].body["messages"][0]["content"]
    assert CLOSED_BOOK_NOTE in system  # the model is told it has no documents, not that none matched
    trace = await runtime.state.load_trace(final.trace_id)
    assert trace is not None and trace["retrieval_error"] and trace["chunk_ids"] == []
    assert await _history(runtime, "slack:T1:C1:t4") == [
        ("user", "How do I request a laptop?"), ("assistant", final.text)
    ]


async def test_knowledge_base_failing_without_a_model_says_both(start_runtime: Any) -> None:
    runtime: Runtime = await start_runtime()  # no model configured
    assert isinstance(runtime.knowledge, RetrievalService)
    await runtime.knowledge.store.aclose()
    final = await ask(runtime.engine, "How do I request a laptop?")
    assert final.kind == "error"
    assert final.text == (
        "The knowledge base could not be searched just now and no model is configured, so I have nothing "
        "to answer from. Please try again in a moment."
    )
