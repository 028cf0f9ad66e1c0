"""Search: encode the question, query the store with the scope filter, judge the match.

The BM25 query is the question's topic terms (``retrieval.query``: question words, filler and
mentions left out unless nothing else is left). "No good match" (the bot says it does not know
instead of guessing): nothing came back, or none of the returned passages — the ones the model or
the reader is shown — contains at least ``min_term_coverage`` of those topic terms, unless a dense
embedder is configured and its best cosine similarity reaches ``min_dense_score``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Literal

from retrieval.api import DEFAULT_KB, PUBLIC_SCOPE, Passage, SearchResult, SearchScope
from retrieval.config import RetrievalConfig
from retrieval.embeddings import Embedder, EmbeddingError
from retrieval.query import QueryAnalyzer, QueryTerms
from retrieval.sparse import Bm25Encoder
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
        self.analyzer = QueryAnalyzer(encoder, drop_filler=config.drop_question_words)

    async def search(self, query: str, scope: SearchScope, limit: int = 5, mode: SearchMode = "auto") -> SearchResult:
        use_sparse = mode in ("auto", "sparse", "hybrid")
        use_dense = mode in ("dense", "hybrid") or (mode == "auto" and self.embedder is not None)
        terms = self.analyzer.terms(query)
        sparse = terms.sparse() if use_sparse else None
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
        return SearchResult(passages, no_good_match=self._no_good_match(terms, hits))

    def _no_good_match(self, terms: QueryTerms, hits: SearchHits) -> bool:
        if not hits.hits:
            return True
        if hits.best_dense is not None and hits.best_dense >= self.config.min_dense_score:
            return False
        wanted = set(terms.topic)
        if not wanted:
            return True
        needed = self.config.min_term_coverage * len(wanted)
        for hit in hits.hits:
            have = hit.terms  # the stored chunk's indexed terms: those of its title, heading and text
            if have is None:
                p = hit.payload
                have = self.encoder.term_ids(f"{p.get('title', '')}\n{p.get('heading') or ''}\n{p.get('text', '')}")
            if len(wanted.intersection(have)) >= needed:
                return False
        return True


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
        scope=_scope(payload.get("scope")),
    )


def _scope(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        return (value,)
    if isinstance(value, (list, tuple)):
        return tuple(str(v) for v in value)
    return (PUBLIC_SCOPE,)
