"""A local OpenAI-compatible server on loopback, port 0, for the real `openai` client to talk to.

Speaks ``POST /v1/chat/completions`` (JSON or SSE streaming with a final usage chunk),
``POST /v1/embeddings`` (deterministic hashed bag-of-words vectors, so similar texts are close)
and ``GET /v1/models``, on the shared loopback harness (``tests/fakes/harness.py``).
It records every request and can fail on request: an HTTP status
(429, 500, …), a hang that only a client timeout ends, or a stream dropped mid-answer (the
connection closed after some chunks, as a crashing server or a broken proxy does).

Optionally (both off by default) it generates at a set rate, ``chunk_interval`` seconds between
streamed chunks, as a real model does, and records when each chunk was written
(``record_times``: ``chunk_times``, ``time.monotonic()``), so a benchmark can time what a
platform shows against what the model sent.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

from aiohttp import web

from tests.fakes.harness import Loopback

ReplyFn = Callable[[dict[str, Any]], str]
_DROP_AFTER = web.RequestKey("drop_after", int)
T = TypeVar("T")


@dataclass
class RecordedRequest:
    path: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class _Failure:
    status: int | None  # None = hang (or a drop, with drop_after)
    drop_after: int | None = None  # stream this many chunks, then close the connection mid-answer


@dataclass
class FakeOpenAI:
    """Start with ``await fake.start()`` (or ``async with``); ``base_url`` ends in ``/v1``."""

    reply_text: str | ReplyFn = "The answer is in the docs [1]."
    chunks_per_reply: int = 5
    embedding_dim: int = 64
    reject_stream_options: bool = False  # answer 400 to requests carrying stream_options (older servers)
    ignore_stream: bool = False  # answer a whole JSON completion even when asked to stream
    chunk_interval: float = 0.0  # seconds between streamed chunks (the fake model's own rate); 0 = at once
    record_times: bool = False  # record in ``chunk_times`` when each streamed chunk was written
    chunk_times: list[float] = field(default_factory=list)
    requests: list[RecordedRequest] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _hang: asyncio.Event = field(default_factory=asyncio.Event)
    server: Loopback = field(init=False)

    def __post_init__(self) -> None:
        self.server = Loopback(self.add_routes, default_timeout=10.0)

    @property
    def base_url(self) -> str:
        return f"{self.server.base}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def fail_next(self, status: int, count: int = 1) -> None:
        self._failures.extend(_Failure(status) for _ in range(count))

    def hang_next(self, count: int = 1) -> None:
        self._failures.extend(_Failure(None) for _ in range(count))

    def release_hangs(self) -> None:
        """End every hung request now (it answers 504, as a gateway that gave up would)."""
        self._hang.set()

    def drop_next(self, count: int = 1, after_chunks: int = 1) -> None:
        """The next ``count`` streamed answers send ``after_chunks`` chunks, then the connection closes."""
        self._failures.extend(_Failure(None, drop_after=after_chunks) for _ in range(count))

    async def wait_for(self, predicate: Callable[[], T], timeout: float | None = None) -> T:
        return await self.server.wait_for(predicate, timeout)

    async def wait_for_requests(self, count: int, timeout: float = 10.0) -> list[RecordedRequest]:
        await self.server.wait_for(lambda: len(self.requests) >= count, timeout)
        return self.requests

    async def _notify(self) -> None:
        await self.server.changed()

    async def start(self) -> Self:
        await self.server.start()
        return self

    def add_routes(self, app: web.Application) -> None:
        """The endpoints served; a subclass adds its own (fine-tuning, LoRA adapters)."""
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_post("/v1/embeddings", self._embeddings)
        app.router.add_get("/v1/models", self._models)

    async def stop(self) -> None:
        self._hang.set()
        await self.server.close()

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _record(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return {}, web.json_response({"error": {"message": "invalid JSON body"}}, status=400)
        self.requests.append(RecordedRequest(request.path, body, dict(request.headers)))
        await self._notify()
        if self._failures:
            failure = self._failures.pop(0)
            if failure.drop_after is not None:
                request[_DROP_AFTER] = failure.drop_after
                return body, None
            if failure.status is None:
                await self._hang.wait()
                return body, web.json_response({"error": {"message": "hung"}}, status=504)
            headers = {"retry-after-ms": "10"} if failure.status == 429 else {}
            return body, web.json_response(
                {"error": {"message": f"injected failure {failure.status}", "type": "server_error"}},
                status=failure.status,
                headers=headers,
            )
        return body, None

    def _text_for(self, body: dict[str, Any]) -> str:
        return self.reply_text(body) if callable(self.reply_text) else self.reply_text

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        body, failure = await self._record(request)
        if failure is not None:
            return failure
        if self.reject_stream_options and "stream_options" in body:
            error = {"message": "Unrecognized request argument: stream_options"}
            return web.json_response({"error": error}, status=400)
        text = self._text_for(body)
        model = str(body.get("model", ""))
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        }
        created = int(time.time())
        if not body.get("stream") or self.ignore_stream:
            return web.json_response(
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": created,
                    "model": model,
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}
                    ],
                    "usage": usage,
                }
            )
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        size = max(1, math.ceil(len(text) / max(1, self.chunks_per_reply)))
        pieces = [text[i : i + size] for i in range(0, len(text), size)] or [""]
        base = {"id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": created, "model": model}
        drop_after = request.get(_DROP_AFTER)
        begun = time.monotonic()
        for i, piece in enumerate(pieces):
            if i and self.chunk_interval > 0:  # paced from the first chunk, so the rate does not drift
                await asyncio.sleep(max(0.0, begun + i * self.chunk_interval - time.monotonic()))
            if i == drop_after:
                assert request.transport is not None
                request.transport.close()  # mid-answer: no final chunk, no [DONE], no end of the body
                return response
            delta: dict[str, Any] = {"content": piece}
            if i == 0:
                delta["role"] = "assistant"
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
            if self.record_times:
                self.chunk_times.append(time.monotonic())
        final = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        await response.write(f"data: {json.dumps(final)}\n\n".encode())
        if (body.get("stream_options") or {}).get("include_usage"):
            await response.write(f"data: {json.dumps({**base, 'choices': [], 'usage': usage})}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def _embeddings(self, request: web.Request) -> web.Response:
        body, failure = await self._record(request)
        if failure is not None:
            return failure
        raw = body.get("input", [])
        inputs = [raw] if isinstance(raw, str) else list(raw)
        dim = int(body.get("dimensions") or self.embedding_dim)
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_embedding(str(text), dim)}
            for i, text in enumerate(inputs)
        ]
        tokens = sum(len(str(t).split()) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": data,
                "model": body.get("model", ""),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "fake-model", "object": "model"}]})


def hashed_embedding(text: str, dim: int) -> list[float]:
    """Bag of lower-cased words hashed into ``dim`` buckets, L2-normalised."""
    vector = [0.0] * dim
    for word in re.findall(r"\w+", text.lower()):
        digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
        bucket = int.from_bytes(digest[:4], "little") % dim
        sign = 1.0 if digest[4] & 1 else -1.0
        vector[bucket] += sign
    norm = math.sqrt(sum(v * v for v in vector)) or 1.0
    return [v / norm for v in vector]
