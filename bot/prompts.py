"""Prompt assembly: system instructions, numbered sources, history within a token budget, the question.

Also the retrieval-only rendering used when no model is configured or reachable.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from bot.messages import Citation
from bot.state import Turn
from retrieval.api import Passage

DEFAULT_SYSTEM_PROMPT = (
    "You are bothbot, a helpful assistant for a team. Answer the user's question using the numbered "
    "sources below. Cite the sources you use with their numbers in square brackets, like [1] or [2][3]. "
    "If the sources do not contain the answer, say so plainly instead of guessing. Be concise."
)
NO_SOURCES_NOTE = (
    "No source in the knowledge base matches this question. Say that the knowledge base does not cover "
    "it; answer only from the conversation so far if it does."
)
RAG_OFF_NOTE = "Retrieval is off in this channel: answer from your own knowledge and the conversation."

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


def cited(citations: Sequence[Citation], answer: str) -> tuple[Citation, ...]:
    """The citations the answer refers to by ``[n]``; all of them when it refers to none."""
    used = {int(n) for n in _CITE_RE.findall(answer)}
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


def build_messages(
    *,
    system_prompt: str | None,
    question: str,
    passages: Sequence[Passage],
    history: Sequence[Turn],
    rag: bool,
) -> list[dict[str, str]]:
    system = system_prompt or DEFAULT_SYSTEM_PROMPT
    if not rag:
        system = f"{system}\n\n{RAG_OFF_NOTE}"
    elif passages:
        system = f"{system}\n\n{sources_block(passages)}"
    else:
        system = f"{system}\n\n{NO_SOURCES_NOTE}"
    messages = [{"role": "system", "content": system}]
    messages.extend({"role": t.role, "content": t.content} for t in history)
    messages.append({"role": "user", "content": question})
    return messages


def retrieval_only_text(passages: Sequence[Passage], reason: str) -> str:
    lines = [f"Retrieval-only answer ({reason}). The most relevant passages:"]
    for i, p in enumerate(passages[:RETRIEVAL_ONLY_PASSAGES], start=1):
        snippet = " ".join(p.text.split())
        if len(snippet) > SNIPPET_CHARS:
            snippet = snippet[: SNIPPET_CHARS - 1].rstrip() + "…"
        lines.append(f"\n[{i}] {where(p.title or p.source, p.heading)}\n> {snippet}")
    return "\n".join(lines)
