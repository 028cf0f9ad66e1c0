"""What ingest and search need from a vector store, and the rules every backend follows.

One collection holds every knowledge base's chunks. Each chunk point has a sparse vector named
``bm25`` (IDF applied by Qdrant), optionally a dense vector named ``dense`` (cosine), and a payload
with at least ``kb`` (keyword), ``scope`` (list of keywords: ``public`` or channel keys),
``source`` and ``origin`` (keywords, for replacing and pruning) — all four payload-indexed.

Scope rule, enforced inside the store's query filter: a search for ``kbs`` in ``channel`` returns
only points whose ``kb`` is one of ``kbs`` and whose ``scope`` contains ``public`` or ``channel``;
with ``channel`` None (a DM) only ``public``.

Store-wide settings (BM25 average length, dense size) live in one metadata point that has no
``kb`` and so never matches a search or a count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

import numpy as np

from retrieval.api import PUBLIC_SCOPE
from retrieval.sparse import SparseVec

SPARSE_NAME = "bm25"
DENSE_NAME = "dense"
COLLECTION = "bothbot_chunks"
META_ID = "00000000-0000-5000-8000-00000000b07b"  # fixed id of the metadata point
INVENTORY_FIELDS = ("kb", "source", "origin", "doc_hash", "chunk_hash", "path", "dense")
NO_DENSE = "-"  # the ``dense`` payload value (and default) of chunks stored without a dense vector

RRF_K = 60  # the k of reciprocal rank fusion, 1/(k + rank), as in the original paper

Fusion = Literal["dbsf", "rrf"]


@dataclass(frozen=True, slots=True)
class StoredPoint:
    id: str
    sparse: SparseVec
    payload: Mapping[str, Any]
    dense: list[float] | None = None


@dataclass(frozen=True, slots=True)
class Hit:
    id: str
    score: float
    payload: Mapping[str, Any]
    sparse: Any = None
    """The chunk's stored sparse vector (``indices`` and ``values``), when the store returned it."""

    @property
    def terms(self) -> Sequence[int] | None:
        """The ids of the chunk's indexed BM25 terms, when the store returned its sparse vector
        (read when asked: the match check usually needs the first hit's only)."""
        return None if self.sparse is None else cast(Sequence[int], self.sparse.indices)


@dataclass(frozen=True, slots=True)
class SearchHits:
    hits: list[Hit]
    best_dense: float | None = None  # best cosine similarity among the hits, when a dense query ran


@dataclass(frozen=True, slots=True)
class ChunkState:
    """What ingest needs to know about a stored chunk to decide whether to touch it."""

    id: str
    source: str
    origin: str
    doc_hash: str
    chunk_hash: str
    kb: str = ""
    path: str = ""  # the file it was read from (``Document.path``); "" when unknown
    dense: str = NO_DENSE  # the embedder whose vector the chunk holds

    @classmethod
    def from_payload(cls, point_id: str, payload: Mapping[str, Any]) -> ChunkState:
        return cls(
            id=point_id,
            source=str(payload.get("source", "")),
            origin=str(payload.get("origin", "")),
            doc_hash=str(payload.get("doc_hash", "")),
            chunk_hash=str(payload.get("chunk_hash", "")),
            kb=str(payload.get("kb", "")),
            path=str(payload.get("path", "")),
            dense=str(payload.get("dense", NO_DENSE)),
        )


@dataclass(slots=True)
class StoreMeta:
    avg_len: float | None = None
    dense_size: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_payload(self) -> dict[str, Any]:
        return {"meta": True, "avg_len": self.avg_len, "dense_size": self.dense_size, **self.extra}

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any] | None) -> StoreMeta:
        if not payload:
            return cls()
        extra = {k: v for k, v in payload.items() if k not in ("meta", "avg_len", "dense_size")}
        avg = payload.get("avg_len")
        size = payload.get("dense_size")
        return cls(float(avg) if avg is not None else None, int(size) if size is not None else None, extra)


