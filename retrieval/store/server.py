"""Server backend: ``AsyncQdrantClient`` against ``QDRANT_URL`` (a server or cluster shared by any
number of processes). ``location=":memory:"`` (qdrant-client's local mode, pure Python brute
force) stands in for a server in tests; it is not for serving."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from qdrant_client import AsyncQdrantClient, models

from retrieval.errors import StoreConfigError
from retrieval.sparse import SparseVec
from retrieval.store.protocol import (
    COLLECTION,
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

_PAGE = 5_000
_UPSERT_BATCH = 1_000


def _scope_filter(kbs: Sequence[str], channel: str | None) -> models.Filter:
    return models.Filter(
        must=[
            models.FieldCondition(key="kb", match=models.MatchAny(any=list(kbs))),
            models.FieldCondition(key="scope", match=models.MatchAny(any=visible_scopes(channel))),
        ]
    )


def _kb_filter(kbs: Sequence[str]) -> models.Filter:
    return models.Filter(must=[models.FieldCondition(key="kb", match=models.MatchAny(any=list(kbs)))])


class ServerStore:
    """``VectorStore`` on one collection of a Qdrant server (or qdrant-client local mode)."""

    def __init__(self, client: AsyncQdrantClient, collection: str, meta: StoreMeta) -> None:
        self._client = client
        self.collection = collection
        self._meta = meta
        options = getattr(client, "init_options", {}) or {}
        # local mode searches exactly and warns about HNSW parameters: send none there
        self._hnsw_params = not (options.get("location") == ":memory:" or options.get("path"))

    @classmethod
    async def open(
        cls,
        client: AsyncQdrantClient,
        dense_size: int | None = None,
        collection: str = COLLECTION,
    ) -> ServerStore:
        if not await client.collection_exists(collection):
            await client.create_collection(
                collection,
                vectors_config={DENSE_NAME: models.VectorParams(size=dense_size, distance=models.Distance.COSINE)}
                if dense_size
                else {},
                sparse_vectors_config={SPARSE_NAME: models.SparseVectorParams(modifier=models.Modifier.IDF)},
                quantization_config=models.ScalarQuantization(
                    scalar=models.ScalarQuantizationConfig(type=models.ScalarType.INT8, always_ram=True)
                ),
            )
            with warnings.catch_warnings():  # local mode warns that indexes have no effect there
                warnings.simplefilter("ignore", UserWarning)
                await client.create_payload_index(
                    collection,
                    "kb",
                    models.KeywordIndexParams(type=models.KeywordIndexType.KEYWORD, is_tenant=True),
                )
                for name in ("scope", "source", "origin"):
                    await client.create_payload_index(collection, name, models.PayloadSchemaType.KEYWORD)
        records = await client.retrieve(collection, [META_ID], with_payload=True)
        meta = StoreMeta.from_payload(records[0].payload if records else None)
        info = await client.get_collection(collection)
        vectors = info.config.params.vectors
        if isinstance(vectors, dict) and DENSE_NAME in vectors:
            meta.dense_size = vectors[DENSE_NAME].size
        store = cls(client, collection, meta)
        if not records:
            await store.save_meta(meta)
        return store

    @property
    def meta(self) -> StoreMeta:
        return self._meta

    async def save_meta(self, meta: StoreMeta) -> None:
        point = models.PointStruct(
            id=META_ID,
            vector={SPARSE_NAME: models.SparseVector(indices=[], values=[])},
            payload=meta.to_payload(),
        )
        await self._client.upsert(self.collection, [point])
        self._meta = meta

    async def ensure_dense(self, size: int) -> None:
        if self._meta.dense_size == size:
            return
        if self._meta.dense_size is not None:
            raise StoreConfigError(
                f"Collection {self.collection!r} holds {self._meta.dense_size}-dimensional embeddings; "
                f"the configured embedder makes {size}. Use the same model, or another collection."
            )
        config = models.DenseVectorNameConfig(
            dense=models.DenseVectorConfig(size=size, distance=models.Distance.COSINE)
        )
        await self._client.create_vector_name(self.collection, DENSE_NAME, config)
        self._meta.dense_size = size
        await self.save_meta(self._meta)

    async def upsert(self, points: Sequence[StoredPoint]) -> None:
        structs = [
            models.PointStruct(
                id=p.id,
                vector=_vectors(p),
                payload=dict(p.payload),
            )
            for p in points
        ]
        for i in range(0, len(structs), _UPSERT_BATCH):
            await self._client.upsert(self.collection, structs[i : i + _UPSERT_BATCH])

    async def set_payload(self, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        if ids:
            await self._client.set_payload(self.collection, payload=dict(payload), points=list(ids))

    async def delete(self, ids: Sequence[str]) -> None:
        if ids:
            await self._client.delete(self.collection, models.PointIdsList(points=list(ids)))

    async def delete_kb(self, kb: str) -> int:
        n = await self.count([kb])
        if n:
            await self._client.delete(self.collection, models.FilterSelector(filter=_kb_filter([kb])))
        return n

    async def inventory(self, kb: str) -> list[ChunkState]:
        out: list[ChunkState] = []
        offset: Any = None
        while True:
            records, offset = await self._client.scroll(
                self.collection,
                scroll_filter=_kb_filter([kb]),
                limit=_PAGE,
                offset=offset,
                with_payload=list(INVENTORY_FIELDS),
            )
            out.extend(ChunkState.from_payload(str(r.id), r.payload or {}) for r in records)
            if offset is None:
                return out

    async def chunks(
        self, kbs: Sequence[str], *, ids: Sequence[str] | None = None, sources: Sequence[str] | None = None
    ) -> list[Hit]:
        if not kbs or ids == [] or sources == []:
            return []
        must: list[Any] = [models.FieldCondition(key="kb", match=models.MatchAny(any=list(kbs)))]
        if ids is not None:
            must.append(models.HasIdCondition(has_id=list(ids)))
        if sources is not None:
            must.append(models.FieldCondition(key="source", match=models.MatchAny(any=list(sources))))
        out: list[Hit] = []
        offset: Any = None
        while True:
            records, offset = await self._client.scroll(
                self.collection, scroll_filter=models.Filter(must=must), limit=_PAGE, offset=offset, with_payload=True
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
        if dense is not None and self._meta.dense_size is None:
            dense = None
        if not kbs or (not sparse and dense is None):
            return SearchHits([])
        flt = _scope_filter(kbs, channel)
        sparse_q = models.SparseVector(indices=list(sparse.indices), values=list(sparse.values)) if sparse else None
        params = models.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef and self._hnsw_params else None
        if sparse_q is not None and dense is not None:
            fuse: models.FusionQuery | models.RrfQuery = (
                models.FusionQuery(fusion=models.Fusion.DBSF)
                if fusion == "dbsf"
                else models.RrfQuery(rrf=models.Rrf(k=RRF_K))
            )
            response = await self._client.query_points(
                self.collection,
                prefetch=[
                    models.Prefetch(query=sparse_q, using=SPARSE_NAME, filter=flt, limit=prefetch_limit),
                    models.Prefetch(query=dense, using=DENSE_NAME, filter=flt, limit=prefetch_limit, params=params),
                ],
                query=fuse,
                limit=limit,
                with_payload=True,
                with_vectors=[DENSE_NAME, SPARSE_NAME],  # the sparse one gives the match check the chunk's terms
            )
        else:
            response = await self._client.query_points(
                self.collection,
                query=sparse_q if sparse_q is not None else dense,
                using=SPARSE_NAME if sparse_q is not None else DENSE_NAME,
                query_filter=flt,
                search_params=params if sparse_q is None else None,
                limit=limit,
                with_payload=True,
                with_vectors=[SPARSE_NAME],
            )
        return hits_from(response.points, dense, fused=sparse_q is not None, dense_name=DENSE_NAME)

    async def count(self, kbs: Sequence[str] | None = None) -> int:
        if kbs is None:
            return sum((await self.kb_counts()).values())
        if not kbs:
            return 0
        result = await self._client.count(self.collection, count_filter=_kb_filter(kbs), exact=True)
        return result.count

    async def kb_counts(self) -> dict[str, int]:
        response = await self._client.facet(self.collection, "kb", limit=100_000, exact=True)
        return {str(hit.value): hit.count for hit in response.hits if hit.count > 0}

    async def optimize(self) -> None:
        """The server optimises in the background."""

    async def aclose(self) -> None:
        await self._client.close()


def _vectors(p: StoredPoint) -> dict[str, Any]:
    vectors: dict[str, Any] = {
        SPARSE_NAME: models.SparseVector(indices=list(p.sparse.indices), values=list(p.sparse.values))
    }
    if p.dense is not None:
        vectors[DENSE_NAME] = p.dense
    return vectors
