"""RAFT training examples: each question with the context the chat's retriever really gives it.

For every question the retriever is asked exactly as the chat asks it (:func:`bot.prompts.retrieve_for_prompt`,
the same scope and top-k) and its raw ranked passages are the context. The gold passage is the given
``chunk_id``, else the chunk of the given ``source`` that the retriever ranks highest (else the one
sharing most words with the answer), else the top retrieved chunk. In ``round(golden_share × n)``
examples (a seeded choice) the gold is in the context — put at a seeded position, replacing the last
passage, when retrieval missed it — and the answer cites it as ``[n]``; in the others the gold is
replaced by the next retrieved passage and the answer stays, so the model learns to answer through
distractors (Zhang et al., RAFT, 2024). The prompt is the chat's own (:func:`bot.prompts.build_messages`).
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

from bot.prompts import build_messages, retrieve_for_prompt
from bot.questions import QuestionItem, prompt_question, sidecar_path
from bot.tune.tokens import TokenCounter
from retrieval.api import KnowledgeBase, Passage, SearchScope

GoldMethod = Literal["chunk_id", "source_ranked", "source_overlap", "top_retrieved"]
GOLD_METHODS: tuple[GoldMethod, ...] = ("chunk_id", "source_ranked", "source_overlap", "top_retrieved")
DEFAULT_EPOCHS = 3
TRAIN_FILE = "train.jsonl"
VALIDATION_FILE = "validation.jsonl"
MANIFEST_FILE = "manifest.json"

_CITATION_RE = re.compile(r"\s*\[\d{1,2}\]")  # the chat's citation marks, as bot.prompts asks for them
_WORD_RE = re.compile(r"\w{3,}")


@runtime_checkable
class StoredKnowledge(KnowledgeBase, Protocol):
    """The knowledge base, plus reading stored chunks by id or source (``RetrievalService``)."""

    async def passages(
        self, kbs: Sequence[str], *, ids: Sequence[str] | None = None, sources: Sequence[str] | None = None
    ) -> list[Passage]: ...


@dataclass(frozen=True, slots=True)
class Skipped:
    ref: str  # "line 4", "chunk 3f2a…", "trace 81ab…"
    reason: str

    def __str__(self) -> str:
        return f"{self.ref}: {self.reason}"


@dataclass(frozen=True)
class RaftOptions:
    scope: SearchScope
    k: int
    golden_share: float = 0.8
    seed: int = 0
    system_prompt: str | None = None


@dataclass(frozen=True)
class Example:
    item: QuestionItem  # the sidecar row: gold chunk ids and sources, reference answer
    messages: list[dict[str, str]]
    gold_in_context: bool
    gold_method: GoldMethod
    retrieved: tuple[str, ...]  # chunk ids the retriever ranked, best first (top k)
    tokens: int = 0


@dataclass
class BuildResult:
    examples: list[Example] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


@dataclass(frozen=True)
class _Prepared:
    item: QuestionItem
    gold: tuple[Passage, ...]
    method: GoldMethod
    ranked: tuple[Passage, ...]  # the retriever's raw ranking, a few beyond k to fill in for a removed gold


def normalise_question(question: str) -> str:
    """Case, spacing and punctuation aside: what makes two questions "the same" for the split."""
    return " ".join(re.findall(r"\w+", question.lower()))


def strip_citations(answer: str) -> str:
    return _CITATION_RE.sub("", answer).strip()


def cite(answer: str, numbers: Sequence[int]) -> str:
    """The answer citing ``numbers`` the way the chat's prompt asks (``… [2].``); old marks removed."""
    text = strip_citations(answer)
    if not numbers:
        return text
    marks = "".join(f"[{n}]" for n in sorted(numbers))
    if text.endswith((".", "!", "?")):
        return f"{text[:-1]} {marks}{text[-1]}"
    return f"{text} {marks}"


