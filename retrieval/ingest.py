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

A file is identified by its resolved path (``Document.path``), not by the name it gets from the
argument it was ingested through: ingested again under another name (``corpus/`` then
``corpus/holidays.html``), knowledge base or scope, it moves — what was stored from it elsewhere is
deleted once the new chunks are written — so it is never visible twice or where it no longer belongs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import multiprocessing
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from tqdm import tqdm

from retrieval.api import PUBLIC_SCOPE
from retrieval.config import RetrievalConfig
from retrieval.documents import Document, LoadFailure
from retrieval.embeddings import Embedder
from retrieval.loaders import LoadOptions, iter_documents, safe_resolve
from retrieval.prepare import PreparedBatch, PreparedDoc, PrepareSettings, document_hash, prepare_batch
from retrieval.sparse import Bm25Encoder, SparseVec
from retrieval.store.protocol import NO_DENSE, ChunkState, StoredPoint, VectorStore

log = logging.getLogger(__name__)
_Job = tuple[PrepareSettings, list[Document], str, tuple[str, ...], dict[str, tuple[frozenset[str], int]], float | None]
_BATCH_CHUNKS = 512  # chunks per upsert (and per embeddings round)
_LOAD_BATCH = 64  # documents per preparation job
_AVG_SAMPLE = 2_000  # chunks that set the BM25 average length of a new store
_INFLIGHT_PER_WORKER = 16  # preparation jobs queued per worker: enough to cover one write round
_POOL_AFTER = 8 * _LOAD_BATCH  # documents before a worker process is worth starting
_OPTIMIZE_AFTER = 1_000  # chunks written that make an index optimisation worth it
_PIPE_BYTES = 1 << 20  # pipe buffer to and from the worker process (Linux default 64 KiB; max 1 MiB unprivileged)
_BULK_GC_GEN0 = 50_000  # allocations between young-generation collections during a bulk ingest
_bulk_runs = 0  # bulk ingests running in this process (they share the raised threshold)
_saved_gc_threshold: tuple[int, int, int] | None = None


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
    documents_moved: int = 0  # stored before under another name, knowledge base or scope: moved here
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
        moved = f", {self.documents_moved} moved from another name or kb" if self.documents_moved else ""
        return (
            f"kb {self.kb!r}: {self.documents} documents ({self.documents_changed} new or changed{moved}{failed}); "
            f"chunks: {self.chunks_added} added, {self.chunks_updated} updated, {self.chunks_removed} removed, "
            f"{self.chunks_unchanged} unchanged; {self.seconds:.1f} s"
        )


