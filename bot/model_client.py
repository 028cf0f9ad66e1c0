"""The one place that talks to OpenAI-compatible chat endpoints: streaming, retries, usage.

The chat stream is one aiohttp request (``POST {base_url}/chat/completions``) read as raw
server-sent events, one ``orjson.loads`` per event, not through the openai SDK: the SDK's request
and response layers and the HTTP stack under it were measured as over half of the CPU of an answer
(bench/RESULTS.md). The behaviour is the SDK's where it matters: JSON bodies, the bearer key, proxies
from the environment, and error statuses (with ``Retry-After``) turned into the same failures. The
SDK stays for everything else (files, fine-tuning, embeddings).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import aiohttp
import orjson
from aiohttp.helpers import get_env_proxy_for_url
from yarl import URL

from bot.messages import Usage
from bot.settings import ModelProfile

if TYPE_CHECKING:  # a type-only import: bot.profiles imports this module
    from bot.profiles import ProfileOrigin

log = logging.getLogger(__name__)

# Endpoints that need no key (vLLM, Ollama, llama.cpp) are sent this one, as the openai SDK needs a non-empty key.
_NO_KEY = "not-needed"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
_ERROR_BODY_BYTES = 65_536  # an error answer is read up to this size, for its message
_CONNECTIONS = 1000  # open connections per endpoint, as the openai SDK allows


BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 8.0
_RETRY_STATUSES = frozenset({408, 409, 429})
T = TypeVar("T")


class ModelError(Exception):
    """A model call failed after its retries; ``str()`` is short, true and safe to show a user.

    ``tries``: how many requests were made.
    """

    def __init__(self, message: str, *, tries: int = 1) -> None:
        super().__init__(message)
        self.tries = tries


@dataclass(frozen=True, slots=True)
class Deadline:
    """The time one answer's model call has, every try and back-off included."""

    seconds: float
    at: float
    clock: Callable[[], float] = time.monotonic

    @classmethod
    def start(cls, seconds: float, clock: Callable[[], float] = time.monotonic) -> Deadline:
        return cls(seconds, clock() + seconds, clock)

    def remaining(self) -> float:
        return self.at - self.clock()


class _StatusError(Exception):
    """The endpoint answered an error status; ``body`` is the start of its text."""

    def __init__(self, status: int, headers: Mapping[str, str], body: str) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.headers = headers
        self.body = body


class _TryTimeout(Exception):
    """One wait of a try ran out: its own timeout, or (``by_deadline``) the answer's deadline."""

    def __init__(self, by_deadline: bool) -> None:
        super().__init__("deadline" if by_deadline else "timeout")
        self.by_deadline = by_deadline


@dataclass(frozen=True, slots=True)
class _Failure:
    reason: str  # short, true, for the user
    retryable: bool
    timeout: bool = False
    deadline: bool = False
    retry_after: float | None = None


