"""The model client against OpenAI-compatible servers that differ from OpenAI's."""

from __future__ import annotations

import pytest

from bot.messages import Usage
from bot.model_client import ModelClient, ModelError
from bot.settings import ModelProfile
from tests.fakes.openai_server import FakeOpenAI

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi?"}]


async def _collect(client: ModelClient) -> tuple[str, Usage | None]:
    text, usage = [], None
    async for item in client.stream(MESSAGES):
        if isinstance(item, Usage):
            usage = item
        else:
            text.append(item)
    return "".join(text), usage


async def test_streams_text_and_usage_with_messages_sent_as_given(openai_server: FakeOpenAI) -> None:
    openai_server.reply_text = "Hello there, friend."
    client = ModelClient(
        ModelProfile(model="m", base_url=openai_server.base_url, temperature=0.3, max_tokens=50),
        timeout_seconds=5, max_retries=0,
    )
    try:
        text, usage = await _collect(client)
    finally:
        await client.aclose()
    assert text == "Hello there, friend."
    assert usage == Usage(prompt_tokens=3, completion_tokens=3)
    body = openai_server.chat_requests[0].body
    assert body["messages"] == MESSAGES
    assert body["stream"] is True
    assert body["temperature"] == 0.3
    assert body["max_tokens"] == 50
    assert openai_server.chat_requests[0].headers["Authorization"] == "Bearer not-needed"


async def test_server_rejecting_stream_options_is_asked_again_without(openai_server: FakeOpenAI) -> None:
    openai_server.reject_stream_options = True
    openai_server.reply_text = "Works anyway."
    client = ModelClient(ModelProfile(model="m", base_url=openai_server.base_url), timeout_seconds=5, max_retries=0)
    try:
        assert (await _collect(client))[0] == "Works anyway."
        assert (await _collect(client))[0] == "Works anyway."
    finally:
        await client.aclose()
    sent = [("stream_options" in r.body) for r in openai_server.chat_requests]
    assert sent == [True, False, False]  # remembered after the first refusal


async def test_server_answering_json_instead_of_a_stream(openai_server: FakeOpenAI) -> None:
    openai_server.ignore_stream = True
    openai_server.reply_text = "One piece."
    client = ModelClient(ModelProfile(model="m", base_url=openai_server.base_url), timeout_seconds=5, max_retries=0)
    try:
        text, usage = await _collect(client)
    finally:
        await client.aclose()
    assert text == "One piece."
    assert usage is not None and usage.completion_tokens == 2


async def test_other_bad_requests_are_not_retried(openai_server: FakeOpenAI) -> None:
    openai_server.fail_next(400)
    client = ModelClient(ModelProfile(model="m", base_url=openai_server.base_url), timeout_seconds=5, max_retries=0)
    try:
        with pytest.raises(ModelError, match="HTTP 400"):
            await _collect(client)
        openai_server.reply_text = "Later."
        assert (await _collect(client))[0] == "Later."
    finally:
        await client.aclose()
    assert [("stream_options" in r.body) for r in openai_server.chat_requests] == [True, True]


async def _pieces_until_failure(client: ModelClient) -> tuple[list[str], ModelError]:
    pieces: list[str] = []

    async def read() -> None:
        async for item in client.stream(MESSAGES):
            if isinstance(item, str):
                pieces.append(item)

    with pytest.raises(ModelError) as failed:
        await read()
    return pieces, failed.value


async def test_a_stream_that_goes_silent_mid_answer_ends_after_the_timeout(openai_server: FakeOpenAI) -> None:
    """The first piece comes, then the endpoint says nothing for far longer than one try may wait."""
    openai_server.reply_text = "First part. Second part. Third part."
    openai_server.chunks_per_reply = 3
    openai_server.chunk_interval = 3.0
    client = ModelClient(ModelProfile(model="m", base_url=openai_server.base_url), timeout_seconds=0.3, max_retries=2)
    try:
        pieces, error = await _pieces_until_failure(client)
    finally:
        await client.aclose()
        openai_server.chunk_interval = 0.0
    assert "".join(pieces) == "First part. "
    assert str(error) == "the model stopped answering for 0.3 s"
    assert len(openai_server.chat_requests) == 1  # text was shown: never asked again


async def test_a_slow_stream_is_ended_by_the_deadline_not_by_the_timeout(openai_server: FakeOpenAI) -> None:
    """Each piece comes well within the per-read timeout, but the whole answer would outlast the deadline."""
    openai_server.reply_text = "one two three four five six seven eight nine ten"
    openai_server.chunks_per_reply = 10
    openai_server.chunk_interval = 0.25
    client = ModelClient(
        ModelProfile(model="m", base_url=openai_server.base_url),
        timeout_seconds=30,
        max_retries=2,
        deadline_seconds=0.6,
    )
    try:
        pieces, error = await _pieces_until_failure(client)
    finally:
        await client.aclose()
        openai_server.chunk_interval = 0.0
    assert pieces  # some text came before the deadline
    assert "".join(pieces) != openai_server.reply_text
    assert str(error) == "the model did not finish within 0.6 s"
    assert len(openai_server.chat_requests) == 1


async def test_a_proxy_from_the_environment_carries_the_request(
    openai_server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HTTP_PROXY is honoured as the openai SDK honours it: the fake stands in for the proxy here."""
    proxy = openai_server.base_url.removesuffix("/v1")
    monkeypatch.setenv("HTTP_PROXY", proxy)
    monkeypatch.setenv("http_proxy", proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    openai_server.reply_text = "Through the proxy."
    client = ModelClient(ModelProfile(model="m", base_url="http://model.invalid/v1"), timeout_seconds=5, max_retries=0)
    try:
        assert (await _collect(client))[0] == "Through the proxy."
    finally:
        await client.aclose()
    assert openai_server.chat_requests[0].headers["Host"] == "model.invalid"
