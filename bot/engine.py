"""The platform-neutral engine: dedup → rate limit → command or question → history → retrieval →
prompt → model stream → persist turn and trace. Yields :data:`bot.messages.ReplyEvent`.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from bot.channels import ChannelConfig, ChannelSettings
from bot.commands import ASK_COMMAND, CommandRunner, split_command
from bot.messages import (
    AnswerKind,
    FeedbackValue,
    FinalAnswer,
    IncomingMessage,
    ReplyEvent,
    Status,
    TextDelta,
    Usage,
)
from bot.model_client import ModelError, ModelRouter
from bot.prompts import (
    RETRIEVAL_ONLY_PASSAGES,
    build_messages,
    citations_for,
    cited,
    history_within,
    retrieval_only_text,
)
from bot.settings import Settings
from bot.state import StateStore, Turn
from retrieval.api import KnowledgeBase, SearchResult, SearchScope

log = logging.getLogger(__name__)

EMPTY_QUESTION = "Ask me something after the mention, for example: “How do I request a laptop?”"
EMPTY_KB = (
    "The knowledge base is empty, so I have nothing to answer from yet. "
    "Add documents with `bothbot ingest PATH` (a folder of Markdown, text, HTML or PDF files)."
)
NO_MATCH = "I don't know: nothing in the knowledge base matches this question closely enough."


class Engine:
    def __init__(
        self,
        settings: Settings,
        state: StateStore,
        knowledge: KnowledgeBase,
        router: ModelRouter,
    ) -> None:
        self.settings = settings
        self.state = state
        self.knowledge = knowledge
        self.router = router
        self.channels = ChannelConfig(settings, state)
        self.commands = CommandRunner(settings, state, self.channels, router, knowledge)

    async def channel_settings(self, channel_key: str) -> ChannelSettings:
        return await self.channels.get(channel_key)

    async def record_feedback(self, trace_id: str, *, user: str, value: FeedbackValue, platform: str) -> bool:
        """Store a 👍/👎 on an answer's trace; False when the trace is unknown or expired."""
        stored = await self.state.record_feedback(trace_id, f"{platform}:{user}", value)
        log.info("feedback %s on trace %s: %s", value, trace_id, "stored" if stored else "unknown trace")
        return stored

    async def handle(self, msg: IncomingMessage) -> AsyncIterator[ReplyEvent]:
        """The reply to one message; yields nothing when the event was already handled."""
        if msg.event_id and not await self.state.claim_event(msg.event_id, self.settings.dedup_ttl_seconds):
            log.info("duplicate event %s ignored", msg.event_id)
            return
        trace_id = uuid.uuid4().hex
        if msg.command:
            name, args = split_command(msg.text)
            if name != ASK_COMMAND:
                result = await self.commands.run(msg, name, args)
                yield FinalAnswer(
                    text=result.text,
                    kind="refused" if result.refused else "command",
                    trace_id=trace_id,
                    ephemeral=True,
                )
                return
            question = msg.text.strip()[len(ASK_COMMAND) :].strip()
        else:
            question = msg.text.strip()
        async for event in self._answer(msg, question, trace_id):
            yield event

    async def _answer(self, msg: IncomingMessage, question: str, trace_id: str) -> AsyncIterator[ReplyEvent]:
        settings = self.settings
        if not question:
            yield FinalAnswer(text=EMPTY_QUESTION, kind="refused", trace_id=trace_id)
            return
        if len(question) > settings.max_question_chars:
            yield FinalAnswer(
                text=(
                    f"Your message is {len(question):,} characters; I can take up to "
                    f"{settings.max_question_chars:,}. Please shorten it or ask about one part at a time."
                ),
                kind="refused",
                trace_id=trace_id,
            )
            return
        wait = await self._rate_limited(msg)
        if wait:
            yield FinalAnswer(
                text=f"You're asking faster than I'm allowed to answer here. Please try again in {wait} s.",
                kind="refused",
                trace_id=trace_id,
            )
            return

        started = time.perf_counter()
        channel = await self.channels.get(msg.channel_key)
        found = SearchResult(passages=())
        if channel.rag:
            yield Status("Searching the knowledge base…")
            scope = SearchScope(kbs=channel.kbs, channel=None if msg.is_direct else msg.scope_key)
            found = await self.knowledge.search(question, scope, limit=settings.retrieval.top_k)
        history = await self.state.history(msg.conversation_key)
        profile_name = channel.profile
        client = self.router.client(profile_name) if profile_name else None
        profile = self.router.profiles.get(profile_name) if profile_name else None
        trace: dict[str, Any] = {
            "question": question,
            "platform": msg.platform,
            "channel": msg.channel_key,
            "thread": msg.thread,
            "user": msg.user,
            "profile": profile_name,
            "model": profile.model if profile else None,
            "rag": channel.rag,
            "chunk_ids": [p.chunk_id for p in found.passages],
            "created_at": time.time(),
        }

        nothing_found = found.empty or found.no_good_match
        empty_kb = channel.rag and found.empty and await self.knowledge.count(list(channel.kbs)) == 0
        if channel.rag and nothing_found and (empty_kb or not history):
            # A follow-up with history may still be answerable from the conversation; a first
            # question with no matching source is not: say so instead of guessing.
            text = EMPTY_KB if empty_kb else NO_MATCH
            yield TextDelta(text)
            yield await self._finish(msg, trace, trace_id, started, text, "no_knowledge", (), None, save=False)
            return
        passages = () if found.no_good_match else found.passages
        citations = citations_for(passages)
        shown = citations[:RETRIEVAL_ONLY_PASSAGES]

        if client is None or profile is None:
            reason = "no model is configured" if profile is None else f"profile `{profile_name}` has no endpoint"
            text = retrieval_only_text(passages, reason)
            yield TextDelta(text)
            yield await self._finish(msg, trace, trace_id, started, text, "retrieval_only", shown, None)
            return

        yield Status(f"Writing an answer with {profile_name}…")
        messages = build_messages(
            system_prompt=profile.system_prompt,
            question=question,
            passages=passages,
            history=history_within(history, settings.history_token_budget),
            rag=channel.rag,
        )
        pieces: list[str] = []
        usage: Usage | None = None
        kind: AnswerKind = "answer"
        try:
            async for item in client.stream(messages):
                if isinstance(item, Usage):
                    usage = item
                else:
                    pieces.append(item)
                    yield TextDelta(item)
        except ModelError as exc:
            log.warning("model call failed (trace %s, profile %s): %s", trace_id, profile_name, exc)
            trace["error"] = str(exc)
            if pieces:
                note = f"\n\n(The answer was cut short: {exc}.)"
                pieces.append(note)
                yield TextDelta(note)
                kind = "error"
            elif passages:
                text = retrieval_only_text(passages, f"the model failed: {exc}")
                yield TextDelta(text)
                yield await self._finish(msg, trace, trace_id, started, text, "retrieval_only", shown, None)
                return
            else:
                text = f"Sorry, I couldn't get an answer: {exc}. Please try again in a moment."
                yield TextDelta(text)
                yield await self._finish(msg, trace, trace_id, started, text, "error", (), None, save=False)
                return
        answer = "".join(pieces)
        yield await self._finish(msg, trace, trace_id, started, answer, kind, cited(citations, answer), usage)

    async def _rate_limited(self, msg: IncomingMessage) -> int:
        s = self.settings
        wait_user = await self.state.hit_rate_limit(
            f"user:{msg.platform}:{msg.workspace}:{msg.user}", s.rate_limit_user, s.rate_limit_window_seconds
        )
        if wait_user:
            return wait_user
        return await self.state.hit_rate_limit(
            f"channel:{msg.channel_key}", s.rate_limit_channel, s.rate_limit_window_seconds
        )

    async def _finish(
        self,
        msg: IncomingMessage,
        trace: dict[str, Any],
        trace_id: str,
        started: float,
        text: str,
        kind: AnswerKind,
        citations: tuple[Any, ...],
        usage: Usage | None,
        *,
        save: bool = True,
    ) -> FinalAnswer:
        s = self.settings
        trace.update(
            kind=kind,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
            usage=None if usage is None else {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens},
            answer_chars=len(text),
        )
        if save:
            await self.state.append_turns(
                msg.conversation_key,
                [Turn("user", trace["question"]), Turn("assistant", text)],
                max_turns=s.history_max_turns,
                ttl_seconds=s.history_ttl_seconds,
            )
        await self.state.save_trace(trace_id, trace, s.trace_ttl_seconds)
        return FinalAnswer(
            text=text,
            kind=kind,
            trace_id=trace_id,
            citations=citations,
            profile=trace["profile"],
            model=trace["model"],
            usage=usage,
            feedback=kind in ("answer", "retrieval_only", "error", "no_knowledge"),
        )
