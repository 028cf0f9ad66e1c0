"""BM25 as sparse vectors, with no model: term-frequency weights here, IDF in Qdrant.

A term is a Unicode word (letters and digits; each CJK ideograph or kana is a term of its own),
case-folded, with the language's stop words dropped and Snowball stemming applied. Its index is
the CRC-32 of the stemmed term, so no vocabulary has to be stored or shared between processes.

Document side: ``tf·(k1+1) / (tf + k1·(1 - b + b·len/avglen))``; query side: 1 per distinct
term; Qdrant's ``Modifier.IDF`` multiplies in ``ln(1 + (N - n + 0.5)/(n + 0.5))`` at query time.
The dot product is then Lucene's BM25 score.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections import _count_elements  # type: ignore[attr-defined]  # C counter loop
from collections.abc import Sequence
from dataclasses import dataclass

import snowballstemmer

from retrieval.stopwords import STOP_WORDS

_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff"
_WORD = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+(?:['’][^\W_{_CJK}]+)*")
# ASCII fast path: every ASCII character that is not a letter, digit or apostrophe becomes a space,
# then str.split() finds the words (same words as _WORD for ASCII text, apostrophes trimmed later).
_ASCII_WORDS = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "'")})
_MAX_TERM = 64
_CACHE_LIMIT = 500_000


@dataclass(frozen=True, slots=True)
class SparseVec:
    # lists, or packed arrays (uint32 / float32) when they came from an ingest worker process
    indices: Sequence[int]
    values: Sequence[float]

    def __len__(self) -> int:
        return len(self.indices)


class Bm25Encoder:
    """Tokenise, drop stop words, stem, hash; encode documents and queries as sparse vectors."""

    def __init__(
        self,
        language: str = "english",
        *,
        stemming: bool = True,
        stop_words: bool = True,
        k1: float = 1.2,
        b: float = 0.75,
    ) -> None:
        language = language.lower()
        self.language = language
        self.k1 = k1
        self.b = b
        self._stop = STOP_WORDS.get(language, frozenset()) if stop_words else frozenset()
        self._stemmer = (
            snowballstemmer.stemmer(language)
            if stemming and language != "none" and language in snowballstemmer.algorithms()
            else None
        )
        self._ids: dict[str, int] = {}  # surface form -> term id, -1 for a stop word
        self.signature = f"bm25:{language}:{'stem' if self._stemmer else 'nostem'}:{'stop' if self._stop else 'all'}"

    def term_ids(self, text: str) -> list[int]:
        """The ids of the text's terms in order (stop words dropped)."""
        text = text.casefold()
        if not text.isascii():
            text = unicodedata.normalize("NFKC", text)
        ids = self._ids
        out: list[int] = []
        append = out.append
        for word in text.translate(_ASCII_WORDS).replace("''", " ").split() if text.isascii() else _WORD.findall(text):
            tid = ids.get(word)
            if tid is None:
                tid = self._learn(word)
            if tid >= 0:
                append(tid)
        return out

    def _learn(self, word: str) -> int:
        base = word.replace("’", "'").strip("'")
        base = base[:-2] if base.endswith("'s") else base
        if base in self._stop or not base:
            tid = -1
        else:
            stem = self._stemmer.stemWord(base) if self._stemmer is not None else base
            tid = zlib.crc32(stem[:_MAX_TERM].encode())
        if len(self._ids) >= _CACHE_LIMIT:
            self._ids.clear()
        self._ids[word] = tid
        return tid

    def analyze(self, text: str) -> tuple[dict[int, int], int]:
        """Term frequencies of a document and its length in terms."""
        text = text.casefold()
        if not text.isascii():
            text = unicodedata.normalize("NFKC", text)
        words = text.translate(_ASCII_WORDS).replace("''", " ").split() if text.isascii() else _WORD.findall(text)
        lookup = self._ids.get
        tids = list(map(lookup, words))  # C-level loop; None marks a word not seen before
        if None in tids:  # learned here, not looked up again: learning may clear the cache part way
            learned = {word: self._learn(word) for word in set(words).difference(self._ids)}
            tids = [learned[word] if tid is None else tid for word, tid in zip(words, tids, strict=True)]
        counts: dict[int, int] = {}
        _count_elements(counts, tids)
        length = len(tids) - counts.pop(-1, 0)
        return counts, length

    def weights(self, counts: dict[int, int], length: int, avg_len: float) -> SparseVec:
        """BM25 term-frequency weights of analysed terms."""
        if not length:
            return SparseVec([], [])
        k1 = self.k1
        norm = k1 * (1.0 - self.b + self.b * length / max(avg_len, 1.0))
        k1p1 = k1 + 1.0
        return SparseVec(list(counts), [tf * k1p1 / (tf + norm) for tf in counts.values()])

    def document(self, text: str, avg_len: float) -> tuple[SparseVec, int]:
        """BM25 term-frequency weights of a document and its length in terms."""
        counts, length = self.analyze(text)
        return self.weights(counts, length, avg_len), length

    def query(self, text: str) -> SparseVec:
        """Weight 1 for each distinct query term."""
        ids = list(dict.fromkeys(self.term_ids(text)))
        return SparseVec(ids, [1.0] * len(ids))
