"""Everything one bothbot process runs on, opened once and closed once: state, knowledge, models, engine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass

from bot.engine import Engine
from bot.model_client import ModelRouter
from bot.settings import ConfigError, Settings, mask_url_password
from bot.state import StateStore, connect_redis, probe_client
from retrieval.api import KnowledgeBase
from retrieval.errors import RetrievalError
from retrieval.factory import RetrievalService, open_knowledge_base
from retrieval.handoff import IngestHandoffServer, socket_path

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_SECONDS = 3.0
"""How long the start-up check waits for Redis: no retries, so a wrong REDIS_URL fails in seconds."""

_REDIS_FIX = "Start Redis there, fix REDIS_URL, or unset it for in-process state (lost at exit)."


async def check_redis(url: str | None, timeout: float = STARTUP_TIMEOUT_SECONDS) -> None:
    """Ping ``url`` once with a bounded connect timeout; :class:`ConfigError` naming REDIS_URL if it fails.

    The long-lived client (:func:`bot.state.connect_redis`) retries with backoff so a Redis restart
    costs a short wait; at start-up nothing was working yet, so a failure is the setting's fault.
    """
    if url is None:
        return
    from redis.exceptions import AuthenticationError, RedisError, ResponseError

    shown = f"REDIS_URL={mask_url_password(url)}"
    try:
        client = probe_client(url, timeout)  # a cluster URL: its node; a Sentinel URL: the master they name
    except (ValueError, TypeError) as exc:  # a port or database that is not a number, an unknown option
        raise ConfigError(
            f"{shown} is not a valid Redis URL ({exc}). Fix REDIS_URL: redis://[:password@]host:6379/0."
        ) from None
    try:
        await asyncio.wait_for(client.ping(), timeout + 1)
    except AuthenticationError as exc:
        raise ConfigError(
            f"{shown}: Redis refused the credentials ({exc}). Fix the user name or password in REDIS_URL."
        ) from None
    except ResponseError as exc:
        text = str(exc)
        if "DB index" in text:
            fix = "Use a database number Redis has (0-15 by default) in REDIS_URL (redis://host:6379/0)."
        elif any(word in text.upper() for word in ("AUTH", "WRONGPASS", "NOPERM", "PASSWORD")):
            fix = "Fix the user name or password in REDIS_URL."
        else:
            fix = _REDIS_FIX
        raise ConfigError(f"{shown}: Redis refused the connection ({text}). {fix}") from None
    except (TimeoutError, RedisError, OSError, ValueError) as exc:
        reason = str(exc) or type(exc).__name__
        raise ConfigError(f"{shown}: cannot reach Redis ({reason}). {_REDIS_FIX}") from None
    finally:
        with contextlib.suppress(Exception):
            await client.aclose()


def warn_keyless_profiles(settings: Settings) -> list[str]:
    """One warning per profile with neither a key nor an endpoint (it cannot answer); their names."""
    keyless = [name for name, p in settings.profiles.items() if p.api_key is None and not p.base_url]
    for name in keyless:
        log.warning(
            "profile %s has no API key and no endpoint, so its answers will fail: set OPENAI_API_KEY, "
            "api_key_env or base_url in [profiles.%s] of bothbot.toml",
            name,
            name,
        )
    return keyless


@dataclass
class Runtime:
    settings: Settings
    state: StateStore
    knowledge: KnowledgeBase
    router: ModelRouter
    engine: Engine
    handoff: IngestHandoffServer | None = None

    @classmethod
    async def start(cls, settings: Settings, *, serve_ingest: bool = False) -> Runtime:
        """Open everything; with ``serve_ingest``, a bot process that opened the embedded store also takes
        ``bothbot ingest`` runs handed to it over a local socket (see ``retrieval.handoff``)."""
        await check_redis(settings.redis_url)  # a wrong REDIS_URL: a named error in seconds, not retries
        redis, in_process = connect_redis(settings.redis_url, f"bothbot:{settings.redis_prefix}")
        state = StateStore(redis, settings.redis_prefix, in_process=in_process)
        try:
            await redis.ping()
        except Exception:
            await state.aclose()
            raise
        try:
            knowledge = await open_knowledge_base(settings.retrieval_environment())
        except BaseException:
            await state.aclose()
            raise
        warn_keyless_profiles(settings)
        router = ModelRouter(
            settings.profiles,
            timeout_seconds=settings.model_timeout_seconds,
            max_retries=settings.model_max_retries,
        )
        engine = Engine(settings, state, knowledge, router)
        runtime = cls(settings=settings, state=state, knowledge=knowledge, router=router, engine=engine)
        if serve_ingest and not settings.qdrant_url and isinstance(knowledge, RetrievalService):
            await runtime._serve_ingest(knowledge)
        return runtime

    async def _serve_ingest(self, knowledge: RetrievalService) -> None:
        handoff = IngestHandoffServer(knowledge, socket_path(self.settings.data_dir))
        try:
            await handoff.start()
        except (RetrievalError, OSError) as exc:  # the bot still answers; ingest then waits for the store
            log.warning("`bothbot ingest` cannot hand documents to this process: %s", exc)
            return
        self.handoff = handoff
        log.info("`bothbot ingest` hands its work to this process (socket %s)", handoff.path)

    def describe(self) -> list[str]:
        """One line each on where state, knowledge and models live, for the start-up banner."""
        s = self.settings
        state = (
            "state: in-process (no REDIS_URL set; conversations and settings are lost at exit)"
            if self.state.in_process
            else "state: Redis"
        )
        knowledge = "knowledge: Qdrant server" if s.qdrant_url else f"knowledge: embedded Qdrant in {s.data_dir}"
        if s.default_profile:
            model = f"model: profile {s.default_profile} ({s.profiles[s.default_profile].model}) by default"
        else:
            model = "model: none configured — answers are retrieval-only (set OPENAI_API_KEY or OPENAI_BASE_URL)"
        return [state, knowledge, model]

    async def aclose(self) -> None:
        if self.handoff is not None:
            await self.handoff.aclose()
        await self.router.aclose()
        await self.knowledge.aclose()
        await self.state.aclose()
