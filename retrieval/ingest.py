"""Idempotent ingest: load, chunk, encode, and write only what changed.

A chunk's id is a UUID5 of (knowledge base, source, the hash of the text that is embedded —
title, heading path and body — and its occurrence number), so an unchanged chunk keeps its id
when text around it moves. Per document:

- same ``doc_hash`` as stored (text, title, scope, metadata, chunking and analyser settings):
  nothing is chunked, embedded or written;
- otherwise: new ids are encoded (sparse, and dense when an embedder is configured) and upserted;
  ids that survive with a different payload (position, scope…) get their payload rewritten with
  no embedding call; ids no longer produced are deleted.

``prune`` deletes chunks whose source came from one of this run's roots but was not seen (the
file is gone), except sources of files that failed to load this time.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from retrieval.api import PUBLIC_SCOPE
from retrieval.chunking import chunk_document
from retrieval.config import RetrievalConfig
from retrieval.documents import Document, LoadFailure
from retrieval.embeddings import Embedder
from retrieval.loaders import LoadOptions, iter_documents
from retrieval.sparse import Bm25Encoder
from retrieval.store.protocol import ChunkState, StoredPoint, VectorStore

_NAMESPACE = uuid.UUID("5b0d7a4e-5f3c-4c1e-9a55-b07b0b07b0b7")
_BATCH_CHUNKS = 512
_LOAD_BATCH = 64
_AVG_SAMPLE = 2_000


class ScopeError(ValueError):
    """A scope value is neither ``public`` nor a channel key such as ``slack:C123``."""


def parse_scope(values: Sequence[str]) -> tuple[str, ...]:
    """Scope keys from CLI/config values (comma-separated allowed); ``public`` when empty."""
    keys = [v.strip() for raw in values for v in raw.split(",") if v.strip()]
    if not keys:
        return (PUBLIC_SCOPE,)
    for key in keys:
        platform, sep, ident = key.partition(":")
        if key != PUBLIC_SCOPE and not (sep and platform.isalpha() and ident and " " not in ident):
            raise ScopeError(f"scope {key!r} is neither 'public' nor a channel key like slack:C123 or discord:456")
    if PUBLIC_SCOPE in keys:
        return (PUBLIC_SCOPE,)
    return tuple(dict.fromkeys(keys))


@dataclass(slots=True)
class IngestReport:
    kb: str
    documents: int = 0
    documents_changed: int = 0
    chunks_added: int = 0
    chunks_updated: int = 0
    chunks_removed: int = 0
    chunks_unchanged: int = 0
    embedding_calls: int = 0
    failures: list[LoadFailure] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def chunks_written(self) -> int:
        return self.chunks_added + self.chunks_updated + self.chunks_removed

    def summary(self) -> str:
        failed = f", {len(self.failures)} failed" if self.failures else ""
        return (
            f"kb {self.kb!r}: {self.documents} documents ({self.documents_changed} new or changed{failed}); "
            f"chunks: {self.chunks_added} added, {self.chunks_updated} updated, {self.chunks_removed} removed, "
            f"{self.chunks_unchanged} unchanged; {self.seconds:.1f} s"
        )


@dataclass(slots=True)
class _Prepared:
    """One changed document, chunked and analysed, waiting for weights, vectors and writes."""

    doc: Document
    doc_hash: str
    ids: list[str]
    payloads: list[dict[str, Any]]
    embed_texts: list[str]
    terms: list[tuple[dict[int, int], int]]


class Ingester:
    def __init__(
        self, store: VectorStore, encoder: Bm25Encoder, embedder: Embedder | None, config: RetrievalConfig
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.embedder = embedder
        self.config = config
        self._settings = (
            f"{encoder.signature}|chunk:{config.chunk_tokens}/{config.chunk_overlap}|"
            f"dense:{embedder.name if embedder else '-'}"
        )

    async def ingest_paths(
        self,
        paths: Sequence[Path],
        *,
        kb: str,
        scope: tuple[str, ...] = (PUBLIC_SCOPE,),
        prune: bool = False,
        options: LoadOptions | None = None,
        progress: bool = False,
    ) -> IngestReport:
        roots = [p.resolve().name or str(p.resolve()) for p in paths]
        items = _threaded(iter_documents(list(paths), options))
        return await self.ingest(items, kb=kb, scope=scope, prune_origins=roots if prune else None, progress=progress)

    async def ingest(
        self,
        items: AsyncIterator[Document | LoadFailure],
        *,
        kb: str,
        scope: tuple[str, ...] = (PUBLIC_SCOPE,),
        prune_origins: Sequence[str] | None = None,
        progress: bool = False,
    ) -> IngestReport:
        started = time.perf_counter()
        report = IngestReport(kb=kb)
        if self.embedder is not None:
            await self.store.ensure_dense(await self.embedder.dimensions())
        stored: dict[str, list[ChunkState]] = {}
        for state in await self.store.inventory(kb):
            stored.setdefault(state.source, []).append(state)
        seen: set[str] = set()
        pending: list[_Prepared] = []
        pending_chunks = 0
        bar = tqdm(desc=f"ingest {kb}", unit="doc", disable=not progress, leave=False)
        try:
            batch: list[Document] = []
            async for item in items:
                if isinstance(item, LoadFailure):
                    report.failures.append(item)
                    continue
                if item.source in seen:
                    report.failures.append(LoadFailure(item.source, "duplicate source in this run; kept the first"))
                    continue
                seen.add(item.source)
                report.documents += 1
                bar.update(1)
                batch.append(item)
                if len(batch) >= _LOAD_BATCH:
                    prepared = await asyncio.to_thread(self._prepare, batch, kb, scope, stored, report)
                    batch = []
                    pending.extend(prepared)
                    pending_chunks += sum(len(p.ids) for p in prepared)
                    if pending_chunks >= _BATCH_CHUNKS and (self.store.meta.avg_len or pending_chunks >= _AVG_SAMPLE):
                        await self._write(pending, kb, stored, report)
                        pending, pending_chunks = [], 0
            if batch:
                pending.extend(await asyncio.to_thread(self._prepare, batch, kb, scope, stored, report))
            await self._write(pending, kb, stored, report)
            if prune_origins is not None:
                await self._prune(kb, stored, seen, set(prune_origins), report)
            if report.chunks_written:
                await self.store.optimize()
        finally:
            bar.close()
        report.seconds = time.perf_counter() - started
        return report

    def _doc_hash(self, doc: Document, scope: tuple[str, ...]) -> str:
        h = hashlib.sha256()
        for part in (self._settings, doc.format, doc.title, doc.url or "", ",".join(scope)):
            h.update(part.encode())
            h.update(b"\x1f")
        h.update(json.dumps(dict(doc.metadata), sort_keys=True, default=str).encode())
        h.update(b"\x1f")
        h.update(doc.text.encode())
        return h.hexdigest()[:32]

    def _prepare(
        self,
        docs: list[Document],
        kb: str,
        run_scope: tuple[str, ...],
        stored: dict[str, list[ChunkState]],
        report: IngestReport,
    ) -> list[_Prepared]:
        """Chunk and analyse the documents that changed (blocking; runs in a thread)."""
        out: list[_Prepared] = []
        cfg = self.config
        for doc in docs:
            scope = doc.scope or run_scope
            doc_hash = self._doc_hash(doc, scope)
            old = stored.get(doc.source, [])
            if old and all(s.doc_hash == doc_hash for s in old):
                report.chunks_unchanged += len(old)
                continue
            report.documents_changed += 1
            prepared = _Prepared(doc, doc_hash, [], [], [], [])
            occurrences: dict[str, int] = {}
            for chunk in chunk_document(doc, cfg.chunk_tokens, cfg.chunk_overlap):
                heading = chunk.heading
                embed_text = f"{doc.title}\n{heading}\n{chunk.text}" if heading else f"{doc.title}\n{chunk.text}"
                content = hashlib.sha1(embed_text.encode(), usedforsecurity=False).hexdigest()
                n = occurrences.get(content, 0)
                occurrences[content] = n + 1
                point_id = str(uuid.uuid5(_NAMESPACE, f"{kb}\x1f{doc.source}\x1f{content}\x1f{n}"))
                counts, length = self.encoder.analyze(embed_text)
                payload: dict[str, Any] = {
                    "kb": kb,
                    "scope": list(scope),
                    "source": doc.source,
                    "origin": doc.origin,
                    "title": doc.title,
                    "heading": heading,
                    "url": doc.url,
                    "position": chunk.position,
                    "page": chunk.page,
                    "format": doc.format,
                    "text": chunk.text,
                    "tokens": chunk.tokens,
                    "terms": length,
                    "meta": dict(doc.metadata),
                }
                payload["chunk_hash"] = _payload_hash(payload)
                payload["doc_hash"] = doc_hash
                prepared.ids.append(point_id)
                prepared.payloads.append(payload)
                prepared.embed_texts.append(embed_text)
                prepared.terms.append((counts, length))
            out.append(prepared)
        return out

    async def _write(
        self, pending: list[_Prepared], kb: str, stored: dict[str, list[ChunkState]], report: IngestReport
    ) -> None:
        if not pending:
            return
        meta = self.store.meta
        if meta.avg_len is None:
            lengths = [length for p in pending for _, length in p.terms]
            meta.avg_len = max(1.0, sum(lengths) / len(lengths)) if lengths else None
            if meta.avg_len is not None:
                await self.store.save_meta(meta)
        avg_len = meta.avg_len or 1.0
        new_points: list[tuple[str, dict[int, int], int, str, dict[str, Any]]] = []
        deletes: list[str] = []
        for prep in pending:
            old = {s.id: s for s in stored.get(prep.doc.source, [])}
            keep_ids: list[str] = []
            for point_id, payload, text, (counts, length) in zip(
                prep.ids, prep.payloads, prep.embed_texts, prep.terms, strict=True
            ):
                previous = old.pop(point_id, None)
                if previous is None:
                    new_points.append((point_id, counts, length, text, payload))
                elif previous.chunk_hash != payload["chunk_hash"]:
                    await self.store.set_payload([point_id], payload)
                    report.chunks_updated += 1
                else:
                    keep_ids.append(point_id)
            if keep_ids:
                await self.store.set_payload(keep_ids, {"doc_hash": prep.doc_hash})
                report.chunks_unchanged += len(keep_ids)
            deletes.extend(old)
        for i in range(0, len(new_points), _BATCH_CHUNKS):
            part = new_points[i : i + _BATCH_CHUNKS]
            dense: list[list[float]] | list[None] = [None] * len(part)
            if self.embedder is not None:
                dense = await self.embedder.embed_documents([p[3] for p in part])
                report.embedding_calls += 1
            points = [
                StoredPoint(pid, self.encoder.weights(counts, length, avg_len), payload, vec)
                for (pid, counts, length, _, payload), vec in zip(part, dense, strict=True)
            ]
            await self.store.upsert(points)
            report.chunks_added += len(points)
        await self.store.delete(deletes)
        report.chunks_removed += len(deletes)

    async def _prune(
        self,
        kb: str,
        stored: dict[str, list[ChunkState]],
        seen: set[str],
        origins: set[str],
        report: IngestReport,
    ) -> None:
        protected = [f.source for f in report.failures if f.source]
        gone: list[str] = []
        for source, states in stored.items():
            if source in seen or not states or states[0].origin not in origins:
                continue
            if any(source == p or source.startswith((p + "/", p + "#")) for p in protected):
                continue
            gone.extend(s.id for s in states)
        await self.store.delete(gone)
        report.chunks_removed += len(gone)


def _payload_hash(payload: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(payload, sort_keys=True, default=str).encode(), usedforsecurity=False).hexdigest()[
        :20
    ]


async def _threaded(iterator: Iterator[Document | LoadFailure]) -> AsyncIterator[Document | LoadFailure]:
    """Drive a blocking iterator (file reading and parsing) from a worker thread."""
    done = object()

    def take() -> list[Document | LoadFailure | object]:
        out: list[Document | LoadFailure | object] = []
        for item in iterator:
            out.append(item)
            if len(out) >= _LOAD_BATCH:
                return out
        out.append(done)
        return out

    while True:
        for item in await asyncio.to_thread(take):
            if item is done:
                return
            if isinstance(item, Document | LoadFailure):
                yield item
