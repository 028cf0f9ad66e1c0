"""What a question is about: the terms that rank passages and judge the match.

People ask "How do I run several replicas?" or "@bothbot can you tell me how to reset my
password, please?". The question words and filler in them ("how do I", "can you tell me",
"please", a leading ``@bothbot``, Slack and Discord mentions such as ``<@U123>``) occur in many
documents and would otherwise decide the ranking. They are dropped from the query (documents are
indexed as before), in the languages ``retrieval.stopwords`` has lists for. A query made only of
such words keeps all its terms, so "how to" or "what is it" still searches.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from retrieval.sparse import Bm25Encoder, SparseVec
from retrieval.stopwords import FILLER_PHRASES, FILLER_WORDS

# Slack (<@U123>, <@U123|name>, <#C123|general>, <!here>) and Discord (<@123>, <@!123>, <@&123>, <#123>)
_MARKUP_MENTION = re.compile(r"<[@#!][^<>\s]*>")
# "@bothbot ...", "hey @bothbot, ..." at the start: the question is addressed to someone
_ADDRESSED = re.compile(r"^\s*(?:\w+[\s,]+)?@[\w.\-]+[\s,:;]*")


@dataclass(frozen=True, slots=True)
class QueryTerms:
    """Distinct term ids of a question, in order."""

    topic: tuple[int, ...]  # what ranks and what a passage must cover
    everything: tuple[int, ...]  # every term of the question (filler included)

    @property
    def fallback(self) -> bool:
        """True when the question had no topic terms of its own, so all its terms are used."""
        return self.topic == self.everything

    def sparse(self) -> SparseVec:
        return SparseVec(list(self.topic), [1.0] * len(self.topic))


class QueryAnalyzer:
    """Splits a question into topic terms and filler for one encoder's language."""

    def __init__(self, encoder: Bm25Encoder, *, drop_filler: bool = True) -> None:
        self.encoder = encoder
        words = FILLER_WORDS.get(encoder.language, frozenset()) if drop_filler else frozenset()
        self._filler = frozenset(tid for word in words for tid in encoder.term_ids(word))
        phrases = FILLER_PHRASES.get(encoder.language, ()) if drop_filler else ()
        self._phrases = re.compile("|".join(phrases)) if phrases else None
        self._drop = drop_filler

    def terms(self, question: str) -> QueryTerms:
        everything = tuple(dict.fromkeys(self.encoder.term_ids(self._unaddressed(question))))
        if not self._drop:
            return QueryTerms(everything, everything)
        text = self._unaddressed(question)
        if self._phrases is not None:
            text = self._phrases.sub(" ", unicodedata.normalize("NFKC", text.casefold()))
        topic = tuple(t for t in dict.fromkeys(self.encoder.term_ids(text)) if t not in self._filler)
        return QueryTerms(topic or everything, everything)

    def _unaddressed(self, question: str) -> str:
        """The question without mentions of people, channels or the bot it is addressed to."""
        text = _MARKUP_MENTION.sub(" ", question)
        return _ADDRESSED.sub(" ", text) if self._drop else text
