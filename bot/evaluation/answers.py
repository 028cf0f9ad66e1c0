"""``bothbot eval answers``: every question × profile × mode through the chat's own prompt path.

Modes: ``closed`` (retrieval off: the closed-book prompt), ``oracle`` (the gold passages as the
numbered sources) and ``retrieved`` (what the chat retrieves: :func:`bot.prompts.retrieve_for_prompt`,
public scope, ``retrieval.top_k``). The system prompt is the profile's, the prompt is
:func:`bot.prompts.build_messages` with no history, the user message is
:func:`bot.questions.prompt_question`, and retrieval searches with the bare question. Every profile
runs at temperature 0 (a copy of the profile; the profile itself is unchanged).

Oracle passages: the chunks named by the question's ``chunk_id`` column, in the order given; else
the chunks of the documents in its ``source`` column — all of them when they are at most ``top_k``,
otherwise the ``top_k`` that the knowledge base's own search ranks highest for the question (chunks
it does not rank follow in document order).

Rows are appended to ``OUT/rows.jsonl`` (flushed one by one) as they finish, so an interrupted run
loses nothing finished; the same command again skips them (rows that ended in an error are tried
again). ``OUT/settings.json`` records the arguments; a rerun with different ones is refused
(:mod:`bot.evaluation.answers_command` is the command around this runner).
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pydantic import ValidationError
from tqdm import tqdm

from bot.evaluation.judge import judge_answer
from bot.evaluation.question_sets import EvalQuestion
from bot.evaluation.records import AnswerRow, AnswersError, Mode, ProfileInfo, RowKey, RunSettings, ShownSource
from bot.model_client import ModelClient, ModelError, ModelRouter
from bot.prompts import build_messages, retrieve_for_prompt
from bot.questions import QuestionItem, prompt_question
from retrieval.api import Passage, SearchScope
from retrieval.errors import RetrievalError
from retrieval.factory import RetrievalService

ORACLE_SEARCH_LIMIT = 100


@dataclass(frozen=True, slots=True)
class Context:
    """What one mode gives the model for one question, or why the mode cannot run for it."""

    passages: tuple[Passage, ...] = ()
    rag: bool = True
    skipped: str | None = None


def is_gold(passage: Passage, item: QuestionItem) -> bool:
    if item.chunk_ids:
        return passage.chunk_id in item.chunk_ids
    return passage.source in item.sources


async def gold_passages(
    knowledge: RetrievalService, kbs: Sequence[str], item: QuestionItem, top_k: int
) -> tuple[Passage, ...]:
    """The oracle's sources (see the module docstring for the choice of chunks)."""
    if item.chunk_ids:
        found = {p.chunk_id: p for p in await knowledge.passages(kbs, ids=item.chunk_ids)}
        return tuple(found[c] for c in item.chunk_ids if c in found)
    if not item.sources:
        return ()
    chunks = await knowledge.passages(kbs, sources=item.sources)
    if len(chunks) <= top_k:
        return tuple(chunks)
    ranked = await knowledge.search(item.question, SearchScope(kbs=tuple(kbs)), limit=ORACLE_SEARCH_LIMIT)
    rank = {p.chunk_id: i for i, p in enumerate(ranked.passages)}
    best = sorted(chunks, key=lambda p: rank.get(p.chunk_id, len(rank)))  # stable: unranked in document order
    return tuple(best[:top_k])


async def context_for(
    mode: Mode, question: EvalQuestion, knowledge: RetrievalService, kbs: Sequence[str], top_k: int
) -> Context:
    item = question.item
    if mode == "closed":
        return Context(rag=False)
    if mode == "oracle":
        if not (item.chunk_ids or item.sources):
            return Context(skipped="skipped: the question names no gold passage (`source` or `chunk_id`) for oracle")
        passages = await gold_passages(knowledge, kbs, item, top_k)
        if not passages:
            named = ", ".join(item.chunk_ids or item.sources)
            return Context(skipped=f"skipped: gold passage {named} is not in knowledge base {', '.join(kbs)}")
        return Context(passages)
    _, shown = await retrieve_for_prompt(knowledge, item.question, SearchScope(kbs=tuple(kbs)), top_k)
    return Context(shown)