async def build_examples(
    knowledge: StoredKnowledge,
    items: Sequence[QuestionItem],
    options: RaftOptions,
    counter: TokenCounter,
    *,
    skipped: Sequence[Skipped] = (),
) -> BuildResult:
    """Examples for ``items`` (which must have answers); rows that cannot be used are skipped with a reason."""
    result = BuildResult(skipped=list(skipped))
    prepared: list[_Prepared] = []
    seen: dict[tuple[str, str], QuestionItem] = {}
    for item in items:
        key = (normalise_question(item.question), " ".join((item.answer or "").split()))
        if key in seen:
            result.skipped.append(Skipped(_ref(item), f"duplicate of {_ref(seen[key])} (same question and answer)"))
            continue
        seen[key] = item
        ready = await _prepare(knowledge, item, options)
        if isinstance(ready, Skipped):
            result.skipped.append(ready)
        else:
            prepared.append(ready)
    chooser = random.Random(options.seed)
    with_gold = set(chooser.sample(range(len(prepared)), round(options.golden_share * len(prepared))))
    examples = [
        _example(p, i in with_gold, random.Random(f"{options.seed}:{i}:{p.item.id}"), options)
        for i, p in enumerate(prepared)
    ]
    counts = await asyncio.to_thread(lambda: [counter.count_messages(e.messages) for e in examples])
    for example, tokens in zip(examples, counts, strict=True):
        if tokens > counter.limit:
            result.skipped.append(
                Skipped(
                    _ref(example.item), f"{tokens} tokens, over the limit of {counter.limit} ({counter.limit_source})"
                )
            )
        else:
            result.examples.append(replace(example, tokens=tokens))
    return result


_NOT_VISIBLE = (
    "not visible in the training data's scope (a channel-only document would leak into a model every channel "
    "can use); ingest it public to train on it"
)


def _ref(item: QuestionItem) -> str:
    return f"line {item.line}" if item.line > 0 else f"question {item.id}"


async def _prepare(knowledge: StoredKnowledge, item: QuestionItem, options: RaftOptions) -> _Prepared | Skipped:
    kbs = options.scope.kbs
    spare = max(1, len(item.chunk_ids))
    found, _shown = await retrieve_for_prompt(knowledge, item.question, options.scope, options.k + spare)
    ranked = found.passages
    if item.chunk_ids:
        stored = {p.chunk_id: p for p in await knowledge.passages(kbs, ids=item.chunk_ids)}
        missing = [c for c in item.chunk_ids if c not in stored]
        if missing:
            return Skipped(_ref(item), f"chunk_id {', '.join(missing)} is not in knowledge base {', '.join(kbs)}")
        hidden = [c for c in item.chunk_ids if not stored[c].visible_from(options.scope.channel)]
        if hidden:
            return Skipped(_ref(item), f"chunk_id {', '.join(hidden)} is {_NOT_VISIBLE}")
        gold = tuple(dict.fromkeys(stored[c] for c in item.chunk_ids))
        if len(gold) > options.k:
            return Skipped(_ref(item), f"{len(gold)} gold chunks do not fit in a context of k={options.k}")
        return _Prepared(item, gold, "chunk_id", ranked)
    if item.sources:
        stored_chunks = await knowledge.passages(kbs, sources=item.sources)
        chunks = [p for p in stored_chunks if p.visible_from(options.scope.channel)]
        if stored_chunks and not chunks:
            return Skipped(_ref(item), f"source {' | '.join(item.sources)} is {_NOT_VISIBLE}")
        if not chunks:
            return Skipped(
                _ref(item),
                f"source {' | '.join(item.sources)} has no chunks in knowledge base {', '.join(kbs)} "
                "(give the document path as `bothbot ingest` names it)",
            )
        ids = {p.chunk_id for p in chunks}
        best = next((p for p in ranked if p.chunk_id in ids), None)
        if best is not None:
            return _Prepared(item, (best,), "source_ranked", ranked)
        return _Prepared(item, (_best_overlap(chunks, item),), "source_overlap", ranked)
    if not ranked:
        return Skipped(_ref(item), "the retriever found nothing for this question and no source or chunk_id is given")
    return _Prepared(item, (ranked[0],), "top_retrieved", ranked)


def _words(text: str) -> set[str]:
    return set(_WORD_RE.findall(text.lower()))


def _best_overlap(chunks: Sequence[Passage], item: QuestionItem) -> Passage:
    """The chunk sharing most words with the answer (then with the question); the first one on a tie."""
    answer, question = _words(item.answer or ""), _words(item.question)
    return max(chunks, key=lambda p: (len(answer & _words(p.text)), len(question & _words(p.text))))


