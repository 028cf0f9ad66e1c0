"""Embedded backend: qdrant-edge, Qdrant's in-process engine, persisted under the data directory.

Every call into the engine blocks and holds the GIL while it runs. Searches (a millisecond or
less at 100,000 chunks) run on the event loop's thread; everything else (writes, scrolls,
counts, optimisation) goes through ``asyncio.to_thread``. The engine locks its write-ahead log:
a second process (or a second open in this one) fails with ``WouldBlock``, turned here into ``StoreLockedError``.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import qdrant_edge as qe

from retrieval.errors import StoreConfigError, StoreLockedError
from retrieval.sparse import SparseVec
from retrieval.store.protocol import (
    DENSE_NAME,
    INVENTORY_FIELDS,
    META_ID,
    RRF_K,
    SPARSE_NAME,
    ChunkState,
    Fusion,
    Hit,
    SearchHits,
    StoredPoint,
    StoreMeta,
    hits_from,
    visible_scopes,
)

T = TypeVar("T")
_PAGE = 10_000
_KEYWORD_FIELDS = ("scope", "source", "origin")


SEARCH_THREADS = 1
"""The engine's search pool: one thread, so a query runs on the calling thread. With more, the
pool's threads spin while they wait for work and a top-5 query costs 2–4 times the CPU, and
more time too (bench/RESULTS.md); the loop waits for the query either way (the engine holds the
GIL). Applied to existing stores when they are opened (the engine keeps it in the store's config)."""


def _open_shard(path: Path, dense_size: int | None) -> qe.EdgeShard:
    fresh = not path.exists() or not any(path.iterdir())
    sparse = {SPARSE_NAME: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
    try:
        if not fresh:
            # the stored vectors' settings are checked against these, the others kept as they are
            return qe.EdgeShard.load(str(path), qe.EdgeConfig(sparse_vectors=sparse, max_search_threads=SEARCH_THREADS))
        path.mkdir(parents=True, exist_ok=True)
        config = qe.EdgeConfig(
            vectors={DENSE_NAME: qe.EdgeVectorParams(size=dense_size, distance=qe.Distance.Cosine)}
            if dense_size
            else None,
            sparse_vectors=sparse,
            max_search_threads=SEARCH_THREADS,
            # payloads are read from the memory-mapped file when a hit is shown (filters use the
            # payload indexes), so only the pages of chunks actually shown stay resident, and the OS
            # may drop them again: 120 MB less RSS at 100,000 chunks (bench/RESULTS.md)
            payload_memory=qe.Memory.Cold,
            # dense vectors (when added) are searched through int8 copies held in RAM, rescored with the originals
            quantization_config=qe.ScalarQuantizationConfig(type=qe.ScalarType.Int8, always_ram=True),
        )
        shard = qe.EdgeShard.create(str(path), config)
    except Exception as exc:  # qdrant-edge raises plain Exception; the lock is told by its text
        if "WouldBlock" in str(exc):
            raise StoreLockedError(path) from None
        raise
    shard.update(qe.UpdateOperation.create_field_index("kb", qe.KeywordIndexParams(is_tenant=True)))
    for name in _KEYWORD_FIELDS:
        shard.update(qe.UpdateOperation.create_field_index(name, qe.PayloadSchemaType.Keyword))
    return shard


def _sparse(vec: SparseVec) -> qe.SparseVector:
    # qdrant-edge reads any sequence, packed arrays from ingest workers included (its stub says list)
    return qe.SparseVector(cast(list[int], vec.indices), cast(list[float], vec.values))


@functools.lru_cache(maxsize=4096)
def _scope_filter(kbs: tuple[str, ...], channel: str | None) -> qe.Filter:
    """The filter of a search from ``channel`` in ``kbs``; made once per scope (the engine copies it per query)."""
    return qe.Filter(
        must=[
            qe.FieldCondition("kb", match=qe.MatchAny(list(kbs))),
            qe.FieldCondition("scope", match=qe.MatchAny(visible_scopes(channel))),
        ]
    )


def _kb_filter(kbs: Sequence[str]) -> qe.Filter:
    return qe.Filter(must=[qe.FieldCondition("kb", match=qe.MatchAny(list(kbs)))])


def _chunks_filter(kbs: Sequence[str], ids: Sequence[str] | None, sources: Sequence[str] | None) -> qe.Filter:
    must: list[Any] = [qe.FieldCondition("kb", match=qe.MatchAny(list(kbs)))]
    if ids is not None:
        must.append(qe.HasIdCondition(set(ids)))
    if sources is not None:
        must.append(qe.FieldCondition("source", match=qe.MatchAny(list(sources))))
    return qe.Filter(must=must)


class EdgeStore:
    """``VectorStore`` on a qdrant-edge shard at ``path``."""

    def __init__(self, shard: qe.EdgeShard, path: Path, meta: StoreMeta) -> None:
        self._shard = shard
        self.path = path
        self._meta = meta
        self._closed = False

    @classmethod
    async def open(cls, path: Path, dense_size: int | None = None) -> EdgeStore:
        shard = await asyncio.to_thread(_open_shard, path, dense_size)
        try:
            records = await asyncio.to_thread(shard.retrieve, [META_ID], True, False)
            meta = StoreMeta.from_payload(records[0].payload if records else None)
            store = cls(shard, path, meta)
            if dense_size and meta.dense_size is None and not records:
                meta.dense_size = dense_size
                await store.save_meta(meta)
        except BaseException:
            await asyncio.to_thread(shard.close)  # release the lock: the process may go on without a store
            raise
        return store

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(fn, *args)

    @property
    def meta(self) -> StoreMeta:
        return self._meta

    async def save_meta(self, meta: StoreMeta) -> None:
        point = qe.Point(META_ID, {SPARSE_NAME: qe.SparseVector([], [])}, meta.to_payload())
        await self._run(self._shard.update, qe.UpdateOperation.upsert_points([point]))
        self._meta = meta

    async def ensure_dense(self, size: int) -> None:
        if self._meta.dense_size == size:
            return
        if self._meta.dense_size is not None:
            raise StoreConfigError(
                f"The knowledge base at {self.path} holds {self._meta.dense_size}-dimensional embeddings; "
                f"the configured embedder makes {size}. Use the same model, or ingest into a new data directory."
            )
        op = qe.UpdateOperation.create_dense_vector(DENSE_NAME, size, qe.Distance.Cosine)
        await self._run(self._shard.update, op)
        self._meta.dense_size = size
        await self.save_meta(self._meta)

    async def upsert(self, points: Sequence[StoredPoint]) -> None:
        if not points:
            return
        edge_points = [
            qe.Point(
                p.id,
                {SPARSE_NAME: _sparse(p.sparse), DENSE_NAME: p.dense}
                if p.dense is not None
                else {SPARSE_NAME: _sparse(p.sparse)},
                p.payload if isinstance(p.payload, dict) else dict(p.payload),
            )
            for p in points
        ]
        await self._run(self._shard.update, qe.UpdateOperation.upsert_points(edge_points))

    async def set_payload(self, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        if ids:
            await self._run(self._shard.update, qe.UpdateOperation.set_payload(list(ids), dict(payload)))

    async def delete(self, ids: Sequence[str]) -> None:
        if ids:
            await self._run(self._shard.update, qe.UpdateOperation.delete_points(list(ids)))

    async def delete_kb(self, kb: str) -> int:
        n = await self.count([kb])
        if n:
            await self._run(self._shard.update, qe.UpdateOperation.delete_points_by_filter(_kb_filter([kb])))
        return n

    async def inventory(self, kb: str) -> list[ChunkState]:
        return await self._run(self._inventory, kb)

    def _inventory(self, kb: str) -> list[ChunkState]:
        out: list[ChunkState] = []
        offset: qe.PointId | None = None
        while True:
            request = qe.ScrollRequest(
                offset=offset, limit=_PAGE, filter=_kb_filter([kb]), with_payload=list(INVENTORY_FIELDS)
            )
            records, offset = self._shard.scroll(request)
            out.extend(ChunkState.from_payload(str(r.id), r.payload or {}) for r in records)
            if offset is None:
                return out

    async def chunks(
        self, kbs: Sequence[str], *, ids: Sequence[str] | None = None, sources: Sequence[str] | None = None
    ) -> list[Hit]:
        if not kbs or ids == [] or sources == []:
            return []
        return await self._run(self._chunks, _chunks_filter(kbs, ids, sources))

    def _chunks(self, flt: qe.Filter) -> list[Hit]:
        out: list[Hit] = []
        offset: qe.PointId | None = None
        while True:
            records, offset = self._shard.scroll(
                qe.ScrollRequest(offset=offset, limit=_PAGE, filter=flt, with_payload=True)
            )
            out.extend(Hit(str(r.id), 0.0, r.payload or {}) for r in records)
            if offset is None:
                return out

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
        if not kbs or (not sparse and dense is None):
            return SearchHits([])
        if dense is not None and self._meta.dense_size is None:
            dense = None
            if not sparse:
                return SearchHits([])
        flt = _scope_filter(tuple(kbs), channel)
        sparse_q = qe.Query.Nearest(_sparse(sparse), using=SPARSE_NAME) if sparse else None
        dense_q = qe.Query.Nearest(dense, using=DENSE_NAME) if dense is not None else None
        params = qe.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else None
        if sparse_q is not None and dense_q is not None:
            fuse = cast(qe.Fusion, qe.Fusion.Dbsf() if fusion == "dbsf" else qe.Fusion.Rrf(k=RRF_K))
            prefetches = [
                qe.Prefetch(limit=prefetch_limit, query=sparse_q, filter=flt),
                qe.Prefetch(limit=prefetch_limit, query=dense_q, filter=flt, params=params),
            ]
            request = qe.QueryRequest(
                limit=limit, prefetches=prefetches, query=fuse, with_payload=True, with_vector=[DENSE_NAME, SPARSE_NAME]
            )
        else:
            query = sparse_q if sparse_q is not None else dense_q
            request = qe.QueryRequest(
                limit=limit,
                query=query,
                filter=flt,
                with_payload=True,
                with_vector=[SPARSE_NAME],  # the chunk's terms, for the match check
                params=params if dense_q is not None else None,
            )
        # on the loop thread: the engine holds the GIL while it runs, so a worker thread would stall
        # the loop just as long, and the hop itself costs more than a small query (bench/RESULTS.md)
        points = self._shard.query(request)
        return hits_from(points, dense, fused=sparse_q is not None, dense_name=DENSE_NAME)

    async def count(self, kbs: Sequence[str] | None = None) -> int:
        if kbs is None:
            return sum((await self.kb_counts()).values())
        if not kbs:
            return 0
        return await self._run(self._shard.count, qe.CountRequest(exact=True, filter=_kb_filter(kbs)))

    async def kb_counts(self) -> dict[str, int]:
        response = await self._run(self._shard.facet, qe.FacetRequest("kb", limit=100_000, exact=True))
        return {str(hit.value): hit.count for hit in response.hits if hit.count > 0}

    async def optimize(self) -> None:
        await self._run(self._optimize)

    def _optimize(self) -> None:
        self._shard.optimize()
        # written out at once: until then the optimised segments stay in memory beside the old ones
        # (1.25 GB peak, 820 MB after at 100,000 chunks; 334 MB after the flush)
        self._shard.flush()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._run(self._close)

    def _close(self) -> None:
        self._shard.flush()
        self._shard.close()
