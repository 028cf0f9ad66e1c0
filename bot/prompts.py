"""Prompt assembly: system instructions, numbered sources, history within a token budget, the question.

Also the retrieval-only rendering used when no model is configured or reachable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

from bot.messages import Citation
from bot.state import Turn
from retrieval.api import KnowledgeBase, Passage, SearchResult, SearchScope
from retrieval.excerpt import best_window

DEFAULT_SYSTEM_PROMPT = "You are bothbot, a helpful assistant for a team. Be concise."
SOURCES_NOTE = (
    "Answer the user's question using the numbered sources below. Cite the sources you use with their "
    "numbers in square brackets, like [1] or [2][3]. If the sources do not contain the answer, say so "
    "plainly instead of guessing."
)
NO_SOURCES_NOTE = (
    "No source in the knowledge base matches this question. Say that the knowledge base does not cover "
    "it; answer only from the conversation so far if it does."
)
CLOSED_BOOK_NOTE = (
    "No documents are given to you here: answer from your own knowledge and the conversation. If you "
    "do not know the answer, say so plainly instead of guessing."
)

ContextMode = Literal["sources", "no_match", "closed"]
"""What the model is given: numbered sources, a note that nothing matched, or no retrieval at all."""

_CITE_RE = re.compile(r"\[(\d{1,2})\]")
SNIPPET_CHARS = 400
RETRIEVAL_ONLY_PASSAGES = 3


def short_heading(title: str, heading: str | None) -> str | None:
    """The heading path without a leading repeat of the document title."""
    if not heading:
        return None
    parts = [p for p in heading.split(" > ") if p]
    if parts and title and parts[0].strip() == title.strip():
        parts = parts[1:]
    return " > ".join(parts) or None


def where(title: str, heading: str | None) -> str:
    return " — ".join(x for x in (title, short_heading(title, heading)) if x)


def estimate_tokens(text: str) -> int:
    """About four characters a token: close enough to budget history without a tokenizer."""
    return len(text) // 4 + 1


def citations_for(passages: Sequence[Passage]) -> tuple[Citation, ...]:
    return tuple(
        Citation(
            index=i,
            title=p.title or p.source,
            source=p.source,
            url=p.url,
            heading=short_heading(p.title or p.source, p.heading),
            score=p.score,
            chunk_id=p.chunk_id,
        )
        for i, p in enumerate(passages, start=1)
    )


def cited_numbers(answer: str) -> frozenset[int]:
    """The source numbers an answer refers to as ``[n]``."""
    return frozenset(int(n) for n in _CITE_RE.findall(answer))


def cited(citations: Sequence[Citation], answer: str) -> tuple[Citation, ...]:
    """The citations the answer refers to by ``[n]``; all of them when it refers to none."""
    used = cited_numbers(answer)
    picked = tuple(c for c in citations if c.index in used)
    return picked or tuple(citations)


def history_within(turns: Sequence[Turn], budget_tokens: int) -> list[Turn]:
    """The most recent turns whose estimated size fits the budget, oldest first."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        cost = estimate_tokens(turn.content)
        if used + cost > budget_tokens:
            break
        kept.append(turn)
        used += cost
    kept.reverse()
    if kept and kept[0].role == "assistant":
        kept.pop(0)
    return kept


def sources_block(passages: Sequence[Passage]) -> str:
    parts = []
    for i, p in enumerate(passages, start=1):
        parts.append(f"[{i}] {where(p.title or p.source, p.heading)}\n{p.text.strip()}")
    return "Sources:\n\n" + "\n\n".join(parts)


async def retrieve_for_prompt(
    knowledge: KnowledgeBase, question: str, scope: SearchScope, top_k: int
) -> tuple[SearchResult, tuple[Passage, ...]]:
    """The chat's retrieval step: the search result, and the passages the model is shown.

    Weak matches are shown to nobody: with a model the prompt then says that nothing matched; without
    one the reply says so instead of showing unrelated passages. Training data and evaluation call
    this too, so they see exactly what the chat sees.
    """
    found = await knowledge.search(question, scope, limit=top_k)
    return found, (() if found.empty or found.no_good_match else found.passages)


def context_mode(passages: Sequence[Passage], rag: bool) -> ContextMode:
    if not rag:
        return "closed"
    return "sources" if passages else "no_match"


def system_message(system_prompt: str | None, passages: Sequence[Passage], rag: bool) -> str:
    """The system prompt: the profile's persona, then instructions that say what the model really has."""
    persona = system_prompt or DEFAULT_SYSTEM_PROMPT
    mode = context_mode(passages, rag)
    if mode == "closed":
        return f"{persona}\n\n{CLOSED_BOOK_NOTE}"
    if mode == "no_match":
        return f"{persona}\n\n{NO_SOURCES_NOTE}"
    return f"{persona}\n\n{SOURCES_NOTE}\n\n{sources_block(passages)}"


def build_messages(
    *,
    system_prompt: str | None,
    question: str,
    passages: Sequence[Passage],
    history: Sequence[Turn],
    rag: bool,
) -> list[dict[str, str]]:
    """The chat's prompt; the one function that the chat, training data and evaluation all call."""
    messages = [{"role": "system", "content": system_message(system_prompt, passages, rag)}]
    messages.extend({"role": t.role, "content": t.content} for t in history)
    messages.append({"role": "user", "content": question})
    return messages


def retrieval_only_text(
    passages: Sequence[Passage], reason: str, question: str = "", *, language: str = "english"
) -> str:
    """The best passages with their source and heading, each cut to the sentences that match the
    question best (``retrieval.excerpt``), "…" where cut."""
    lines = [f"Retrieval-only answer ({reason}). The most relevant passages:"]
    for i, p in enumerate(passages[:RETRIEVAL_ONLY_PASSAGES], start=1):
        snippet = best_window(p.text, question, language=language, max_chars=SNIPPET_CHARS)
        place = where(p.title or p.source, p.heading)
        source = f" ({p.source})" if p.source and p.source != place else ""
        lines.append(f"\n[{i}] {place}{source}\n> {snippet}")
    return "\n".join(lines)
