"""Splitting long answers into messages: one splitter for every platform.

A cut goes at the best boundary before the limit (paragraph, line, sentence, word; a hard cut
only when there is none), and a code fence open at the cut is closed in the piece and reopened,
with its language, in the rest, so every piece renders on its own. The platform supplies its
limit and how it measures a piece (Slack measures the mrkdwn its text becomes; Discord counts
characters). Formatting itself (Slack mrkdwn, Discord markdown) stays with each platform.

While an answer streams, a piece depends only on the text before its cut, so once the text
after it is longer than the window the piece never changes: only the last piece grows.
"""

from __future__ import annotations

import re
from collections.abc import Callable

Measure = Callable[[str], int]

FENCE_RESERVE = 8
"""Characters kept free in a piece for closing a code fence at the cut."""

_FENCE = re.compile(r"^[ \t]*```([^`\n]*)$", re.MULTILINE)
_SEPARATORS = ("\n\n", "\n", ". ", " ")


def open_fence(text: str) -> str | None:
    """The info string (``""`` for a bare fence) of the code block left open at the end of ``text``;
    None when every block is closed."""
    info: str | None = None
    for match in _FENCE.finditer(text):
        info = match.group(1).strip() if info is None else None
    return info


def _cut(text: str, budget: int) -> int:
    """Where to cut ``text`` (longer than ``budget``): the last good boundary in the window."""
    window = text[:budget]
    floor = budget // 3
    for separator in _SEPARATORS:
        at = window.rfind(separator)
        if at > floor:
            return at + len(separator)
    return budget


def split_head(text: str, limit: int, measure: Measure = len, *, reserve: int = FENCE_RESERVE) -> tuple[str, str]:
    """``text`` as a head that measures at most ``limit`` and the rest (``""`` when it all fits).

    The head is never empty unless ``text`` is; the rest starts where the head stopped (blank
    lines at the cut dropped, an open code fence reopened).
    """
    if limit <= reserve:
        raise ValueError(f"limit {limit} leaves no room next to the {reserve} characters kept for a fence")
    if measure(text) <= limit:
        return text, ""
    budget = limit - reserve
    while True:
        cut = _cut(text, max(1, budget))
        head, rest = text[:cut], text[cut:]
        info = open_fence(head)
        if info is not None:
            head = head.rstrip("\n") + "\n```"
            rest = f"```{info}\n" + rest.lstrip("\n")
        size = measure(head)
        if size <= limit or budget <= 1:
            stripped = head.rstrip()
            return (stripped or head), (rest if info is not None else rest.lstrip("\n"))
        budget -= max(1, size - limit)


def split_all(text: str, limit: int, measure: Measure = len, *, reserve: int = FENCE_RESERVE) -> list[str]:
    """Every piece of ``text``, each measuring at most ``limit``; ``[""]`` for empty text.

    No piece is empty or only white space, except the single piece of a text that is.
    """
    pieces: list[str] = []
    rest = text
    while rest:
        head, rest = split_head(rest, limit, measure, reserve=reserve)
        if head.strip():
            pieces.append(head)
        if not rest.strip():
            break
    return pieces or [text]
