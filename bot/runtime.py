"""Everything one bothbot process runs on, opened once and closed once: state, knowledge, models, engine."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from bot.engine import Engine
from bot.model_client import ModelRouter
from bot.settings import Settings
from bot.state import StateStore, connect_redis
from retrieval.api import KnowledgeBase
from retrieval.factory import open_knowledge_base

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    state: StateStore
    knowledge: KnowledgeBase
    router: ModelRouter
    engine: Engine

    @classmethod
    async def start(cls, settings: Settings) -> Runtime:
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
        return cls(settings=settings, state=state, knowledge=knowledge, router=router, engine=engine)

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
        await self.router.aclose()
        await self.knowledge.aclose()
        await self.state.aclose()
