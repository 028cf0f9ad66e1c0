"""Operations: Prometheus metrics, the trace id of the answer in progress, health and readiness.

One place for all of it, so the engine and the adapters only call a few cheap functions:

- metrics are module-level collectors on :data:`REGISTRY` (no Redis call, no I/O: a few dict
  look-ups and additions per answer), served as ``GET /metrics``;
- :func:`new_trace_id` sets :data:`bot.logs.TRACE_ID`, which every log line carries (see
  ``bot.logs``) while the answer is produced; :func:`instrumented` restores it afterwards and counts
  the answer;
- :func:`api_trace` is an ``aiohttp.TraceConfig`` counting a platform's API calls and their 429s
  (Slack's Web API session, discord.py's ``http_trace``);
- :class:`Readiness` and :func:`health_routes`: ``/healthz`` (the process is alive), ``/readyz``
  (Redis and the knowledge store answer → 200, else 503 saying which; model endpoints are
  reported, not required) and ``/metrics``, mounted by the Slack HTTP server on its own port and by
  :func:`start_health_server` on ``BOTHBOT_HEALTH_PORT`` (``adapters.serve``).

Labels are bounded and never secret: platform names, profile names, answer kinds, stage names,
API method names (Slack's ``chat.postMessage``; Discord's first path segment, never an id or an
interaction token) — no user, channel, text or URL.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import secrets
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any, Protocol, TypeVar
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from bot.listener import Listener, listen
from bot.logs import TRACE_ID
from bot.messages import FinalAnswer, IncomingMessage

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
"""Every bothbot metric (and the process's CPU, memory and file descriptors); ``GET /metrics``."""
ProcessCollector(registry=REGISTRY)

_SECONDS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0, 120.0)

ANSWERS = Counter(
    "bothbot_answers", "Replies produced, by platform, model profile and outcome (FinalAnswer.kind).",
    ["platform", "profile", "outcome"], registry=REGISTRY,
)  # fmt: skip
ANSWERS_IN_PROGRESS = Gauge("bothbot_answers_in_progress", "Replies being produced now.", registry=REGISTRY)
STAGE_SECONDS = Histogram(
    "bothbot_stage_seconds",
    "Latency of a stage: retrieval, model_first_token, model_total, answer (a whole question, not commands).",
    ["stage"], buckets=_SECONDS, registry=REGISTRY,
)  # fmt: skip
TOKENS = Counter(
    "bothbot_model_tokens", "Tokens the model endpoints reported, by profile and kind (prompt, completion).",
    ["profile", "kind"], registry=REGISTRY,
)  # fmt: skip
ERRORS = Counter(
    "bothbot_errors", "Errors by kind: model (a model call failed after its retries), internal (an answer raised).",
    ["kind"], registry=REGISTRY,
)  # fmt: skip
DEDUP_HITS = Counter(
    "bothbot_dedup_hits", "Events ignored because they were already handled (platform retries).",
    ["platform"], registry=REGISTRY,
)  # fmt: skip
RATE_LIMITED = Counter(
    "bothbot_rate_limit_refusals", "Questions refused by the per-user or per-channel rate limit.",
    ["platform"], registry=REGISTRY,
)  # fmt: skip
API_CALLS = Counter(
    "bothbot_platform_api_calls", "HTTP requests to a platform's API (retries included), by method.",
    ["platform", "method"], registry=REGISTRY,
)  # fmt: skip
API_RATE_LIMITED = Counter(
    "bothbot_platform_api_rate_limited", "Platform API answers with HTTP 429 (the client waits and retries).",
    ["platform", "method"], registry=REGISTRY,
)  # fmt: skip

STAGES = ("retrieval", "model_first_token", "model_total", "answer")


# --- the answer in progress -------------------------------------------------------------------


def new_trace_id() -> str:
    """A new trace id, also made the current one: every log line from here on in this task carries it."""
    trace_id = secrets.token_hex(16)
    TRACE_ID.set(trace_id)
    return trace_id


@functools.cache
def _child(metric: Any, *labels: str) -> Any:
    """``metric.labels(*labels)``, looked up once: the labels are bounded (see above), and the lookup
    costs more than the count itself, several times per answer."""
    return metric.labels(*labels)


def observe_stage(stage: str, started: float) -> None:
    """Record ``stage`` as lasting from ``started`` (a ``time.perf_counter()``) until now."""
    _child(STAGE_SECONDS, stage).observe(time.perf_counter() - started)


@contextlib.contextmanager
def timed(stage: str) -> Iterator[None]:
    """Time the block as ``stage`` (also when it raises)."""
    started = time.perf_counter()
    try:
        yield
    finally:
        observe_stage(stage, started)


