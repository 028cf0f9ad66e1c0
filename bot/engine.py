"""The platform-neutral engine: command or question → one Redis script (dedup, rate limits, channel
settings, history) → retrieval → prompt → model stream → one Redis script (turn, trace, event done).
Yields :data:`bot.messages.ReplyEvent`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from typing import Any

from bot import observability
from bot.channels import ChannelConfig, ChannelSettings
from bot.commands import CommandRunner, command_rest, split_command
from bot.experiments import Arm, arm_for_turn
from bot.messages import (
    AnswerKind,
    Citation,
    FeedbackValue,
    FinalAnswer,
    IncomingMessage,
    ReplyEvent,
    Status,
    TextDelta,
    Usage,
)
from bot.model_client import ModelClient, ModelError, ModelRouter
from bot.profiles import ProfileRegistry
from bot.prompts import (
    RETRIEVAL_ONLY_PASSAGES,
    build_messages,
    citations_for,
    cited,
    history_within,
    retrieval_only_text,
    retrieve_for_prompt,
)
from bot.settings import Settings
from bot.state import EventClaim, MessageStart, RateLimit, StateStore, Turn
from retrieval.api import KnowledgeBase, Passage, SearchResult, SearchScope

log = logging.getLogger(__name__)

EMPTY_QUESTION = "Ask me something after the mention, for example: “How do I request a laptop?”"
EMPTY_KB = (
    "The knowledge base is empty, so I have nothing to answer from yet. "
    "Add documents with `bothbot ingest PATH` (a folder of Markdown, text, HTML or PDF files)."
)
NO_MATCH = "I don't know: nothing in the knowledge base matches this question closely enough."
KB_DOWN = "The knowledge base could not be searched just now, so this answer uses no documents."
TRACE_PASSAGE_CHARS = 4000
"""A shown passage's text is kept in the trace up to this length (chunks are far shorter by default)."""


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
        self.profiles = ProfileRegistry(settings, state, router)
        self.channels = ChannelConfig(settings, state, router)
        self.commands = CommandRunner(settings, state, self.channels, router, knowledge)

    async def channel_settings(self, channel_key: str) -> ChannelSettings:
        return await self.channels.get(channel_key)

    async def record_feedback(self, trace_id: str, *, user: str, value: FeedbackValue, platform: str) -> bool:
        """Store a 👍/👎 on an answer's trace; False when the trace is unknown or expired."""
        stored = await self.state.record_feedback(trace_id, f"{platform}:{user}", value)
        log.info("feedback %s on trace %s: %s", value, trace_id, "stored" if stored else "unknown trace")
        return stored

    @observability.instrumented
    async def handle(self, msg: IncomingMessage) -> AsyncGenerator[ReplyEvent, None]:
        """The reply to one message; yields nothing when the event was already handled, or is being
        answered by another replica.

        The event is claimed *in progress* with a short lease, renewed while this reply runs, then
        marked *done* (by the script that saves the answer); a reply that fails (or is
        closed) before showing anything frees the claim, so the platform's retry is answered. A
        process that dies mid-answer leaves a lease that runs out.

        Redis is asked twice per answered question: once before retrieval (the claim, the rate
        limits, the registered profiles, the channel's settings and the history, one script), once
        after (trace, history turns, trace indexes and the claim marked done, one script).
        """
        question = self._question(msg)
        refusal = self._refusal(question) if question is not None else None
        asking = question is not None and refusal is None
        start = await self.state.begin_message(
            event_id=msg.event_id or None,
            lease_seconds=self.settings.event_lease_seconds,
            profiles_key=self.profiles.key,
            rate_limits=self._rate_limits(msg) if asking else (),
            channel_key=msg.channel_key if asking else None,
            conversation_key=msg.conversation_key if asking else None,
        )
        if start.held is not None:
            log.info("duplicate event %s ignored", msg.event_id)
            observability.dedup_hit(msg.platform)
            return
        if start.profiles is not None:
            self.profiles.apply(start.profiles)
        lease = _Lease(self, start.claim) if start.claim is not None else None
        shown = finished = False
        try:
            trace_id = observability.new_trace_id()  # also on every log line of this answer
            if question is None:
                replies = self._command(msg, trace_id)
            elif refusal is not None or start.rate_wait:
                replies = self._refused(msg, refusal, start.rate_wait, trace_id)
            else:
                replies = self._answer(msg, question, start, lease, trace_id)
            async for event in replies:
                shown = shown or not isinstance(event, Status)
                yield event
            finished = True
        finally:
            if lease is not None and not lease.settled:
                await lease.stop()
                await self._settle_claim(lease.claim, done=finished or shown)

    def _question(self, msg: IncomingMessage) -> str | None:
        """The question a message asks, or None for a command that is not a question."""
        if not msg.command:
            return msg.text.strip()
        name, _ = split_command(msg.text)
        spec = self.commands.spec(msg.platform, name)
        return command_rest(msg.text) if spec is not None and spec.question else None

    async def _settle_claim(self, claim: EventClaim, *, done: bool) -> None:
        """Mark the event done, or free it for a retry; a Redis failure here only leaves the lease to run out."""
        try:
            if done:
                await self.state.finish_event(claim, self.settings.dedup_ttl_seconds)
            elif await self.state.release_event(claim):
                log.info("event %s released: its answer failed before showing anything", claim.event_id)
        except Exception as exc:
            log.warning("could not settle the claim on event %s: %s", claim.event_id, exc)

    async def _command(self, msg: IncomingMessage, trace_id: str) -> AsyncIterator[ReplyEvent]:
        name, args = split_command(msg.text)
        result = await self.commands.run(msg, name, args)
        yield FinalAnswer(
            text=result.text, kind="refused" if result.refused else "command", trace_id=trace_id, ephemeral=True
        )

    async def _refused(
        self, msg: IncomingMessage, refusal: str | None, rate_wait: int, trace_id: str
    ) -> AsyncIterator[ReplyEvent]:
        if refusal is None:
            observability.rate_limited(msg.platform)
            refusal = f"You're asking faster than I'm allowed to answer here. Please try again in {rate_wait} s."
        yield FinalAnswer(text=refusal, kind="refused", trace_id=trace_id)

    async def _answer(
        self, msg: IncomingMessage, question: str, start: MessageStart, lease: _Lease | None, trace_id: str
    ) -> AsyncIterator[ReplyEvent]:
        settings = self.settings
        started = time.perf_counter()
        channel = self.channels.resolve(msg.channel_key, start.channel)
        history = start.history
        arm = self._arm(channel, msg.conversation_key, history)
        profile_name = arm.profile if arm else channel.profile
        rag = channel.rag if arm is None or arm.rag is None else arm.rag
        found = SearchResult(passages=())
        shown: tuple[Passage, ...] = ()
        kb_error: str | None = None
        if rag:
            yield Status("Searching the knowledge base…")
            scope = SearchScope(kbs=channel.kbs, channel=None if msg.is_direct else msg.scope_key)
            try:
                with observability.timed("retrieval"):
                    found, shown = await retrieve_for_prompt(
                        self.knowledge, question, scope, settings.retrieval.top_k
                    )
            except Exception as exc:  # the retrieval boundary: answer without context, and say so
                log.warning("knowledge base search failed (trace %s): %s", trace_id, exc, exc_info=True)
                kb_error = f"{type(exc).__name__}: {exc}"[:300]
        client = self.router.client(profile_name) if profile_name else None
        profile = self.router.profiles.get(profile_name) if profile_name else None
        trace: dict[str, Any] = {
            "question": question,
            "platform": msg.platform,
            "channel": msg.channel_key,
            "thread": msg.thread,
            "conversation": msg.conversation_key,
            "user": msg.user,
            "profile": profile_name,
            "model": profile.model if profile else None,
            "experiment": channel.experiment.id if arm and channel.experiment else None,
            "arm": arm.label if arm else None,
            "rag": rag,
            "chunk_ids": [p.chunk_id for p in found.passages],
            "created_at": time.time(),
        }
        if kb_error is not None:
            trace["retrieval_error"] = kb_error

        empty_kb = rag and kb_error is None and found.empty and await self._kb_empty(channel.kbs)
        turn = _Turn(msg, trace, trace_id, started, shown, empty_kb, kb_down=kb_error is not None, lease=lease)
        if client is None or profile is None:
            reason = "no model is configured" if profile is None else f"profile `{profile_name}` has no endpoint"
            async for event in self._without_model(turn, rag, reason):
                yield event
            return
        yield Status(f"Writing an answer with {profile_name}…")
        messages = build_messages(
            system_prompt=profile.system_prompt,
            question=question,
            passages=turn.passages,
            history=history_within(history, settings.history_token_budget),
            rag=rag and not turn.kb_down,  # no documents at all: the model is told so, not "nothing matched"
        )
        async for event in self._with_model(turn, client, messages):
            yield event

    async def _kb_empty(self, kbs: tuple[str, ...]) -> bool:
        try:
            return await self.knowledge.count(list(kbs)) == 0
        except Exception as exc:  # only decides a note; the search itself worked
            log.warning("knowledge base count failed: %s", exc)
            return False

    def _arm(self, channel: ChannelSettings, conversation_key: str, history: list[Turn]) -> Arm | None:
        """The experiment arm answering this conversation, if any; an arm whose profile is gone is skipped."""
        arm = arm_for_turn(channel.experiment, conversation_key, history)
        if arm is not None and arm.profile not in self.router.profiles:
            log.warning("experiment arm %s names an unknown profile; using the channel's profile", arm.label)
            return None
        return arm

    async def _without_model(self, turn: _Turn, rag: bool, reason: str) -> AsyncIterator[ReplyEvent]:
        if turn.passages:
            text = retrieval_only_text(
                turn.passages, reason, turn.trace["question"], language=self.settings.retrieval.language
            )
            kind: AnswerKind = "retrieval_only"
        elif turn.kb_down:
            text = (
                f"The knowledge base could not be searched just now and {reason}, so I have nothing to "
                "answer from. Please try again in a moment."
            )
            kind = "error"
        elif not rag:
            text = (
                f"Retrieval is off in this channel and {reason}, so I have nothing to answer from. "
                "An admin can turn retrieval back on with `rag on`."
            )
            kind = "no_knowledge"
        else:
            text, kind = (EMPTY_KB if turn.empty_kb else NO_MATCH), "no_knowledge"
        yield TextDelta(text)
        citations = citations_for(turn.passages)[:RETRIEVAL_ONLY_PASSAGES]
        yield await self._finish(turn, text, kind, citations, None, save=kind == "retrieval_only")

    async def _with_model(
        self, turn: _Turn, client: ModelClient, messages: list[dict[str, str]]
    ) -> AsyncIterator[ReplyEvent]:
        citations = citations_for(turn.passages)
        pieces: list[str] = []
        usage: Usage | None = None
        kind: AnswerKind = "answer"
        deadline = client.deadline(self.settings.answer_deadline_seconds)
        try:
            stream = client.stream(messages, deadline=deadline)
            async for item in observability.model_stream(stream, turn.trace["profile"]):
                if isinstance(item, Usage):
                    usage = item
                else:
                    pieces.append(item)
                    yield TextDelta(item)
        except ModelError as exc:
            log.warning("model call failed (trace %s, profile %s): %s", turn.trace_id, turn.trace["profile"], exc)
            turn.trace["error"] = str(exc)
            turn.trace["model_tries"] = exc.tries
            if not pieces and turn.passages:
                async for event in self._without_model(turn, True, f"the model failed: {exc}"):
                    yield event
                return
            if not pieces:
                text = f"Sorry, I couldn't get an answer: {exc}. Please try again in a moment."
                yield TextDelta(text)
                yield await self._finish(turn, text, "error", (), None, save=False)
                return
            pieces.append(f"\n\n(The answer was cut short: {exc}.)")
            yield TextDelta(pieces[-1])
            kind = "error"
        if turn.empty_kb:
            pieces.append(f"\n\n({EMPTY_KB})")
            yield TextDelta(pieces[-1])
        if turn.kb_down:
            pieces.append(f"\n\n({KB_DOWN})")
            yield TextDelta(pieces[-1])
        answer = "".join(pieces)
        yield await self._finish(turn, answer, kind, cited(citations, answer), usage)

    def _refusal(self, question: str) -> str | None:
        """Why this question is not answered whatever the state (empty, too long), or None."""
        limit = self.settings.max_question_chars
        if not question:
            return EMPTY_QUESTION
        if len(question) > limit:
            return (
                f"Your message is {len(question):,} characters; I can take up to {limit:,}. "
                "Please shorten it or ask about one part at a time."
            )
        return None

    def _rate_limits(self, msg: IncomingMessage) -> tuple[RateLimit, ...]:
        """The counters a question counts against, in order: its user's, then its channel's."""
        s = self.settings
        window = s.rate_limit_window_seconds
        return (
            RateLimit(f"user:{msg.platform}:{msg.workspace}:{msg.user}", s.rate_limit_user, window),
            RateLimit(f"channel:{msg.channel_key}", s.rate_limit_channel, window),
        )

    async def _finish(
        self,
        turn: _Turn,
        text: str,
        kind: AnswerKind,
        citations: tuple[Citation, ...],
        usage: Usage | None,
        *,
        save: bool = True,
    ) -> FinalAnswer:
        s = self.settings
        trace = turn.trace
        trace.update(
            kind=kind,
            latency_ms=round((time.perf_counter() - turn.started) * 1000, 1),
            usage=None if usage is None else {"prompt": usage.prompt_tokens, "completion": usage.completion_tokens},
            answer_chars=len(text),
            answer=text,
            citations=[_citation_record(c) for c in citations],
            context=[_passage_record(p) for p in turn.passages],
        )
        turns = (
            [Turn("user", trace["question"]), Turn("assistant", text, experiment=trace["experiment"])] if save else []
        )
        lease = turn.lease
        if lease is not None:
            await lease.stop()  # no renewal may land after the claim is marked done
        await self.state.save_answer(
            turn.trace_id,
            trace,
            trace_ttl_seconds=s.trace_ttl_seconds,
            conversation_key=turn.msg.conversation_key,
            turns=turns,
            max_turns=s.history_max_turns,
            history_ttl_seconds=s.history_ttl_seconds,
            finish=lease.claim if lease is not None else None,
            dedup_ttl_seconds=s.dedup_ttl_seconds,
        )
        if lease is not None:
            lease.settled = True
        return FinalAnswer(
            text=text,
            kind=kind,
            trace_id=turn.trace_id,
            citations=citations,
            profile=trace["profile"],
            model=trace["model"],
            usage=usage,
            feedback=kind in ("answer", "retrieval_only", "error", "no_knowledge"),
        )