class ModelClient:
    """A reusable async client for one profile's endpoint.

    Each try waits at most ``timeout_seconds`` for the endpoint (to answer, and between two pieces of
    the stream); a call retries at most ``max_retries`` times, with jittered exponential back-off (or
    the server's ``Retry-After``), and all of it within one :class:`Deadline` (the caller's, else
    ``deadline_seconds``; the engine passes ``answer_deadline_seconds``). The SDK's own retries are
    off: they would not respect it.
    The HTTP session (one pool of keep-alive connections) is opened on the first call, on the loop
    that makes it, and closed by :meth:`aclose`; a proxy from the environment is looked up once,
    when the client is made.
    ``clock``, ``sleep`` and ``jitter`` (a uniform draw in [0, 1)) are injectable for tests.
    """

    def __init__(
        self,
        profile: ModelProfile,
        *,
        timeout_seconds: float,
        max_retries: int,
        deadline_seconds: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.profile = profile
        self.timeout_seconds = timeout_seconds
        self.max_retries = max_retries
        self.deadline_seconds = deadline_seconds
        self.clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._ask_usage = True
        key = profile.api_key.get_secret_value() if profile.api_key else _NO_KEY
        self._url = URL(f"{(profile.base_url or DEFAULT_BASE_URL).rstrip('/')}/chat/completions")
        self._proxy, self._proxy_auth = _env_proxy(self._url)
        self._headers = {
            "Authorization": f"Bearer {key}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream, application/json",
        }
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=_CONNECTIONS, limit_per_host=_CONNECTIONS),
                timeout=aiohttp.ClientTimeout(total=None),  # waits are bounded by _bounded and _StreamWatch
                cookie_jar=aiohttp.DummyCookieJar(),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def deadline(self, seconds: float | None = None) -> Deadline:
        """A deadline starting now on this client's clock: ``seconds``, else ``deadline_seconds``, else none
        (only the tries' own timeouts bound the call)."""
        chosen = seconds if seconds is not None else self.deadline_seconds
        return Deadline.start(math.inf if chosen is None else chosen, self.clock)

    def backoff(self, tries: int, retry_after: float | None = None) -> float:
        """Seconds to wait after ``tries`` failed tries: the server's ``Retry-After`` when it sent one,
        else exponential (base 0.5 s, cap 8 s) with equal jitter (half fixed, half random)."""
        if retry_after is not None:
            return max(0.0, retry_after)
        step = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2.0 ** (tries - 1))
        return step / 2 + self._jitter() * step / 2

    async def stream(
        self, messages: Sequence[Mapping[str, str]], *, deadline: Deadline | None = None
    ) -> AsyncIterator[str | Usage]:
        """Yield text pieces in order, then a :class:`Usage` if the endpoint reports one.

        Failures before any piece (429, 5xx, timeouts, a lost connection) are tried again within the
        deadline; once text has been yielded nothing is retried (it would repeat itself). Raises
        :class:`ModelError` with a true, short reason.

        Endpoints that reject ``stream_options`` (some older OpenAI-compatible servers answer 400)
        are asked again without it, once, and this client remembers (not counted as a retry). An
        endpoint that answers a whole JSON completion instead of an event stream is read as one piece.
        """
        deadline = deadline or self.deadline()
        params: dict[str, Any] = {}
        if self.profile.temperature is not None:
            params["temperature"] = self.profile.temperature
        if self.profile.max_tokens is not None:
            params["max_tokens"] = self.profile.max_tokens
        tries = 0
        all_timeouts = True
        while True:
            tries += 1
            streamed = False
            try:
                async for item in self._try(messages, params, deadline):
                    streamed = True
                    yield item
                return
            except ModelError as exc:
                exc.tries = tries
                raise
            except (_TryTimeout, _StatusError, aiohttp.ClientError, TimeoutError) as exc:
                if self._usage_refused(exc):
                    tries -= 1
                    continue
                failure = self._failure(exc, deadline, streamed)
            all_timeouts = all_timeouts and failure.timeout
            last = not failure.retryable or tries > self.max_retries
            delay = 0.0 if last else self.backoff(tries, failure.retry_after)
            if last or delay >= deadline.remaining():
                raise ModelError(self._message(failure, tries, all_timeouts), tries=tries)
            log.info("%s: try %d failed (%s); retrying in %.2f s", self.profile.model, tries, failure.reason, delay)
            await self._sleep(delay)

    def _usage_refused(self, exc: Exception) -> bool:
        """The endpoint refused ``stream_options``: ask again without it (remembered)."""
        if not (isinstance(exc, _StatusError) and self._ask_usage):
            return False
        if exc.status in (400, 422) and _about_usage(exc.body):
            log.info("%s rejected stream_options; asking without it", self.profile.model)
            self._ask_usage = False
            return True
        return False

    def _failure(self, exc: Exception, deadline: Deadline, streamed: bool) -> _Failure:
        timed_out = isinstance(exc, (_TryTimeout, TimeoutError))
        if (isinstance(exc, _TryTimeout) and exc.by_deadline) or (timed_out and deadline.remaining() <= 0):
            verb = "finish" if streamed else "answer"
            return _Failure(
                f"the model did not {verb} within {deadline.seconds:g} s", retryable=False, timeout=True, deadline=True
            )
        if timed_out:
            if streamed:
                return _Failure(f"the model stopped answering for {self.timeout_seconds:g} s", retryable=False)
            return _Failure(f"the model did not answer within {self.timeout_seconds:g} s", True, timeout=True)
        if isinstance(exc, _StatusError):
            code = exc.status
            retryable = code in _RETRY_STATUSES or code >= 500
            reason = f"the model endpoint answered HTTP {code}"
            return _Failure(reason, retryable, retry_after=_retry_after(exc.headers))
        if isinstance(exc, aiohttp.ClientConnectionError) and not streamed:
            return _Failure("the model endpoint could not be reached", retryable=True)
        # the connection broke: before any text it is tried again, after some it is an answer cut short
        return _Failure("the connection to the model broke mid-answer", retryable=not streamed)

    def _message(self, failure: _Failure, tries: int, all_timeouts: bool) -> str:
        if failure.deadline:
            return failure.reason if tries == 1 else f"{failure.reason} ({tries} tries)"
        if tries == 1:
            return failure.reason
        if all_timeouts:
            return f"the model did not answer within {self.timeout_seconds:g} s on any of {tries} tries"
        return f"{failure.reason} (failed after {tries} tries)"

    async def _bounded(self, call: Callable[[], Awaitable[T]], deadline: Deadline) -> T:
        """``call()`` awaited for at most this try's timeout and the deadline's remaining time."""
        remaining = deadline.remaining()
        if remaining <= 0:
            raise _TryTimeout(by_deadline=True)
        limit = min(self.timeout_seconds, remaining)
        try:
            async with asyncio.timeout(limit):
                return await call()
        except TimeoutError as exc:
            raise _TryTimeout(by_deadline=limit < self.timeout_seconds) from exc

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

    async def _try(
        self, messages: Sequence[Mapping[str, str]], params: dict[str, Any], deadline: Deadline
    ) -> AsyncIterator[str | Usage]:
        if self._ask_usage:
            params["stream_options"] = {"include_usage": True}
        else:
            params.pop("stream_options", None)
        body = orjson.dumps(
            {"model": self.profile.model, "messages": list(messages), "stream": True, **params}, default=dict
        )
        async with contextlib.AsyncExitStack() as stack:

            def opening() -> Awaitable[aiohttp.ClientResponse]:  # made only when time is left, never left un-awaited
                request = self._http().post(
                    self._url, data=body, headers=self._headers, proxy=self._proxy, proxy_auth=self._proxy_auth
                )
                return stack.enter_async_context(request)

            response = await self._bounded(opening, deadline)
            if response.status >= 400:
                text = await self._bounded(lambda: response.content.read(_ERROR_BODY_BYTES), deadline)
                raise _StatusError(response.status, response.headers, text.decode("utf-8", "replace"))
            if "json" in response.headers.get("content-type", ""):
                for item in _parse_completion(await self._bounded(response.read, deadline)):
                    yield item
                return
            # events arrive in network reads holding any number of lines; the text of one read is
            # yielded as one piece
            watch = _StreamWatch(response, self.timeout_seconds, deadline)
            try:
                rest = b""
                while chunk := await watch.read():
                    lines = (rest + chunk).split(b"\n")
                    rest = lines.pop()
                    for item in _parse_sse_lines(lines):
                        yield item
                for item in _parse_sse_lines((rest,)):
                    yield item
            finally:
                watch.close()