def best_cosine(query: Sequence[float], vectors: Sequence[Sequence[float] | None]) -> float | None:
    """Highest cosine similarity between the query and the given (stored, unit-length) vectors."""
    rows = [v for v in vectors if v is not None and len(v) == len(query)]
    if not rows:
        return None
    q = np.asarray(query, dtype=np.float32)
    norm = float(np.linalg.norm(q))
    if norm == 0.0:
        return None
    m = np.asarray(rows, dtype=np.float32)
    return float(np.max(m @ (q / norm) / np.maximum(np.linalg.norm(m, axis=1), 1e-12)))


def hits_from(points: Sequence[Any], dense: Sequence[float] | None, *, fused: bool, dense_name: str) -> SearchHits:
    """Hits from either backend's scored points (``id``, ``score``, ``payload``, ``vector``).

    ``best_dense`` is the query's best cosine similarity among the returned points: the score
    itself for a dense-only query, computed from the returned vectors for a fused one. A point
    returned with its sparse vector carries its term ids (:attr:`Hit.terms`).
    """
    hits = [Hit(str(p.id), p.score, p.payload or {}, _sparse_vector(p.vector)) for p in points]
    if dense is None or not points:
        return SearchHits(hits)
    if not fused:
        return SearchHits(hits, points[0].score)
    vectors = [p.vector.get(dense_name) if isinstance(p.vector, dict) else None for p in points]
    return SearchHits(hits, best_cosine(dense, vectors))


def _sparse_vector(vectors: Any) -> Any:
    return vectors.get(SPARSE_NAME) if isinstance(vectors, dict) else None


def visible_scopes(channel: str | None) -> list[str]:
    """The scope values a search from ``channel`` may see."""
    return [PUBLIC_SCOPE] if channel is None else [PUBLIC_SCOPE, channel]


class VectorStore(Protocol):
    """Async store of chunk points. Implementations: ``EdgeStore`` (embedded), ``ServerStore``."""

    @property
    def meta(self) -> StoreMeta: ...

    async def save_meta(self, meta: StoreMeta) -> None: ...

    async def ensure_dense(self, size: int) -> None:
        """Make sure the dense vector exists with this size (raises StoreConfigError if it differs)."""
        ...

    async def upsert(self, points: Sequence[StoredPoint]) -> None: ...

    async def set_payload(self, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        """Merge these payload fields into the given points (vectors untouched)."""
        ...

    async def delete(self, ids: Sequence[str]) -> None: ...

    async def delete_kb(self, kb: str) -> int:
        """Remove every chunk of a knowledge base; the number removed."""
        ...

    async def inventory(self, kb: str) -> list[ChunkState]:
        """Every chunk of one knowledge base, with the fields ingest compares."""
        ...

    async def chunks(
        self, kbs: Sequence[str], *, ids: Sequence[str] | None = None, sources: Sequence[str] | None = None
    ) -> list[Hit]:
        """Stored chunks of ``kbs`` with their payloads (score 0), by id, by source, or all when both are None.

        Used to find gold passages (evaluation, training data) and to walk a knowledge base; no scope
        filter applies, so callers decide what a channel may see.
        """
        ...

    async def search(
        self,
        *,
        sparse: SparseVec | None,
        dense: list[float] | None,
        kbs: Sequence[str],
        channel: str | None,
        limit: int,
        prefetch_limit: int,
        fusion: Fusion,
        hnsw_ef: int | None = None,
    ) -> SearchHits:
        """Best chunks in the given knowledge bases visible from ``channel`` (scope rule above)."""
        ...

    async def count(self, kbs: Sequence[str] | None = None) -> int: ...

    async def kb_counts(self) -> dict[str, int]: ...

    async def optimize(self) -> None:
        """Build indexes after a bulk write (no-op where the server does it)."""
        ...

    async def aclose(self) -> None: ...
