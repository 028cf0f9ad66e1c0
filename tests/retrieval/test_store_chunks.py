"""``chunks`` (stored chunks by id, by source, or all) on both backends, and ``passages`` on the service."""

from __future__ import annotations

from pathlib import Path

from retrieval.factory import RetrievalService
from retrieval.store.protocol import VectorStore
from tests.retrieval.conftest import point

UUIDS = [f"00000000-0000-4000-8000-{i:012d}" for i in range(10)]


async def test_chunks_by_id_source_and_kb(store: VectorStore) -> None:
    await store.upsert(
        [
            point(UUIDS[0], {1: 1.0}, source="a.md", position=1),
            point(UUIDS[1], {2: 1.0}, source="a.md", position=0),
            point(UUIDS[2], {3: 1.0}, source="b.md", scope=["slack:C1"]),
            point(UUIDS[3], {4: 1.0}, source="c.md", kb="other"),
        ]
    )
    every = {h.id for h in await store.chunks(["default"])}
    assert every == set(UUIDS[:3])  # scoped chunks included: no scope filter here; other kb excluded
    assert {h.id for h in await store.chunks(["default"], ids=[UUIDS[2], UUIDS[3]])} == {UUIDS[2]}
    by_source = await store.chunks(["default"], sources=["a.md"])
    assert {h.id for h in by_source} == {UUIDS[0], UUIDS[1]}
    assert all(h.payload["source"] == "a.md" for h in by_source)
    assert await store.chunks(["default"], ids=[]) == []
    assert await store.chunks([], sources=["a.md"]) == []
    assert [h.id for h in await store.chunks(["other", "default"], sources=["c.md"])] == [UUIDS[3]]


async def test_passages_in_document_order(service: RetrievalService, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    body = "\n\n".join(f"## Part {i}\n\n" + f"Paragraph {i} about topic {i}. " * 60 for i in range(6))
    (folder / "long.md").write_text(f"# Long\n\n{body}\n", encoding="utf-8")
    await service.ingest_paths([folder])
    passages = await service.passages(["default"], sources=["docs/long.md"])  # the source as ingest names it
    assert len(passages) > 1
    firsts = [int(p.text.split("Paragraph ")[1][0]) for p in passages]
    assert firsts == sorted(firsts)
    by_id = await service.passages(["default"], ids=[passages[1].chunk_id])
    assert [p.chunk_id for p in by_id] == [passages[1].chunk_id]
    assert by_id[0].source == "docs/long.md" and by_id[0].title