class _StreamWatch:
    """Bounds the reads of one streamed answer without a timer per read: a read may wait at most
    ``idle`` seconds, and none goes past the deadline. One timer per stream, moved on lazily: when
    a bound is reached it closes the response, so the waiting read (or the next) fails, with
    :class:`_TryTimeout` saying which bound it was.
    """

    def __init__(self, response: aiohttp.ClientResponse, idle: float, deadline: Deadline) -> None:
        self._loop = asyncio.get_running_loop()
        self._response = response
        self._idle = idle
        self._deadline_at = self._loop.time() + deadline.remaining()
        self._since: float | None = None  # when the read now waiting began (loop time); None between reads
        self._expired: _TryTimeout | None = None
        self._timer = self._loop.call_at(min(self._deadline_at, self._loop.time() + idle), self._check)

    def _check(self) -> None:
        now = self._loop.time()
        if now >= self._deadline_at:
            self._expire(by_deadline=True)
        elif self._since is not None and now >= self._since + self._idle:
            self._expire(by_deadline=False)
        else:
            begun = now if self._since is None else self._since
            self._timer = self._loop.call_at(min(self._deadline_at, begun + self._idle), self._check)

    def _expire(self, *, by_deadline: bool) -> None:
        self._expired = _TryTimeout(by_deadline)
        self._response.close()

    async def read(self) -> bytes:
        """The next bytes of the body (b"" at its end)."""
        if self._expired is not None:
            raise self._expired
        self._since = self._loop.time()
        try:
            return await self._response.content.readany()
        except aiohttp.ClientError as exc:
            if self._expired is not None:
                raise self._expired from exc
            raise
        finally:
            self._since = None

    def close(self) -> None:
        self._timer.cancel()


