"""One total deadline per answer: retries with jitter inside it, and a message that tells the truth.

The model fake hangs or fails on request; the assertions are on the engine's reply and on the
requests the fake recorded (how many tries were made), never on wall-clock time. The retry and
back-off arithmetic is tested on an injected clock, sleep and jitter.
"""

from __future__ import annotations

from typing import Any

import pytest

from bot.messages import Usage
from bot.model_client import ModelClient, ModelError
from bot.runtime import Runtime
from bot.settings import ModelProfile
from tests.core.helpers import ask
from tests.fakes.openai_server import FakeOpenAI

MESSAGES = [{"role": "user", "content": "Hi?"}]


async def test_hanging_model_is_answered_within_the_deadline(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    """Three tries of 30 s each would keep the user waiting 96 s: the deadline ends it at once, truthfully."""
    runtime: Runtime = await start_runtime(
        **{**model_settings, "model_timeout_seconds": 30, "model_max_retries": 2, "answer_deadline_seconds": 0.5}
    )
    openai_server.hang_next(3)
    final = await ask(runtime.engine, "How do I request a laptop?")
    assert final.kind == "retrieval_only"
    assert "the model did not answer within 0.5 s" in final.text
    assert "IT portal" in final.text  # the passages, labelled as such
    assert len(openai_server.chat_requests) == 1  # no time was left for a second try
    trace = await runtime.state.load_trace(final.trace_id)
    assert trace is not None and trace["error"] == "the model did not answer within 0.5 s"
    assert trace["model_tries"] == 1


async def test_each_try_has_its_own_timeout_within_the_deadline(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(
        **{**model_settings, "model_timeout_seconds": 0.2, "model_max_retries": 2, "answer_deadline_seconds": 30}
    )
    await ask(runtime.engine, "rag off", command=True, is_admin=True)
    openai_server.hang_next(3)
    final = await ask(runtime.engine, "hello?")
    assert final.kind == "error"
    assert "the model did not answer within 0.2 s on any of 3 tries" in final.text
    assert len(openai_server.chat_requests) == 3  # model_max_retries bounds the count


async def test_failing_endpoint_says_how_many_tries(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**{**model_settings, "model_max_retries": 2})
    await ask(runtime.engine, "rag off", command=True, is_admin=True)
    openai_server.fail_next(500, count=3)
    final = await ask(runtime.engine, "hello?")
    assert final.kind == "error"
    assert "the model endpoint answered HTTP 500 (failed after 3 tries)" in final.text
    assert len(openai_server.chat_requests) == 3


# --- the retry arithmetic, on an injected clock -------------------------------------------------


class FakeTime:
    """A clock that moves only when the client sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def _client(fake: FakeOpenAI, time: FakeTime, *, retries: int, deadline: float, jitter: float) -> ModelClient:
    return ModelClient(
        ModelProfile(model="m", base_url=fake.base_url),
        timeout_seconds=5,
        max_retries=retries,
        deadline_seconds=deadline,
        clock=time.clock,
        sleep=time.sleep,
        jitter=lambda: jitter,
    )


async def _collect(client: ModelClient) -> str:
    try:
        return "".join([item async for item in client.stream(MESSAGES) if not isinstance(item, Usage)])
    finally:
        await client.aclose()


def test_backoff_is_exponential_with_equal_jitter_and_capped(openai_server: FakeOpenAI) -> None:
    time = FakeTime()
    low = _client(openai_server, time, retries=5, deadline=45, jitter=0.0)
    high = _client(openai_server, time, retries=5, deadline=45, jitter=0.999)
    assert [low.backoff(n) for n in (1, 2, 3, 4, 5, 6)] == [0.25, 0.5, 1.0, 2.0, 4.0, 4.0]
    assert [round(high.backoff(n), 2) for n in (1, 2, 6)] == [0.5, 1.0, 8.0]
    assert low.backoff(3, retry_after=0.01) == 0.01  # the server's Retry-After wins


async def test_retries_stop_when_the_next_backoff_would_pass_the_deadline(openai_server: FakeOpenAI) -> None:
    time = FakeTime()
    openai_server.fail_next(503, count=10)
    client = _client(openai_server, time, retries=10, deadline=3.0, jitter=0.5)
    with pytest.raises(ModelError) as caught:
        await _collect(client)
    # back-offs 0.375, 0.75, 1.5 (2.625 s in all); the next, 3.0 s, would not fit in the 0.375 s left
    assert time.sleeps == [0.375, 0.75, 1.5]
    assert caught.value.tries == 4
    assert str(caught.value) == "the model endpoint answered HTTP 503 (failed after 4 tries)"
    assert len(openai_server.chat_requests) == 4


async def test_max_retries_bounds_the_count_and_retry_after_is_honoured(openai_server: FakeOpenAI) -> None:
    time = FakeTime()
    openai_server.fail_next(429, count=5)  # the fake sends retry-after-ms: 10
    client = _client(openai_server, time, retries=1, deadline=45, jitter=0.5)
    with pytest.raises(ModelError, match=r"HTTP 429 \(failed after 2 tries\)"):
        await _collect(client)
    assert time.sleeps == [0.01]
    assert len(openai_server.chat_requests) == 2


async def test_a_retry_that_succeeds_answers_whole(openai_server: FakeOpenAI) -> None:
    time = FakeTime()
    openai_server.fail_next(502)
    openai_server.reply_text = "Fine after all."
    client = _client(openai_server, time, retries=2, deadline=45, jitter=0.0)
    assert await _collect(client) == "Fine after all."
    assert time.sleeps == [0.25]
    assert len(openai_server.chat_requests) == 2


async def test_a_deadline_already_spent_makes_no_request(openai_server: FakeOpenAI) -> None:
    time = FakeTime()
    client = _client(openai_server, time, retries=2, deadline=45, jitter=0.0)
    deadline = client.deadline(2.0)
    time.now += 2.0
    with pytest.raises(ModelError, match=r"^the model did not answer within 2 s$"):
        async for _ in client.stream(MESSAGES, deadline=deadline):
            pass
    await client.aclose()
    assert openai_server.chat_requests == []