def _example(prepared: _Prepared, gold_in: bool, rng: random.Random, options: RaftOptions) -> Example:
    gold_ids = {p.chunk_id for p in prepared.gold}
    top = list(prepared.ranked[: options.k])
    if gold_in:
        context = list(top)
        missing = [g for g in prepared.gold if g.chunk_id not in {p.chunk_id for p in context}]
        while missing and len(context) + len(missing) > options.k:
            last = max(i for i, p in enumerate(context) if p.chunk_id not in gold_ids)
            context.pop(last)
        for g in missing:
            context.insert(rng.randint(0, len(context)), g)
    else:
        context = [p for p in prepared.ranked if p.chunk_id not in gold_ids][: options.k]
    numbers = [i for i, p in enumerate(context, start=1) if p.chunk_id in gold_ids]
    item = prepared.item
    reference = strip_citations(item.answer or "")
    messages = build_messages(
        system_prompt=options.system_prompt, question=prompt_question(item), passages=context, history=(), rag=True
    )
    messages.append({"role": "assistant", "content": cite(reference, numbers)})
    sidecar = replace(
        item,
        answer=reference,
        chunk_ids=tuple(p.chunk_id for p in prepared.gold),
        sources=tuple(dict.fromkeys(p.source for p in prepared.gold)),
    )
    return Example(
        item=sidecar, messages=messages, gold_in_context=gold_in, gold_method=prepared.method,
        retrieved=tuple(p.chunk_id for p in top),
    )


def split_by_question(
    examples: Sequence[Example], validation_share: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """About ``validation_share`` of the examples for validation, whole questions at a time, seeded."""
    groups: dict[str, list[int]] = {}
    for i, example in enumerate(examples):
        groups.setdefault(normalise_question(example.item.question), []).append(i)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    target = round(validation_share * len(examples))
    held: set[int] = set()
    for key in keys:
        if len(held) >= target:
            break
        held.update(groups[key])
    train = [e for i, e in enumerate(examples) if i not in held]
    validation = [e for i, e in enumerate(examples) if i in held]
    return train, validation


def manifest(
    *,
    source: dict[str, Any],
    result: BuildResult,
    train: Sequence[Example],
    validation: Sequence[Example],
    options: RaftOptions,
    retriever: dict[str, Any],
    counter: TokenCounter,
    target_model: str | None,
    epochs: int = DEFAULT_EPOCHS,
) -> dict[str, Any]:
    """What ``manifest.json`` says: where the data came from, how it was built, how big it is."""
    tokens = [e.tokens for e in result.examples]
    train_tokens = sum(e.tokens for e in train)
    return {
        "source": source,
        "counts": {
            "examples": len(result.examples),
            "train": len(train),
            "validation": len(validation),
            "skipped": len(result.skipped),
            "gold_in_context": sum(e.gold_in_context for e in result.examples),
            "gold_left_out": sum(not e.gold_in_context for e in result.examples),
        },
        "golden_share": options.golden_share,
        "k": options.k,
        "seed": options.seed,
        "scope": {"kbs": list(options.scope.kbs), "channel": options.scope.channel},
        "retriever": retriever,
        "target_model": target_model,
        "system_prompt": "profile" if options.system_prompt else "default",
        "tokenizer": {"name": counter.name, "exact": counter.exact, "limit": counter.limit,
                      "limit_source": counter.limit_source},
        "tokens_per_example": {
            "p50": int(statistics.median(tokens)) if tokens else 0,
            "max": max(tokens, default=0),
        },
        "training_tokens": {
            "train_file": train_tokens,
            "epochs": epochs,
            "epochs_note": f"an estimate at {epochs} epochs (the default assumed here; the backend may choose another)",
            "estimated_total": train_tokens * epochs,
        },
        "gold_selection": {m: sum(e.gold_method == m for e in result.examples) for m in GOLD_METHODS},
        "skipped": [{"ref": s.ref, "reason": s.reason} for s in result.skipped],
        "files": {"train": TRAIN_FILE, "validation": VALIDATION_FILE,
                  "train_questions": sidecar_path(Path(TRAIN_FILE)).name,
                  "validation_questions": sidecar_path(Path(VALIDATION_FILE)).name},
    }


def chat_line(example: Example) -> str:
    return json.dumps({"messages": example.messages}, ensure_ascii=False)


async def write_dataset(
    out: Path, train: Sequence[Example], validation: Sequence[Example], meta: dict[str, Any]
) -> None:
    """``train.jsonl``, ``validation.jsonl``, their question sidecars and ``manifest.json`` in ``out``."""

    def write() -> None:
        out.mkdir(parents=True, exist_ok=True)
        for name, rows in ((TRAIN_FILE, train), (VALIDATION_FILE, validation)):
            path = out / name
            path.write_text("".join(chat_line(e) + "\n" for e in rows), encoding="utf-8")
            sidecar_path(path).write_text(
                "".join(json.dumps(e.item.to_json(), ensure_ascii=False) + "\n" for e in rows), encoding="utf-8"
            )
        (out / MANIFEST_FILE).write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    await asyncio.to_thread(write)