def _env_proxy(url: URL) -> tuple[URL | None, aiohttp.BasicAuth | None]:
    """The proxy that HTTP(S)_PROXY / NO_PROXY (and ~/.netrc) choose for ``url``, as the openai SDK
    honours them: looked up once per client, not (as aiohttp's ``trust_env`` does) once per request."""
    try:
        return get_env_proxy_for_url(url)
    except LookupError:
        return None, None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """The server's ``retry-after-ms`` or ``retry-after`` (seconds), if it sent a usable one."""
    with contextlib.suppress(ValueError, TypeError):
        if (ms := headers.get("retry-after-ms")) is not None:
            return float(ms) / 1000
        if (seconds := headers.get("retry-after")) is not None:
            return float(seconds)
    return None


def _about_usage(body: str) -> bool:
    """Whether a refusal names the usage option (and not, say, an over-long prompt)."""
    text = body.lower()
    return "stream_options" in text or "include_usage" in text


def _parse_completion(body: bytes) -> list[str | Usage]:
    """A non-streamed ``chat.completion`` body → its text and usage."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
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


def _parse_sse_lines(lines: Iterable[bytes]) -> list[str | Usage]:
    """The text and usage that complete server-sent-event lines carry, in order, each run of text
    joined into one piece (one loop per network read: this runs for every event of every answer)."""
    out: list[str | Usage] = []
    text: list[str] = []
    for line in lines:
        if not line.startswith(b"data:"):
            continue
        data = line[5:].strip()
        if not data or data == b"[DONE]":
            continue
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise ModelError("the model endpoint sent a malformed stream") from exc
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            message = chunk["error"].get("message", "error") if isinstance(chunk["error"], dict) else "error"
            raise ModelError(f"the model endpoint reported an error: {str(message)[:200]}")
        for choice in chunk.get("choices") or ():
            content = (choice.get("delta") or {}).get("content")
            if content:
                text.append(str(content))
        if isinstance(chunk.get("usage"), dict):  # usually only the last event's
            if text:
                out.append("".join(text))
                text = []
            out.extend(_usage(chunk))
    if text:
        out.append("".join(text))
    return out


class ModelRouter:
    """Profiles by name, each with one client built on first use and reused.

    ``profiles`` is the merged view: the start-up (TOML) profiles, which win, plus the profiles
    registered at run time (:class:`bot.profiles.ProfileRegistry` calls :meth:`set_registered`).
    """

    def __init__(
        self,
        profiles: Mapping[str, ModelProfile],
        *,
        timeout_seconds: float,
        max_retries: int,
        deadline_seconds: float | None = None,
    ) -> None:
        self.static = dict(profiles)
        self.profiles = dict(profiles)
        self.registered: dict[str, ProfileOrigin] = {}  # profiles registered at run time, with their origin
        self._timeout = timeout_seconds
        self._retries = max_retries
        self._deadline = deadline_seconds
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
            client = ModelClient(
                self.profiles[name],
                timeout_seconds=self._timeout,
                max_retries=self._retries,
                deadline_seconds=self._deadline,
            )
            self._clients[name] = client
        return client

    async def aclose(self) -> None:
        for client in [*self._clients.values(), *self._closing]:
            await client.aclose()
        self._clients.clear()
        self._closing.clear()
