"""One contract, two backends: qdrant-edge (embedded) and qdrant-client local mode (server stand-in)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import qdrant_edge as qe

from retrieval.errors import StoreConfigError
from retrieval.sparse import SparseVec
from retrieval.store.edge import SEARCH_THREADS, EdgeStore
from retrieval.store.protocol import DENSE_NAME, SPARSE_NAME, StoredPoint, StoreMeta, VectorStore
from tests.retrieval.conftest import open_store, point

UUIDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(40)]


async def sparse_ids(store: VectorStore, terms: list[int], kbs: tuple[str, ...] = ("default",),
                     channel: str | None = None, limit: int = 10) -> list[str]:  # fmt: skip
    hits = await store.search(
        sparse=SparseVec(terms, [1.0] * len(terms)),
        dense=None,
        kbs=kbs,
        channel=channel,
        limit=limit,
        prefetch_limit=50,
        fusion="dbsf",
    )
    return [h.id for h in hits.hits]


async def test_empty_store(store: VectorStore) -> None:
    assert await store.count() == 0
    assert await store.count(["default"]) == 0
    assert await store.count([]) == 0
    assert await store.kb_counts() == {}
    assert await store.inventory("default") == []
    assert await sparse_ids(store, [1]) == []
    assert store.meta.avg_len is None


async def test_sparse_ranking_uses_weights_and_idf(store: VectorStore) -> None:
    # term 1 is common (4 of 5 points), term 2 is rare; IDF must make the rare match win
    await store.upsert(
        [
            point(UUIDS[0], {1: 1.6}),
            point(UUIDS[1], {2: 1.0}),
            point(UUIDS[2], {1: 1.0}),
            point(UUIDS[3], {1: 1.0, 3: 1.0}),
            point(UUIDS[4], {1: 0.5}),
        ]
    )
    ranked = await sparse_ids(store, [1, 2])
    assert ranked[:2] == [UUIDS[1], UUIDS[0]]
    assert set(ranked[2:4]) == {UUIDS[2], UUIDS[3]}  # equal scores
    assert ranked[4] == UUIDS[4]
    assert await sparse_ids(store, [9]) == []
    hits = await store.search(
        sparse=SparseVec([2], [1.0]), dense=None, kbs=["default"], channel=None, limit=5, prefetch_limit=5,
        fusion="rrf",
    )  # fmt: skip
    assert [h.payload["text"] for h in hits.hits] == [UUIDS[1]]
    assert hits.hits[0].score > 0 and hits.best_dense is None


async def test_hits_carry_payload_and_stored_terms_in_rank_order(store: VectorStore) -> None:
    await store.upsert(
        [
            point(UUIDS[0], {7: 0.2, 11: 1.0}, title="low"),
            point(UUIDS[1], {7: 1.5, 12: 1.0, 13: 0.5}, title="high", heading="H"),
            point(UUIDS[2], {8: 1.0}, title="other"),
        ]
    )
    hits = await store.search(
        sparse=SparseVec([7], [1.0]), dense=None, kbs=["default"], channel=None, limit=5, prefetch_limit=5,
        fusion="dbsf",
    )  # fmt: skip
    assert [(h.id, h.payload["title"], set(h.terms or ())) for h in hits.hits] == [
        (UUIDS[1], "high", {7, 12, 13}),
        (UUIDS[0], "low", {7, 11}),
    ]
    assert hits.hits[0].payload["heading"] == "H" and hits.hits[0].score > hits.hits[1].score > 0


async def test_scope_and_kb_filters(store: VectorStore) -> None:
    await store.upsert(
        [
            point(UUIDS[0], {1: 1.0}, scope=["public"]),
            point(UUIDS[1], {1: 1.0}, scope=["slack:C1"]),
            point(UUIDS[2], {1: 1.0}, scope=["slack:C1", "discord:7"]),
            point(UUIDS[3], {1: 1.0}, scope=["discord:7"]),
            point(UUIDS[4], {1: 1.0}, scope=["public"], kb="hr"),
        ]
    )
    assert set(await sparse_ids(store, [1])) == {UUIDS[0]}
    assert set(await sparse_ids(store, [1], channel="slack:C1")) == {UUIDS[0], UUIDS[1], UUIDS[2]}
    assert set(await sparse_ids(store, [1], channel="discord:7")) == {UUIDS[0], UUIDS[2], UUIDS[3]}
    assert set(await sparse_ids(store, [1], channel="slack:C2")) == {UUIDS[0]}
    assert set(await sparse_ids(store, [1], kbs=("hr",), channel="slack:C1")) == {UUIDS[4]}
    assert set(await sparse_ids(store, [1], kbs=("hr", "default"))) == {UUIDS[0], UUIDS[4]}
    assert await sparse_ids(store, [1], kbs=()) == []
    assert await store.count() == 5
    assert await store.count(["default"]) == 4
    assert await store.kb_counts() == {"default": 4, "hr": 1}


async def test_inventory_set_payload_delete_and_delete_kb(store: VectorStore) -> None:
    await store.upsert(
        [
            point(UUIDS[0], {1: 1.0}, source="a.md", doc_hash="h1", chunk_hash="c0"),
            point(UUIDS[1], {1: 1.0}, source="a.md", doc_hash="h1", chunk_hash="c1"),
            point(UUIDS[2], {1: 1.0}, source="b.md", kb="other", doc_hash="h2", chunk_hash="c2"),
        ]
    )
    inventory = sorted(await store.inventory("default"), key=lambda s: s.id)
    assert [(s.id, s.source, s.origin, s.doc_hash, s.chunk_hash) for s in inventory] == [
        (UUIDS[0], "a.md", "o", "h1", "c0"),
        (UUIDS[1], "a.md", "o", "h1", "c1"),
    ]
    await store.set_payload([UUIDS[0], UUIDS[1]], {"doc_hash": "h9"})
    assert {s.doc_hash for s in await store.inventory("default")} == {"h9"}
    hits = await store.search(
        sparse=SparseVec([1], [1.0]), dense=None, kbs=["default"], channel=None, limit=5, prefetch_limit=5,
        fusion="dbsf",
    )  # fmt: skip
    assert {h.payload["source"] for h in hits.hits} == {"a.md"}  # other fields kept
    await store.delete([UUIDS[0]])
    await store.delete([])
    assert [s.id for s in await store.inventory("default")] == [UUIDS[1]]
    assert await store.delete_kb("other") == 1
    assert await store.delete_kb("nothing") == 0
    assert await store.kb_counts() == {"default": 1}


async def test_meta_point_never_counts_or_matches(store: VectorStore) -> None:
    await store.save_meta(StoreMeta(avg_len=42.5))
    assert store.meta.avg_len == 42.5
    assert await store.count() == 0
    assert await store.kb_counts() == {}
    await store.upsert([point(UUIDS[0], {1: 1.0})])
    assert await store.count() == 1
    assert await sparse_ids(store, [1], kbs=("default",)) == [UUIDS[0]]


async def test_dense_vector_added_later_and_fused(store: VectorStore) -> None:
    await store.upsert([point(UUIDS[0], {1: 1.0})])  # sparse-only point from before dense existed
    await store.ensure_dense(3)
    await store.ensure_dense(3)
    assert store.meta.dense_size == 3
    with pytest.raises(StoreConfigError, match="3-dimensional"):
        await store.ensure_dense(4)
    payload = {"kb": "default", "scope": ["public"], "source": "s", "origin": "o"}
    await store.upsert(
        [
            StoredPoint(UUIDS[1], SparseVec([1], [1.0]), {**payload, "text": "b"}, [1.0, 0.0, 0.0]),
            StoredPoint(UUIDS[2], SparseVec([2], [1.0]), {**payload, "text": "c"}, [0.0, 1.0, 0.0]),
            StoredPoint(UUIDS[3], SparseVec([2], [1.0]), {**payload, "text": "d", "scope": ["slack:X"]}, [0.9, 0.1, 0]),
        ]
    )
    for fusion in ("dbsf", "rrf"):
        hits = await store.search(
            sparse=SparseVec([1], [1.0]),
            dense=[1.0, 0.0, 0.0],
            kbs=["default"],
            channel=None,
            limit=10,
            prefetch_limit=10,
            fusion=fusion,
        )
        ids = [h.id for h in hits.hits]
        assert ids[0] == UUIDS[1], fusion  # best in both lists
        assert UUIDS[3] not in ids  # the scope filter applies to both prefetches
        assert set(ids) == {UUIDS[0], UUIDS[1], UUIDS[2]}
        assert hits.best_dense == pytest.approx(1.0)
        assert {h.id: (h.payload["text"], set(h.terms or ())) for h in hits.hits} == {
            UUIDS[0]: (UUIDS[0], {1}), UUIDS[1]: ("b", {1}), UUIDS[2]: ("c", {2})
        }
    dense_only = await store.search(
        sparse=None, dense=[0.0, 1.0, 0.0], kbs=["default"], channel="slack:X", limit=2, prefetch_limit=2,
        fusion="dbsf",
    )  # fmt: skip
    assert [h.id for h in dense_only.hits] == [UUIDS[2], UUIDS[3]]


async def test_dense_query_ignored_while_store_has_no_dense_vector(store: VectorStore) -> None:
    await store.upsert([point(UUIDS[0], {1: 1.0})])
    hits = await store.search(
        sparse=SparseVec([1], [1.0]), dense=[1.0, 0.0], kbs=["default"], channel=None, limit=3, prefetch_limit=3,
        fusion="dbsf",
    )  # fmt: skip
    assert [h.id for h in hits.hits] == [UUIDS[0]] and hits.best_dense is None


async def test_edge_store_persists_points_and_meta(tmp_path: Path) -> None:
    store = await open_store("edge", tmp_path)
    await store.upsert([point(UUIDS[0], {1: 1.0})])
    await store.save_meta(StoreMeta(avg_len=7.0))
    await store.ensure_dense(8)
    await store.aclose()
    await store.aclose()  # idempotent
    again = await open_store("edge", tmp_path)
    try:
        assert await again.count() == 1
        assert again.meta.avg_len == 7.0 and again.meta.dense_size == 8
    finally:
        await again.aclose()


async def test_edge_store_made_with_a_search_pool_is_opened_searching_on_the_calling_thread(tmp_path: Path) -> None:
    """A store created before ``SEARCH_THREADS`` (the engine's default pool) is opened with one search
    thread, and keeps its vectors, payload settings and points."""
    path = tmp_path / "edge"
    path.mkdir()
    old = qe.EdgeShard.create(
        str(path),
        qe.EdgeConfig(
            vectors={DENSE_NAME: qe.EdgeVectorParams(size=3, distance=qe.Distance.Cosine)},
            sparse_vectors={SPARSE_NAME: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
            payload_memory=qe.Memory.Cached,
        ),
    )
    old.update(qe.UpdateOperation.create_field_index("kb", qe.PayloadSchemaType.Keyword))
    old.update(qe.UpdateOperation.create_field_index("scope", qe.PayloadSchemaType.Keyword))
    payload = {"kb": "default", "scope": ["public"], "source": "s", "origin": "o", "text": "t"}
    vectors = {SPARSE_NAME: qe.SparseVector([4, 5], [1.0, 0.5]), DENSE_NAME: [1.0, 0.0, 0.0]}
    old.update(qe.UpdateOperation.upsert_points([qe.Point(UUIDS[0], vectors, payload)]))
    old.flush()
    old.close()
    assert "max_search_threads" not in json.loads((path / "edge_config.json").read_text())

    store = await EdgeStore.open(path, dense_size=3)  # no meta point: the size is given, as the factory does
    try:
        config = json.loads((path / "edge_config.json").read_text())
        assert config["max_search_threads"] == SEARCH_THREADS == 1
        assert config["payload_memory"] == "cached" and config["vectors"][DENSE_NAME]["size"] == 3
        hits = await store.search(
            sparse=SparseVec([4], [1.0]), dense=[1.0, 0.0, 0.0], kbs=["default"], channel=None, limit=3,
            prefetch_limit=3, fusion="rrf",
        )  # fmt: skip
        assert [(h.id, set(h.terms or ())) for h in hits.hits] == [(UUIDS[0], {4, 5})]
        assert hits.best_dense == pytest.approx(1.0)
    finally:
        await store.aclose()
