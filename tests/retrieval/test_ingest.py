"""Idempotent ingest on both backends: unchanged costs nothing, changed replaces, prune removes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from retrieval.api import SearchScope
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.documents import Document
from retrieval.embeddings import OpenAIEmbedder
from retrieval.factory import RetrievalService, open_knowledge_base
from retrieval.ingest import ScopeError, parse_scope
from retrieval.store.protocol import StoredPoint, VectorStore
from tests.fakes.openai_server import FakeOpenAI
from tests.retrieval.conftest import open_store, write_files

GUIDE = (
    "# Guide\n\n## Install\n\nRun the installer from the intranet.\n\n"
    "## Reset\n\nReset the VPN password in the portal.\n"
)


class RecordingStore:
    """Delegates to a real store and records every write."""

    def __init__(self, inner: VectorStore) -> None:
        self.inner = inner
        self.writes: list[tuple[str, int]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def upsert(self, points: Sequence[StoredPoint]) -> None:
        self.writes.append(("upsert", len(points)))
        await self.inner.upsert(points)

    async def set_payload(self, ids: Sequence[str], payload: Mapping[str, Any]) -> None:
        self.writes.append(("set_payload", len(ids)))
        await self.inner.set_payload(ids, payload)

    async def delete(self, ids: Sequence[str]) -> None:
        if ids:
            self.writes.append(("delete", len(ids)))
        await self.inner.delete(ids)


@pytest.fixture
async def recording(backend: str, tmp_path: Path) -> AsyncIterator[tuple[RetrievalService, RecordingStore]]:
    store = RecordingStore(await open_store(backend, tmp_path))
    svc = RetrievalService(store, RetrievalConfig(chunk_tokens=64, chunk_overlap=8))
    yield svc, store
    await svc.aclose()


async def test_second_run_of_unchanged_files_writes_nothing(
    recording: tuple[RetrievalService, RecordingStore], tmp_path: Path
) -> None:
    svc, store = recording
    root = write_files(tmp_path / "docs", {"guide.md": GUIDE, "faq.txt": "Lunch is at noon.", "x/y.md": "# Y\n\nwhy"})
    first = await svc.ingest_paths([root], kb="default")
    assert (first.documents, first.documents_changed, first.chunks_added) == (3, 3, 4)
    assert first.chunks_removed == first.chunks_updated == first.chunks_unchanged == 0
    assert await svc.count(["default"]) == 4
    store.writes.clear()
    second = await svc.ingest_paths([root], kb="default", prune=True)
    assert store.writes == []
    assert (second.documents, second.documents_changed, second.chunks_added, second.chunks_unchanged) == (3, 0, 0, 4)
    assert second.chunks_written == 0
    assert "3 documents" in second.summary() and "4 unchanged" in second.summary()


async def test_changed_document_replaces_only_its_changed_chunks(
    recording: tuple[RetrievalService, RecordingStore], tmp_path: Path
) -> None:
    svc, store = recording
    root = write_files(tmp_path / "docs", {"guide.md": GUIDE})
    await svc.ingest_paths([root])
    store.writes.clear()
    (root / "guide.md").write_text(GUIDE.replace("Reset the VPN password", "Change the VPN passphrase"))
    report = await svc.ingest_paths([root])
    assert (report.chunks_added, report.chunks_removed, report.chunks_unchanged) == (1, 1, 1)
    assert ("upsert", 1) in store.writes and ("delete", 1) in store.writes
    result = await svc.search("VPN passphrase", SearchScope())
    assert "Change the VPN passphrase" in result.passages[0].text
    assert all("Reset the VPN password" not in p.text for p in result.passages)
    assert await svc.count() == 2


async def test_moved_chunk_and_scope_change_update_payload_without_new_vectors(
    recording: tuple[RetrievalService, RecordingStore], tmp_path: Path
) -> None:
    svc, store = recording
    root = write_files(tmp_path / "docs", {"guide.md": GUIDE})
    await svc.ingest_paths([root])
    store.writes.clear()
    report = await svc.ingest_paths([root], scope=("slack:C1",))
    assert (report.chunks_added, report.chunks_updated, report.chunks_removed) == (0, 2, 0)
    assert {w[0] for w in store.writes} == {"set_payload"}
    assert (await svc.search("VPN password", SearchScope())).passages == ()
    hit = (await svc.search("VPN password", SearchScope(channel="slack:C1"))).passages[0]
    assert hit.heading == "Guide > Reset"


async def test_prune_removes_files_that_are_gone_but_keeps_failed_and_other_roots(
    recording: tuple[RetrievalService, RecordingStore], tmp_path: Path
) -> None:
    svc, _ = recording
    root = write_files(tmp_path / "docs", {"a.md": "# A\n\nalpha", "b.md": "# B\n\nbravo", "c.txt": "charlie"})
    other = write_files(tmp_path / "other", {"z.md": "# Z\n\nzulu"})
    await svc.ingest_paths([root, other])
    (root / "a.md").unlink()
    (root / "c.txt").write_bytes(b"\xff\xfe broken")
    without_prune = await svc.ingest_paths([root])
    assert without_prune.chunks_removed == 0
    report = await svc.ingest_paths([root], prune=True)
    assert report.chunks_removed == 1
    assert [f.path for f in report.failures] == [str(root / "c.txt")]
    sources = {
        p.source for q in ("alpha", "bravo", "charlie", "zulu") for p in (await svc.search(q, SearchScope())).passages
    }
    assert sources == {"docs/b.md", "docs/c.txt", "other/z.md"}


async def test_knowledge_bases_are_separate(recording: tuple[RetrievalService, RecordingStore], tmp_path: Path) -> None:
    svc, _ = recording
    root = write_files(tmp_path / "docs", {"a.md": "# A\n\nalpha"})
    other = write_files(tmp_path / "hr" / "docs", {"a.md": "# A\n\nalpha"})  # same name, another folder
    await svc.ingest_paths([root], kb="eng")
    await svc.ingest_paths([other], kb="hr")
    assert await svc.list_kbs() == ["eng", "hr"]
    assert await svc.kb_counts() == {"eng": 1, "hr": 1}
    report = await svc.ingest_paths([root], kb="eng", prune=True)
    assert report.chunks_unchanged == 1
    assert await svc.delete_kb("hr") == 1
    assert await svc.list_kbs() == ["eng"]


async def test_dense_ingest_embeds_only_new_chunks(backend: str, tmp_path: Path, openai_server: FakeOpenAI) -> None:
    embedder = OpenAIEmbedder("emb", base_url=openai_server.base_url, api_key="k", batch_size=2, concurrency=2)
    svc = RetrievalService(await open_store(backend, tmp_path), RetrievalConfig(embedder="openai"), embedder)
    try:
        root = write_files(tmp_path / "docs", {"guide.md": GUIDE, "faq.txt": "Lunch is at noon."})
        await svc.ingest_paths([root])
        embedded = [len(r.body["input"]) for r in openai_server.requests if r.path.endswith("/embeddings")]
        assert sum(embedded) == 1 + 3  # one dimension probe, three chunks
        assert max(embedded) <= 2  # batched
        before = len(openai_server.requests)
        report = await svc.ingest_paths([root])
        assert len(openai_server.requests) == before and report.embedding_calls == 0
        (root / "faq.txt").write_text("Lunch is at one.")
        await svc.ingest_paths([root])
        assert [r.body["input"] for r in openai_server.requests[before:]] == [["faq\nLunch is at one."]]
        result = await svc.search("when is lunch", SearchScope())
        assert result.passages[0].source == "docs/faq.txt" and not result.no_good_match
        hybrid = await svc.search("VPN password reset", SearchScope(), mode="hybrid")
        assert hybrid.passages[0].heading == "Guide > Reset"
    finally:
        await svc.aclose()


async def test_turning_an_embedder_on_embeds_the_chunks_already_stored(
    backend: str, tmp_path: Path, openai_server: FakeOpenAI
) -> None:
    root = write_files(tmp_path / "docs", {"guide.md": GUIDE, "faq.txt": "Lunch is at noon."})
    store = await open_store(backend, tmp_path)
    sparse_only = RetrievalService(store, RetrievalConfig())
    await sparse_only.ingest_paths([root])
    embedder = OpenAIEmbedder("emb", base_url=openai_server.base_url, api_key="k", batch_size=8, concurrency=1)
    svc = RetrievalService(store, RetrievalConfig(embedder="openai"), embedder)
    try:
        report = await svc.ingest_paths([root])
        embedded = [t for r in openai_server.requests if r.path.endswith("/embeddings") for t in r.body["input"]]
        assert len(embedded) == 1 + 3  # the dimension probe, then every stored chunk once
        assert report.chunks_unchanged == 0
        dense = await svc.search("when is lunch", SearchScope(), mode="dense")
        assert {p.source for p in dense.passages} == {"docs/faq.txt", "docs/guide.md"}
        again = await svc.ingest_paths([root])
        assert again.embedding_calls == 0 and again.chunks_unchanged == 3
    finally:
        await svc.aclose()


def test_parse_scope() -> None:
    assert parse_scope([]) == ("public",)
    assert parse_scope(["slack:C1,discord:2", "slack:C1"]) == ("slack:C1", "discord:2")
    assert parse_scope(["slack:C1", "public"]) == ("public",)
    for bad in ("everyone", "slack:", ":C1", "slack:C 1"):
        with pytest.raises(ScopeError):
            parse_scope([bad])


async def test_worker_process_prepares_large_ingests_identically(tmp_path: Path) -> None:
    docs = [
        Document(f"d{i}", f"Doc {i}", f"# T{i}\n\nalpha {i} bravo {i % 7}\n\n## S\n\ncharlie {i % 3}", "markdown")
        for i in range(700)
    ]
    states = []
    for workers in (0, 1):
        svc = await open_knowledge_base(
            RetrievalEnvironment(RetrievalConfig(ingest_workers=workers), tmp_path / f"w{workers}")
        )
        try:
            report = await svc.ingest_documents(docs, kb="k")
            assert (report.documents, report.chunks_added) == (700, 1400)
            states.append(sorted((s.id, s.doc_hash, s.chunk_hash) for s in await svc.store.inventory("k")))
            again = await svc.ingest_documents(docs, kb="k")
            assert again.chunks_unchanged == 1400 and again.chunks_written == 0
        finally:
            await svc.aclose()
    assert states[0] == states[1]
