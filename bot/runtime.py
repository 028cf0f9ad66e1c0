"""Everything one bothbot process runs on, opened once and closed once: state, knowledge, models, engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.engine import Engine
from bot.model_client import ModelRouter
from bot.settings import Settings
from bot.state import StateStore, connect_redis
from retrieval.api import KnowledgeBase
from retrieval.errors import RetrievalError
from retrieval.factory import RetrievalService, open_knowledge_base
from retrieval.handoff import IngestHandoffServer, socket_path

log = logging.getLogger(__name__)


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