class RowLog:
    """``rows.jsonl``: read what a run already has; append rows one line at a time, flushed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._file: IO[str] | None = None

    def read(self) -> tuple[list[AnswerRow], list[str]]:
        if not self.path.is_file():
            return [], []
        rows: list[AnswerRow] = []
        problems: list[str] = []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                rows.append(AnswerRow.model_validate_json(line))
            except ValidationError:
                last = number == len(lines)
                why = "cut off (an interrupted write); that row runs again" if last else "unreadable; ignored"
                problems.append(f"{self.path.name} line {number}: {why}")
        return rows, problems

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        cut_off = False
        if self.path.is_file() and self.path.stat().st_size:
            with self.path.open("rb") as fh:
                fh.seek(-1, 2)
                cut_off = fh.read(1) != b"\n"
        self._file = self.path.open("a", encoding="utf-8")
        if cut_off:
            self._file.write("\n")  # after a row cut off mid-write

    def append(self, row: AnswerRow) -> None:
        if self._file is None:
            raise RuntimeError("RowLog.append before open")
        self._file.write(row.model_dump_json() + "\n")
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


@dataclass
class AnswerRunner:
    """Runs the pending rows of one run with at most ``concurrency`` questions in flight."""

    settings: RunSettings
    questions: Sequence[EvalQuestion]
    knowledge: RetrievalService
    router: ModelRouter  # temperature-0 copies of the profiles (and the judge)
    log: RowLog
    concurrency: int
    progress: bool = False

    async def run(self, done: set[RowKey]) -> int:
        """Answer every row not in ``done``; returns how many rows were written."""
        pending = [
            (index, question, [(p, m) for m in self.settings.modes for p in self.settings.profiles
                               if (question.item.id, p.name, m) not in done])
            for index, question in enumerate(self.questions)
        ]
        pending = [job for job in pending if job[2]]
        total = sum(len(job[2]) for job in pending)
        queue: asyncio.Queue[tuple[int, EvalQuestion, list[tuple[ProfileInfo, Mode]]]] = asyncio.Queue()
        for job in pending:
            queue.put_nowait(job)
        written = 0
        with tqdm(total=total, disable=not self.progress, unit="row", desc="answers", file=sys.stderr) as bar:

            async def worker() -> None:
                nonlocal written
                while not queue.empty():
                    index, question, cells = queue.get_nowait()
                    contexts: dict[Mode, Context] = {}
                    for profile, mode in cells:
                        if mode not in contexts:
                            contexts[mode] = await self._context(mode, question)
                        row = await self._row(index, question, profile, mode, contexts[mode])
                        self.log.append(row)
                        written += 1
                        bar.update()

            async with asyncio.TaskGroup() as group:
                for _ in range(min(self.concurrency, len(pending))):
                    group.create_task(worker())
        return written

    async def _context(self, mode: Mode, question: EvalQuestion) -> Context:
        try:
            return await context_for(mode, question, self.knowledge, self.settings.kbs, self.settings.top_k)
        except RetrievalError as exc:
            return Context(skipped=f"retrieval failed: {exc}")

    async def _row(
        self, index: int, question: EvalQuestion, profile: ProfileInfo, mode: Mode, context: Context
    ) -> AnswerRow:
        item = question.item
        gold_known = bool(item.chunk_ids or item.sources)
        shown = [ShownSource(n=i, chunk_id=p.chunk_id, source=p.source, gold=is_gold(p, item))
                 for i, p in enumerate(context.passages, start=1)]
        base: dict[str, Any] = {
            "index": index, "id": item.id, "profile": profile.name, "model": profile.model, "mode": mode,
            "question": item.question, "reference": item.answer, "choices": item.choices,
            "gold_known": gold_known, "sources": shown,
            "gold_given": False if mode == "closed" else (any(s.gold for s in shown) if gold_known else None),
        }
        if context.skipped is not None:
            return AnswerRow(**base, error=context.skipped)
        client = self._client(profile.name)
        messages = build_messages(
            system_prompt=profile.system_prompt,
            question=prompt_question(item),
            passages=context.passages,
            history=(),
            rag=context.rag,
        )
        started = time.perf_counter()
        try:
            text, usage = await client.complete(messages)
        except ModelError as exc:
            return AnswerRow(**base, error=f"model: {exc}")
        latency = round((time.perf_counter() - started) * 1000)
        answer = text.strip()
        verdict = None
        if self.settings.judge is not None:
            verdict = await judge_answer(
                self._client(self.settings.judge.profile), item.question, question.judge_reference,
                context.passages, answer,
            )
        return AnswerRow(**base, answer=answer, latency_ms=latency, prompt_tokens=usage.prompt_tokens,
                         completion_tokens=usage.completion_tokens, judge=verdict)

    def _client(self, name: str) -> ModelClient:
        client = self.router.client(name)
        if client is None:  # checked before the run starts
            raise AnswersError(f"profile {name} has no endpoint")
        return client
