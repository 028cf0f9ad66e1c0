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