@dataclass(frozen=True, slots=True)
class _Turn:
    """One question being answered: what the reply paths share."""

    msg: IncomingMessage
    trace: dict[str, Any]
    trace_id: str
    started: float
    passages: tuple[Passage, ...]
    empty_kb: bool
    kb_down: bool = False  # the knowledge base search failed: no documents, and the reply says so
    lease: _Lease | None = None  # the claim on the message's event, marked done with the answer's writes


class _Lease:
    """This process's claim on an event while its answer runs: renewed every third of the lease (a
    timer, so an answer shorter than that costs no task), stopped before the claim is settled."""

    def __init__(self, engine: Engine, claim: EventClaim) -> None:
        self.claim = claim
        self.settled = False
        self._engine = engine
        self._every = engine.settings.event_lease_seconds / 3
        self._task: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(self._every, self._start)

    def _start(self) -> None:
        self._task = asyncio.create_task(self._keep(), name=f"lease of event {self.claim.event_id}")

    async def _keep(self) -> None:
        """Renew the lease now and every third of it, until stopped or until it is no longer ours."""
        state, lease = self._engine.state, self._engine.settings.event_lease_seconds
        while True:
            try:
                if not await state.renew_event(self.claim, lease):
                    log.warning("the claim on event %s ran out while answering; a retry may be answered twice",
                                self.claim.event_id)
                    return
            except Exception as exc:  # Redis unreachable: try again at the next beat, the lease may hold
                log.warning("could not renew the claim on event %s: %s", self.claim.event_id, exc)
            await asyncio.sleep(self._every)

    async def stop(self) -> None:
        self._timer.cancel()
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait({self._task})
            self._task = None


def _citation_record(citation: Citation) -> dict[str, Any]:
    return {
        "index": citation.index,
        "source": citation.source,
        "title": citation.title,
        "heading": citation.heading,
        "chunk_id": citation.chunk_id,
    }


def _passage_record(passage: Passage) -> dict[str, Any]:
    """A passage the model was shown, as kept in the trace (text bounded by TRACE_PASSAGE_CHARS)."""
    return {
        "chunk_id": passage.chunk_id,
        "source": passage.source,
        "title": passage.title,
        "heading": passage.heading,
        "text": passage.text[:TRACE_PASSAGE_CHARS],
    }
