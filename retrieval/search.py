"""Search: encode the question, query the store with the scope filter, judge the match.

"No good match" (the bot says it does not know instead of guessing): nothing came back, or the
best passage contains less than ``min_term_coverage`` of the question's topic terms (stop words
and question words such as "how" or "does" aside), unless a dense embedder is configured and its
best cosine similarity reaches ``min_dense_score``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from retrieval.api import DEFAULT_KB, Passage, SearchResult, SearchScope
from retrieval.config import RetrievalConfig
from retrieval.embeddings import Embedder, EmbeddingError
from retrieval.sparse import Bm25Encoder
from retrieval.stopwords import QUESTION_WORDS
from retrieval.store.protocol import SearchHits, VectorStore

log = logging.getLogger(__name__)

SearchMode = Literal["auto", "sparse", "dense", "hybrid"]


class Searcher:
    def __init__(
        self, store: VectorStore, encoder: Bm25Encoder, embedder: Embedder | None, config: RetrievalConfig
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.embedder = embedder
        self.config = config
        self._ignore = frozenset(
            tid for word in QUESTION_WORDS.get(encoder.language, ()) for tid in encoder.term_ids(word)
        )

    async def search(self, query: str, scope: SearchScope, limit: int = 5, mode: SearchMode = "auto") -> SearchResult:
        use_sparse = mode in ("auto", "sparse", "hybrid")
        use_dense = mode in ("dense", "hybrid") or (mode == "auto" and self.embedder is not None)
        sparse = self.encoder.query(query) if use_sparse else None
        dense: list[float] | None = None
        if use_dense and self.embedder is not None and self.store.meta.dense_size is not None:
            try:
                dense = await self.embedder.embed_query(query)
            except EmbeddingError as exc:
                if mode == "dense":
                    raise
                log.warning("dense query failed, searching with BM25 only: %s", exc)
        hits = await self.store.search(
            sparse=sparse if sparse else None,
            dense=dense,
            kbs=scope.kbs,
            channel=scope.channel,
            limit=limit,
            prefetch_limit=max(self.config.prefetch_limit, limit),
            fusion=self.config.fusion,
            hnsw_ef=max(self.config.hnsw_ef, self.config.prefetch_limit, limit),
        )
        passages = tuple(passage_from(h.id, h.score, h.payload) for h in hits.hits)
        return SearchResult(passages, no_good_match=self._no_good_match(query, hits))

    def _no_good_match(self, query: str, hits: SearchHits) -> bool:
        if not hits.hits:
            return True
        if hits.best_dense is not None and hits.best_dense >= self.config.min_dense_score:
            return False
        wanted = set(self.encoder.term_ids(query))
        topical = wanted - self._ignore or wanted
        if not topical:
            return hits.best_dense is None or hits.best_dense < self.config.min_dense_score
        best = hits.hits[0].payload
        have = set(
            self.encoder.term_ids(f"{best.get('title', '')}\n{best.get('heading') or ''}\n{best.get('text', '')}")
        )
        return len(topical & have) / len(topical) < self.config.min_term_coverage


def passage_from(point_id: str, score: float, payload: Mapping[str, Any]) -> Passage:
    """A stored point's payload as the engine's :class:`Passage`."""
    heading = payload.get("heading")
    url = payload.get("url")
    return Passage(
        chunk_id=point_id,
        text=str(payload.get("text", "")),
        source=str(payload.get("source", "")),
        title=str(payload.get("title", "")),
        score=float(score),
        kb=str(payload.get("kb", DEFAULT_KB)),
        heading=str(heading) if heading else None,
        url=str(url) if url else None,
    )