def dedup_hit(platform: str) -> None:
    _child(DEDUP_HITS, platform).inc()


def rate_limited(platform: str) -> None:
    _child(RATE_LIMITED, platform).inc()


def error(kind: str) -> None:
    _child(ERRORS, kind).inc()


@dataclass
class _ModelOutcome:
    ok: bool
    at: float


_LAST_MODEL_CALL: dict[str, _ModelOutcome] = {}
"""Profile → how its latest model call ended, for ``/readyz`` (reported, not required)."""


T = TypeVar("T")


async def model_stream(stream: AsyncIterator[T], profile: str | None) -> AsyncIterator[T]:
    """``stream`` (a model's reply), timing its first piece and its whole; a failure is counted as a
    ``model`` error and remembered for ``/readyz``. Closing this closes ``stream``."""
    started = time.perf_counter()
    first = True
    try:
        async for item in stream:
            if first:
                first = False
                observe_stage("model_first_token", started)
            yield item
    except Exception:
        error("model")
        _remember(profile, ok=False)
        raise
    else:
        _remember(profile, ok=True)
    finally:  # also when cancelled or closed early: the time spent is still the model's
        observe_stage("model_total", started)
        close = getattr(stream, "aclose", None)
        if close is not None:
            await close()


def _remember(profile: str | None, *, ok: bool) -> None:
    if profile:
        _LAST_MODEL_CALL[profile] = _ModelOutcome(ok=ok, at=time.time())


def _record_answer(msg: IncomingMessage, answer: FinalAnswer, started: float) -> None:
    _child(ANSWERS, msg.platform, answer.profile or "none", answer.kind).inc()
    if answer.usage is not None and answer.profile:
        _child(TOKENS, answer.profile, "prompt").inc(answer.usage.prompt_tokens)
        _child(TOKENS, answer.profile, "completion").inc(answer.usage.completion_tokens)
    if answer.kind not in ("command", "refused"):
        observe_stage("answer", started)


S = TypeVar("S")
HandleFn = Callable[[S, IncomingMessage], AsyncGenerator[Any, None]]


def instrumented(handle: HandleFn[S]) -> HandleFn[S]:
    """Wraps ``Engine.handle``: answers in progress, answers by outcome, tokens, whole-answer latency,
    internal errors; the trace id the engine sets is the current one only while this reply is produced."""

    @functools.wraps(handle)
    async def wrapper(self: S, msg: IncomingMessage) -> AsyncGenerator[Any, None]:
        started = time.perf_counter()
        token = TRACE_ID.set(None)
        ANSWERS_IN_PROGRESS.inc()
        try:
            async with contextlib.aclosing(handle(self, msg)) as events:
                async for event in events:
                    if isinstance(event, FinalAnswer):
                        _record_answer(msg, event, started)
                    yield event
        except Exception:
            error("internal")
            raise
        finally:
            ANSWERS_IN_PROGRESS.dec()
            with contextlib.suppress(ValueError):  # closed from another context (a GC'd generator)
                TRACE_ID.reset(token)

    return wrapper


# --- platform API calls -----------------------------------------------------------------------

_SLACK_METHOD = re.compile(r"^[a-z]+(\.[A-Za-z]+)+$")


def api_method(platform: str, path: str) -> str:
    """A bounded, secret-free name for an API request's path.

    Slack: the Web API method (``chat.postMessage``), else ``other``. Any other platform: the first
    path segment after the API version (``channels``, ``webhooks``, ``interactions``), never the
    ids and tokens that follow it.
    """
    segments = [s for s in path.split("/") if s]
    if platform == "slack":
        last = segments[-1] if segments else ""
        return last if _SLACK_METHOD.fullmatch(last) else "other"
    for i, segment in enumerate(segments):
        if segment == "api":
            rest = segments[i + 1 :]
            if rest and re.fullmatch(r"v\d+", rest[0]):
                rest = rest[1:]
            segments = rest
            break
    first = segments[0] if segments else ""
    return first if re.fullmatch(r"[a-z][a-z_-]{0,31}", first) else "other"


def api_trace(platform: str) -> aiohttp.TraceConfig:
    """An ``aiohttp.TraceConfig`` for a platform's API session: every request (retries included)
    counts in ``bothbot_platform_api_calls``, every 429 also in ``bothbot_platform_api_rate_limited``."""

    async def on_request_end(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestEndParams
    ) -> None:
        method = api_method(platform, params.url.path)
        API_CALLS.labels(platform, method).inc()
        if params.response.status == 429:
            API_RATE_LIMITED.labels(platform, method).inc()

    async def on_request_exception(
        session: aiohttp.ClientSession, context: SimpleNamespace, params: aiohttp.TraceRequestExceptionParams
    ) -> None:
        API_CALLS.labels(platform, api_method(platform, params.url.path)).inc()

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(on_request_end)
    trace.on_request_exception.append(on_request_exception)
    trace.freeze()
    return trace


