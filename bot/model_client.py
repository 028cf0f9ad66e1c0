"""The one place that talks to OpenAI-compatible chat endpoints: streaming, retries, usage.

Streams through the SDK's raw streaming response (one ``json.loads`` per SSE line) instead of its
per-chunk pydantic models, and passes the messages through ``extra_body`` to skip the SDK's
request-body conversion; both measured as the largest CPU costs of an answer (README, Architecture).
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import httpx2
import openai

from bot.messages import Usage
from bot.settings import ModelProfile

if TYPE_CHECKING:  # a type-only import: bot.profiles imports this module
    from bot.profiles import ProfileOrigin

log = logging.getLogger(__name__)

# Endpoints that need no key (vLLM, Ollama, llama.cpp) still need a non-empty string for the SDK.
_NO_KEY = "not-needed"


class ModelError(Exception):
    """A model call failed after its retries; ``str()`` is short, true and safe to show a user."""


class ModelClient:
    """A reusable async client for one profile's endpoint."""

    def __init__(self, profile: ModelProfile, *, timeout_seconds: float, max_retries: int) -> None:
        self.profile = profile
        self.timeout_seconds = timeout_seconds
        self._ask_usage = True
        key = profile.api_key.get_secret_value() if profile.api_key else _NO_KEY
        self._client = openai.AsyncOpenAI(
            api_key=key,
            base_url=profile.base_url,
            timeout=timeout_seconds,
            max_retries=max_retries,
        )

    async def aclose(self) -> None:
        await self._client.close()

    async def stream(self, messages: Sequence[Mapping[str, str]]) -> AsyncIterator[str | Usage]:
        """Yield text pieces in order, then a :class:`Usage` if the endpoint reports one.

        Endpoints that reject ``stream_options`` (some older OpenAI-compatible servers answer 400)
        are asked again without it, once, and this client remembers. An endpoint that answers a
        whole JSON completion instead of an event stream is read as one piece.
        """
        params: dict[str, Any] = {}
        if self.profile.temperature is not None:
            params["temperature"] = self.profile.temperature
        if self.profile.max_tokens is not None:
            params["max_tokens"] = self.profile.max_tokens
        try:
            while True:
                if self._ask_usage:
                    params["stream_options"] = {"include_usage": True}
                else:
                    params.pop("stream_options", None)
                try:
                    async for item in self._request(messages, params):
                        yield item
                    return
                except openai.APIStatusError as exc:
                    if not (self._ask_usage and exc.status_code in (400, 422) and _about_usage(exc)):
                        raise
                    log.info("%s rejected stream_options; asking without it", self.profile.model)
                    self._ask_usage = False
        except openai.APITimeoutError as exc:
            raise ModelError(f"the model did not answer within {self.timeout_seconds:g} s") from exc
        except openai.APIStatusError as exc:
            raise ModelError(f"the model endpoint answered HTTP {exc.status_code}") from exc
        except openai.APIConnectionError as exc:
            raise ModelError("the model endpoint could not be reached") from exc
        except httpx2.TimeoutException as exc:
            raise ModelError(f"the model stopped answering for {self.timeout_seconds:g} s") from exc
        except (httpx2.HTTPError, openai.APIError) as exc:
            raise ModelError("the connection to the model broke mid-answer") from exc

    async def complete(self, messages: Sequence[Mapping[str, str]]) -> tuple[str, Usage]:
        """The whole answer and its usage (zeros when the endpoint reports none); :meth:`stream` collected."""
        pieces: list[str] = []
        usage = Usage()
        async for item in self.stream(messages):
            if isinstance(item, Usage):
                usage = item
            else:
                pieces.append(item)
        return "".join(pieces), usage

    async def _request(
        self, messages: Sequence[Mapping[str, str]], params: dict[str, Any]
    ) -> AsyncIterator[str | Usage]:
        async with self._client.chat.completions.with_streaming_response.create(
            model=self.profile.model,
            messages=[],
            stream=True,
            extra_body={"messages": list(messages)},
            **params,
        ) as response:
            if "json" in response.headers.get("content-type", ""):
                for item in _parse_completion(await response.read()):
                    yield item
                return
            async for line in response.iter_lines():
                for item in _parse_sse_line(line):
                    yield item


def _about_usage(exc: openai.APIStatusError) -> bool:
    """Whether a refusal names the usage option (and not, say, an over-long prompt)."""
    text = f"{exc.message} {exc.body}".lower()
    return "stream_options" in text or "include_usage" in text


def _parse_completion(body: bytes) -> list[str | Usage]:
    """A non-streamed ``chat.completion`` body → its text and usage."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ModelError("the model endpoint sent a malformed answer") from exc
    if not isinstance(data, dict):
        raise ModelError("the model endpoint sent a malformed answer")
    items: list[str | Usage] = []
    for choice in data.get("choices") or ():
        content = (choice.get("message") or {}).get("content")
        if content:
            items.append(str(content))
    items.extend(_usage(data))
    return items


def _usage(data: dict[str, Any]) -> list[str | Usage]:
    usage = data.get("usage")
    if not isinstance(usage, dict):
        return []
    return [
        Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
    ]


def _parse_sse_line(line: str) -> list[str | Usage]:
    if not line.startswith("data:"):
        return []
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return []
    try:
        chunk = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ModelError("the model endpoint sent a malformed stream") from exc
    if not isinstance(chunk, dict):
        return []
    if "error" in chunk:
        message = chunk["error"].get("message", "error") if isinstance(chunk["error"], dict) else "error"
        raise ModelError(f"the model endpoint reported an error: {str(message)[:200]}")
    items: list[str | Usage] = []
    for choice in chunk.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            items.append(str(content))
    items.extend(_usage(chunk))
    return items


class ModelRouter:
    """Profiles by name, each with one client built on first use and reused.

    ``profiles`` is the merged view: the start-up (TOML) profiles, which win, plus the profiles
    registered at run time (:class:`bot.profiles.ProfileRegistry` calls :meth:`set_registered`).
    """

    def __init__(
        self, profiles: Mapping[str, ModelProfile], *, timeout_seconds: float, max_retries: int
    ) -> None:
        self.static = dict(profiles)
        self.profiles = dict(profiles)
        self.registered: dict[str, ProfileOrigin] = {}  # profiles registered at run time, with their origin
        self._timeout = timeout_seconds
        self._retries = max_retries
        self._clients: dict[str, ModelClient] = {}
        self._closing: list[ModelClient] = []  # replaced clients, closed with the router

    def set_registered(self, profiles: Mapping[str, ModelProfile], origins: Mapping[str, ProfileOrigin]) -> None:
        """Replace the run-time profiles; clients of changed or removed profiles are dropped."""
        merged = {**profiles, **self.static}
        for name, client in list(self._clients.items()):
            if merged.get(name) != client.profile:
                del self._clients[name]
                self._closing.append(client)
        self.profiles = merged
        self.registered = {name: origins[name] for name in profiles if name not in self.static and name in origins}

    def usable(self, name: str) -> bool:
        """A profile can be called when it has an endpoint or a key (the default endpoint needs one)."""
        profile = self.profiles.get(name)
        return profile is not None and (profile.base_url is not None or profile.api_key is not None)

    def client(self, name: str) -> ModelClient | None:
        if not self.usable(name):
            return None
        client = self._clients.get(name)
        if client is None:
            client = ModelClient(self.profiles[name], timeout_seconds=self._timeout, max_retries=self._retries)
            self._clients[name] = client
        return client

    async def aclose(self) -> None:
        for client in [*self._clients.values(), *self._closing]:
            await client.aclose()
        self._clients.clear()
        self._closing.clear()
