"""Questions and grounded answers written from the knowledge base's chunks by a teacher model.

For each chunk the teacher (any profile) is asked for a few questions that the chunk answers, as a
JSON list, then for each question an answer from that chunk alone (RAFT's recipe: questions per
chunk, answers from the gold chunk only). The chunk becomes the question's gold passage. Replies
that are not what was asked for (not a JSON list, empty, "not answerable") and failed calls are
skipped and counted with a reason; nothing the teacher says makes the run fail.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bot.model_client import ModelClient, ModelError
from bot.questions import QuestionItem, question_id
from bot.tune.dataset import Skipped
from retrieval.api import Passage

QUESTIONS_SYSTEM = (
    "You write questions for a quiz about a team's documents. Given one passage, write {n} different "
    "questions that a colleague might ask and that the passage alone answers in a few words. Each "
    "question must make sense without seeing the passage (name the subject; never say 'the passage'). "
    'Reply with a JSON list of strings only, like ["…?", "…?"].'
)
ANSWER_SYSTEM = (
    "You answer a question using only the passage below. Answer in one to three sentences, quoting the "
    "passage's own words for the key fact. Do not mention the passage. If the passage does not answer the "
    "question, reply exactly NOT ANSWERABLE."
)
NOT_ANSWERABLE = "NOT ANSWERABLE"
MAX_QUESTION_CHARS = 500

Progress = Callable[[int, int], None]  # (chunks done, chunks in all)


@dataclass(frozen=True)
class TeacherOptions:
    questions_per_chunk: int = 3
    concurrency: int = 4
    max_chunks: int | None = None  # a seeded sample of the chunks, to bound the cost
    seed: int = 0


@dataclass
class TeacherResult:
    items: list[QuestionItem] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    chunks: int = 0
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def passage_text(chunk: Passage) -> str:
    heading = f"{chunk.title}" + (f" — {chunk.heading}" if chunk.heading else "")
    return f"{heading}\n\n{chunk.text.strip()}" if heading else chunk.text.strip()


def parse_questions(reply: str, limit: int) -> list[str] | None:
    """The questions in a reply (a JSON list of strings, maybe in a code fence); None when it is not one."""
    text = reply.strip()
    fenced = re.fullmatch(r"```(?:json)?\s*(.*?)\s*```", text, flags=re.DOTALL)
    if fenced:
        text = fenced.group(1)
    data: object = None
    with contextlib.suppress(ValueError):
        data = json.loads(text)
    if data is None and (start := text.find("[")) >= 0 and (end := text.rfind("]")) > start:
        with contextlib.suppress(ValueError):
            data = json.loads(text[start : end + 1])
    if isinstance(data, dict):
        data = data.get("questions")
    if not isinstance(data, list):
        return None
    questions = [" ".join(q.split()) for q in data if isinstance(q, str)]
    questions = [q for q in questions if q and len(q) <= MAX_QUESTION_CHARS]
    return list(dict.fromkeys(questions))[:limit] or None


async def generate(
    client: ModelClient,
    chunks: Sequence[Passage],
    options: TeacherOptions,
    progress: Progress | None = None,
) -> TeacherResult:
    """Question items (with answer, gold ``chunk_id`` and source) for ``chunks``, in chunk order."""
    chosen = list(chunks)
    if options.max_chunks is not None and len(chosen) > options.max_chunks:
        picked = sorted(random.Random(options.seed).sample(range(len(chosen)), options.max_chunks))
        chosen = [chosen[i] for i in picked]
    result = TeacherResult(chunks=len(chosen))
    per_chunk: list[tuple[list[QuestionItem], list[Skipped]]] = [([], []) for _ in chosen]
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(chosen)):
        queue.put_nowait(i)
    done = 0

    async def ask(messages: list[dict[str, str]]) -> str:
        result.calls += 1
        text, usage = await client.complete(messages)
        result.prompt_tokens += usage.prompt_tokens
        result.completion_tokens += usage.completion_tokens
        return text.strip()

    async def work_on(index: int) -> None:
        chunk = chosen[index]
        items, skipped = per_chunk[index]
        ref = f"chunk {chunk.chunk_id}"
        context = passage_text(chunk)
        try:
            reply = await ask([
                {"role": "system", "content": QUESTIONS_SYSTEM.format(n=options.questions_per_chunk)},
                {"role": "user", "content": context},
            ])
        except ModelError as exc:
            skipped.append(Skipped(ref, f"the teacher call failed: {exc}"))
            return
        questions = parse_questions(reply, options.questions_per_chunk)
        if questions is None:
            skipped.append(Skipped(ref, f"the teacher's reply is not a JSON list of questions: {reply[:80]!r}"))
            return
        for question in questions:
            try:
                answer = await ask([
                    {"role": "system", "content": f"{ANSWER_SYSTEM}\n\nPassage:\n{context}"},
                    {"role": "user", "content": question},
                ])
            except ModelError as exc:
                skipped.append(Skipped(ref, f"the teacher call failed for {question!r}: {exc}"))
                continue
            if not answer or NOT_ANSWERABLE in answer.upper():
                why = "an empty answer" if not answer else "no answer in the chunk"
                skipped.append(Skipped(ref, f"the teacher gave {why} for {question!r}"))
                continue
            items.append(
                QuestionItem(
                    id=question_id(question), question=question, line=0, answer=answer,
                    sources=(chunk.source,), chunk_ids=(chunk.chunk_id,),
                )
            )

    async def worker() -> None:
        nonlocal done
        while True:
            try:
                index = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            await work_on(index)
            done += 1
            if progress is not None:
                progress(done, len(chosen))

    await asyncio.gather(*(worker() for _ in range(max(1, options.concurrency))))
    for items, skipped in per_chunk:
        result.items.extend(items)
        result.skipped.extend(skipped)
    return result