# --- health and readiness ---------------------------------------------------------------------


class _Pingable(Protocol):
    def ping(self, **kwargs: Any) -> Any: ...


class _Countable(Protocol):
    async def count(self, kbs: Any = None) -> int: ...


PROBE_TIMEOUT_SECONDS = 2.0


@dataclass
class Readiness:
    """What ``/readyz`` checks: ``redis`` answers PING and the knowledge ``store`` answers a count
    (each within :data:`PROBE_TIMEOUT_SECONDS`). ``models`` (profile → endpoint) are reported with
    how their latest call ended, not required: a bot without a model still answers from retrieval.
    ``stopping`` (set on SIGTERM) makes it 503, so a load balancer sends nothing more."""

    redis: _Pingable | None
    store: _Countable | None
    models: Mapping[str, str | None] = field(default_factory=dict)
    stopping: asyncio.Event | None = None

    async def check(self) -> tuple[bool, dict[str, Any]]:
        checks: dict[str, str] = {}
        redis, store = self.redis, self.store
        if redis is not None:
            checks["redis"] = await _probe(lambda: redis.ping())
        if store is not None:
            checks["store"] = await _probe(lambda: store.count())
        ready = all(v == "ok" for v in checks.values())
        body: dict[str, Any] = {"ready": ready, "checks": checks, "models": self._models()}
        if self.stopping is not None and self.stopping.is_set():
            body["ready"], body["stopping"] = False, True
        return bool(body["ready"]), body

    def _models(self) -> dict[str, dict[str, str | None]]:
        report: dict[str, dict[str, str | None]] = {}
        for name, base_url in self.models.items():
            last = _LAST_MODEL_CALL.get(name)
            report[name] = {
                "endpoint": endpoint_host(base_url),
                "last_call": None if last is None else ("ok" if last.ok else "failed"),
            }
        return report


def endpoint_host(base_url: str | None) -> str:
    """``host[:port]`` of a model endpoint: no path, user or password."""
    if not base_url:
        return "api.openai.com"
    parts = urlsplit(base_url)
    host = parts.hostname or "?"
    return f"{host}:{parts.port}" if parts.port else host


async def _probe(call: Callable[[], Awaitable[object]]) -> str:
    try:
        await asyncio.wait_for(call(), PROBE_TIMEOUT_SECONDS)
    except TimeoutError:
        return "timeout"
    except Exception as exc:
        return f"error: {type(exc).__name__}"
    return "ok"


def readiness_of(runtime: object, stopping: asyncio.Event | None = None) -> Readiness:
    """The readiness of a started runtime (``bot.runtime.Runtime`` or anything shaped like it)."""
    state = getattr(runtime, "state", None)
    settings = getattr(runtime, "settings", None)
    profiles: Mapping[str, Any] = getattr(settings, "profiles", {}) or {}
    return Readiness(
        redis=getattr(state, "redis", None),
        store=getattr(runtime, "knowledge", None),
        models={name: getattr(p, "base_url", None) for name, p in profiles.items()},
        stopping=stopping,
    )


HEALTH_PATH = "/healthz"
READY_PATH = "/readyz"
METRICS_PATH = "/metrics"


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


def readyz_handler(readiness: Readiness) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def readyz(request: web.Request) -> web.Response:
        ready, body = await readiness.check()
        return web.json_response(body, status=200 if ready else 503)

    return readyz


async def metrics(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(REGISTRY), headers={"Content-Type": CONTENT_TYPE_LATEST})


def health_routes(readiness: Readiness, *, healthz: bool = True) -> list[web.RouteDef]:
    """``/readyz`` and ``/metrics`` (and ``/healthz`` unless the app has its own)."""
    routes = [web.get(READY_PATH, readyz_handler(readiness)), web.get(METRICS_PATH, metrics)]
    if healthz:
        routes.insert(0, web.get(HEALTH_PATH, _healthz))
    return routes


async def start_health_server(readiness: Readiness, host: str, port: int) -> Listener:
    """Serve ``/healthz``, ``/readyz`` and ``/metrics`` on ``host:port`` (0: any free port)."""
    app = web.Application()
    app.add_routes(health_routes(readiness))
    return await listen(app, host, port, setting="BOTHBOT_HEALTH_PORT")
