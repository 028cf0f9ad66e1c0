"""The part of a passage that shows the answer: its best window of whole sentences.

Retrieval-only replies show a few hundred characters of each passage. The first few hundred are
often the lead-in; the window of consecutive sentences (list items and table rows count as
sentences) that contains the most of the question's topic terms (``retrieval.query``: question
words and filler aside, stemmed) is what answers it. Cuts are marked with "…".
"""

from __future__ import annotations

import re
from functools import lru_cache

from retrieval.query import QueryAnalyzer
from retrieval.sparse import Bm25Encoder

ELLIPSIS = "…"
# a sentence ends at . ! ? (followed by a space) or at a line break; lines of a list or table stand alone
_SENTENCE_END = re.compile(r"(?<=[.!?…])[\"')\]]*\s+|\s*\n\s*")


@lru_cache(maxsize=8)
def _analyzer(language: str) -> QueryAnalyzer:
    return QueryAnalyzer(Bm25Encoder(language))


def sentences(text: str) -> list[str]:
    """The text's sentences (and lines), whitespace inside each collapsed."""
    return [" ".join(s.split()) for s in _SENTENCE_END.split(text.strip()) if s and s.strip()]


def best_window(text: str, question: str, *, language: str = "english", max_chars: int = 400) -> str:
    """Up to ``max_chars`` characters of ``text``: the consecutive sentences covering the most of the
    question's topic terms, starting at a matching sentence (the text's start when nothing matches)."""
    parts = sentences(text)
    if not parts:
        return ""
    analyzer = _analyzer(language)
    wanted = set(analyzer.terms(question).topic)
    found = [wanted.intersection(analyzer.encoder.term_ids(s)) for s in parts]
    best: tuple[int, bool, int, int] = (-1, False, 0, 0)  # (terms covered, starts on a match, -start, end)
    for start in range(len(parts)):
        covered: set[int] = set()
        size = -1
        end = start
        while end < len(parts) and (end == start or size + 1 + len(parts[end]) <= max_chars):
            size += 1 + len(parts[end])
            covered |= found[end]
            end += 1
        best = max(best, (len(covered), bool(found[start]), -start, end))
    start, end = -best[2], best[3]
    if not best[0]:
        start = 0
    window = " ".join(parts[start:end])
    if len(window) > max_chars:  # one sentence longer than the window: cut at a word boundary
        window = window[: max_chars - 1].rsplit(" ", 1)[0].rstrip(" ,;:") + ELLIPSIS
    elif end < len(parts):
        window += " " + ELLIPSIS
    return (ELLIPSIS + " " + window) if start > 0 else window