class Ingester:
    def __init__(
        self, store: VectorStore, encoder: Bm25Encoder, embedder: Embedder | None, config: RetrievalConfig
    ) -> None:
        self.store = store
        self.encoder = encoder
        self.embedder = embedder
        self.config = config
        self.settings = PrepareSettings(
            language=config.language,
            stemming=config.stemming,
            stop_words=config.stop_words,
            k1=config.bm25_k1,
            b=config.bm25_b,
            chunk_tokens=config.chunk_tokens,
            chunk_overlap=config.chunk_overlap,
            dense=embedder.name if embedder else NO_DENSE,
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
        on_document: Callable[[int], None] | None = None,
    ) -> IngestReport:
        roots = [safe_resolve(p).name or str(safe_resolve(p)) for p in paths]
        items = _threaded(_located(paths, options))
        return await self.ingest(
            items,
            kb=kb,
            scope=scope,
            prune_origins=roots if prune else None,
            progress=progress,
            on_document=on_document,
        )

    async def ingest(
        self,
        items: AsyncIterator[Document | LoadFailure],
        *,
        kb: str,
        scope: tuple[str, ...] = (PUBLIC_SCOPE,),
        prune_origins: Sequence[str] | None = None,
        progress: bool = False,
        on_document: Callable[[int], None] | None = None,
    ) -> IngestReport:
        """``on_document`` is told the number of documents read so far, after each one (progress)."""
        started = time.perf_counter()
        run = _Run(self, kb, scope)
        if self.embedder is not None:
            await self.store.ensure_dense(await self.embedder.dimensions())
        for state in await self.store.inventory(kb):
            run.stored.setdefault(state.source, []).append(state)
        bar = tqdm(desc=f"ingest {kb}", unit="doc", disable=not progress, leave=False)
        try:
            batch: list[Document] = []
            async for item in items:
                if isinstance(item, LoadFailure):
                    run.report.failures.append(item)
                    continue
                if item.source in run.seen:
                    run.report.failures.append(LoadFailure(item.source, "duplicate source in this run; kept the first"))
                    continue
                if item.path is not None and not await run.locate(item, item.path):
                    continue
                run.seen.add(item.source)
                run.report.documents += 1
                bar.update(1)
                if on_document is not None:
                    on_document(run.report.documents)
                batch.append(item)
                if len(batch) >= _LOAD_BATCH:
                    await run.submit(batch)
                    batch = []
            if batch:
                await run.submit(batch)
            await run.finish()
            await self.store.delete(run.moved)
            run.report.chunks_removed += len(run.moved)
            if prune_origins is not None:
                await self._prune(run.stored, run.seen, set(prune_origins), run.report)
            if run.report.chunks_written >= _OPTIMIZE_AFTER or (run.report.chunks_written and run.bulk):
                await self.store.optimize()
        finally:
            bar.close()
            await run.close()
        run.report.seconds = time.perf_counter() - started
        return run.report

    async def write(
        self, pending: list[PreparedDoc], stored: dict[str, list[ChunkState]], report: IngestReport
    ) -> None:
        """Upsert new chunks, rewrite payloads of moved ones, delete vanished ones."""
        if not pending:
            return
        meta = self.store.meta
        if meta.avg_len is None:
            lengths = [n for p in pending for _, n in p.terms]
            if lengths:
                meta.avg_len = max(1.0, sum(lengths) / len(lengths))
                await self.store.save_meta(meta)
        avg_len = meta.avg_len or 1.0
        new_points: list[tuple[str, SparseVec, str, dict[str, Any]]] = []
        deletes: list[str] = []
        for prep in pending:
            vectors = prep.sparse_vectors(self.encoder, avg_len)
            old = {s.id: s for s in stored.get(prep.source, [])}
            keep_ids: list[str] = []
            for point_id, payload, text, vector in zip(prep.ids, prep.payloads, prep.embed_texts, vectors, strict=True):
                previous = old.pop(point_id, None)
                if previous is None or previous.dense != payload.get("dense", NO_DENSE):
                    new_points.append((point_id, vector, text, payload))  # new, or embedded by another model
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
                dense = await self.embedder.embed_documents([p[2] for p in part])
                report.embedding_calls += 1
            points = [
                StoredPoint(pid, vector, payload, vec)
                for (pid, vector, _, payload), vec in zip(part, dense, strict=True)
            ]
            await self.store.upsert(points)
            report.chunks_added += len(points)
        await self.store.delete(deletes)
        report.chunks_removed += len(deletes)

    async def _prune(
        self,
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


def _located(paths: Sequence[Path], options: LoadOptions | None) -> Iterator[Document | LoadFailure]:
    """Documents of each path, each with the resolved path of the file it came from."""
    for path in paths:
        resolved = safe_resolve(path)
        # a folder's documents are named "<folder name>/<relative path>", a file's "<file name>"
        prefix = (resolved.name or str(resolved)) + "/" if path.is_dir() else path.name
        base = resolved.as_posix() + "/" if path.is_dir() else resolved.as_posix()
        for item in iter_documents([path], options):
            if isinstance(item, Document) and item.path is None and item.source.startswith(prefix):
                rest = item.source[len(prefix) :]
                if path.is_dir() or not rest or rest.startswith("#"):
                    item = replace(item, path=base + rest)
            yield item


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


def _widen_pipes(pool: ProcessPoolExecutor) -> None:
    """Best effort (Linux): room for a few jobs and results in the pipes to and from the worker.

    qdrant-edge holds the GIL during each call, so while an upsert runs this process can neither
    feed the worker nor read its results; with 64 KiB pipes the worker stalls after about one job
    (a job or a result is larger than that). Touches the executor's queues, which are private:
    if they are not there (another Python), nothing changes.
    """
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        return
    setsize = getattr(fcntl, "F_SETPIPE_SZ", None)
    if setsize is None:
        return
    for name in ("_call_queue", "_result_queue"):
        writer = getattr(getattr(pool, name, None), "_writer", None)
        if writer is None:
            continue
        with contextlib.suppress(AttributeError, OSError, ValueError):
            fcntl.fcntl(writer.fileno(), setsize, _PIPE_BYTES)


def _bulk_gc(enter: bool) -> None:
    """Fewer garbage collections while a bulk ingest runs (restored when the last one ends).

    A bulk ingest allocates millions of short-lived containers (payloads, prepared chunks) in this,
    the busier process, and every tenth and hundredth young collection triggers an older one that
    walks whatever else the process holds. They die by reference counting (no cycles), so
    collecting less often only saves time (1.5 s of a 100k-chunk ingest).
    """
    global _bulk_runs, _saved_gc_threshold
    if enter:
        if _bulk_runs == 0:
            _saved_gc_threshold = gc.get_threshold()
            gen0, gen1, gen2 = _saved_gc_threshold
            gc.set_threshold(max(gen0, _BULK_GC_GEN0), gen1, gen2)
        _bulk_runs += 1
        return
    _bulk_runs -= 1
    if _bulk_runs == 0 and _saved_gc_threshold is not None:
        gc.set_threshold(*_saved_gc_threshold)
        _saved_gc_threshold = None


class _Run:
    """State of one ingest: what is stored, what was seen, preparation jobs in flight."""

    def __init__(self, ingester: Ingester, kb: str, scope: tuple[str, ...]) -> None:
        self.ingester = ingester
        self.kb = kb
        self.scope = scope
        self.report = IngestReport(kb=kb)
        self.stored: dict[str, list[ChunkState]] = {}
        self.seen: set[str] = set()
        self.inflight: deque[tuple[asyncio.Future[PreparedBatch], _Job]] = deque()
        self.pending: list[PreparedDoc] = []
        self.pending_chunks = 0
        self.submitted = 0
        self.pool: ProcessPoolExecutor | None = None
        self.broken: list[ProcessPoolExecutor] = []
        self.bulk = False
        self.by_path: dict[str, list[ChunkState]] | None = None  # stored chunks by file, every kb
        self.paths_seen: dict[str, str] = {}  # path -> source, this run
        self.moved: list[str] = []  # ids stored from this run's files under another kb or name

    async def locate(self, doc: Document, path: str) -> bool:
        """Note what is stored from ``doc``'s file (``path``) elsewhere, to delete; False for a file seen twice."""
        first = self.paths_seen.setdefault(path, doc.source)
        if first != doc.source:
            self.report.failures.append(LoadFailure(doc.source, f"same file as {first} in this run; kept the first"))
            return False
        if self.by_path is None:
            store = self.ingester.store
            self.by_path = {}
            states = [s for states in self.stored.values() for s in states]
            for other in await store.kb_counts():
                if other != self.kb:
                    states.extend(await store.inventory(other))
            for state in states:
                if state.path:
                    self.by_path.setdefault(state.path, []).append(state)
        elsewhere = [s for s in self.by_path.get(path, ()) if (s.kb, s.source) != (self.kb, doc.source)]
        if elsewhere:
            self.report.documents_moved += 1
            self.moved.extend(s.id for s in elsewhere)
            for state in elsewhere:
                if state.kb == self.kb:
                    self.stored.pop(state.source, None)
        return True

    async def submit(self, batch: list[Document]) -> None:
        docs: list[Document] = []
        for doc in batch:  # unchanged documents stop here, before any worker sees them
            states = self.stored.get(doc.source)
            if states and {s.doc_hash for s in states} == {document_hash(self.ingester.settings, doc, self.scope)}:
                self.report.chunks_unchanged += len(states)
            else:
                docs.append(doc)
        if not docs:
            return
        self.submitted += len(docs)
        workers = self.ingester.config.ingest_workers
        if self.pool is None and not self.broken and workers > 0 and self.submitted > _POOL_AFTER:
            self.pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            _widen_pipes(self.pool)
            if not self.bulk:
                _bulk_gc(True)
            self.bulk = True
        known = {
            d.source: (frozenset(s.doc_hash for s in states), len(states))
            for d in docs
            if (states := self.stored.get(d.source))
        }
        job: _Job = (self.ingester.settings, docs, self.kb, self.scope, known, self.ingester.store.meta.avg_len)
        if self.pool is not None:
            future = asyncio.get_running_loop().run_in_executor(self.pool, prepare_batch, *job)
        else:
            future = asyncio.ensure_future(asyncio.to_thread(prepare_batch, *job))
        self.inflight.append((future, job))
        # With a worker process, keep it busy while this process writes; a thread gains nothing.
        while len(self.inflight) > (_INFLIGHT_PER_WORKER * workers if self.pool is not None else 0):
            await self._absorb(await self._next())

    async def _next(self) -> PreparedBatch:
        future, job = self.inflight.popleft()
        try:
            return await future
        except BrokenProcessPool:  # e.g. a __main__ that cannot be re-imported: carry on in threads
            if self.pool is not None:
                log.warning("ingest worker process failed; preparing documents in a thread instead")
                self.broken.append(self.pool)
                self.pool = None
            return await asyncio.to_thread(prepare_batch, *job)

    async def _absorb(self, batch: PreparedBatch) -> None:
        self.report.chunks_unchanged += batch.unchanged_chunks
        # A document with no chunks now and none stored (an empty file) changes nothing in the store:
        # it is not "new or changed", or it would be on every run (nothing stored records its hash).
        self.report.documents_changed += sum(1 for d in batch.docs if d.ids or self.stored.get(d.source))
        self.pending.extend(batch.docs)
        self.pending_chunks += sum(len(d.ids) for d in batch.docs)
        if self.pending_chunks >= _BATCH_CHUNKS and (
            self.ingester.store.meta.avg_len is not None or self.pending_chunks >= _AVG_SAMPLE
        ):
            await self._flush()

    async def _flush(self) -> None:
        pending, self.pending, self.pending_chunks = self.pending, [], 0
        await self.ingester.write(pending, self.stored, self.report)

    async def finish(self) -> None:
        while self.inflight:
            await self._absorb(await self._next())
        await self._flush()

    async def close(self) -> None:
        if self.bulk:
            _bulk_gc(False)
        for future, _ in self.inflight:
            future.cancel()
        pools = [*self.broken, *([self.pool] if self.pool is not None else [])]
        self.pool, self.broken = None, []
        for pool in pools:
            await asyncio.to_thread(pool.shutdown, True, cancel_futures=True)
