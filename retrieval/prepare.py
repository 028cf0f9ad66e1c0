"""Per-document preparation for ingest: hash, chunk, analyse (and weigh, once the average length is
known). Pure CPU work on picklable inputs, so it runs in a worker thread or, for large ingests, in
a worker process beside the one writing to the store (two cores, no shared GIL)."""

from __future__ import annotations

import hashlib
import json
import uuid
from array import array
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from retrieval.chunking import chunk_document
from retrieval.documents import Document
from retrieval.sparse import Bm25Encoder, SparseVec
from retrieval.store.protocol import NO_DENSE

_NAMESPACE = uuid.UUID("5b0d7a4e-5f3c-4c1e-9a55-b07b0b07b0b7")


@dataclass(frozen=True, slots=True)
class PrepareSettings:
    language: str
    stemming: bool
    stop_words: bool
    k1: float
    b: float
    chunk_tokens: int
    chunk_overlap: int
    dense: str  # the embedder's name, or NO_DENSE

    def encoder(self) -> Bm25Encoder:
        return Bm25Encoder(self.language, stemming=self.stemming, stop_words=self.stop_words, k1=self.k1, b=self.b)


@dataclass(slots=True)
class PreparedDoc:
    """One new or changed document, chunked and analysed.

    It travels from a worker process back to the writing process, the busier of the two, so it
    pickles compactly: BM25 weights as packed arrays (uint32 term ids, float32 values — what Qdrant
    stores anyway) rather than lists of Python numbers, and the object as a plain constructor call
    rather than a slotted dataclass' state.
    """

    source: str
    doc_hash: str
    ids: list[str] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    embed_texts: list[str] = field(default_factory=list)
    terms: list[tuple[dict[int, int], int]] = field(default_factory=list)  # while the average length is unknown
    weights: list[tuple[array[int], array[float]]] | None = None  # set when the average length was known

    def __reduce__(self) -> tuple[Any, ...]:
        fields = (self.source, self.doc_hash, self.ids, self.payloads, self.embed_texts, self.terms, self.weights)
        return (PreparedDoc, fields)

    def sparse_vectors(self, encoder: Bm25Encoder, avg_len: float) -> list[SparseVec]:
        """One BM25 vector per chunk: the prepared weights, or weighed here with ``avg_len``."""
        if self.weights is not None:
            return [SparseVec(ids, values) for ids, values in self.weights]
        return [encoder.weights(counts, length, avg_len) for counts, length in self.terms]


@dataclass(slots=True)
class PreparedBatch:
    docs: list[PreparedDoc]
    unchanged_chunks: int = 0

    def __reduce__(self) -> tuple[Any, ...]:
        return (PreparedBatch, (self.docs, self.unchanged_chunks))


_ENCODERS: dict[PrepareSettings, Bm25Encoder] = {}


def _encoder(settings: PrepareSettings) -> Bm25Encoder:
    enc = _ENCODERS.get(settings)
    if enc is None:
        enc = _ENCODERS[settings] = settings.encoder()
    return enc


def _settings_key(settings: PrepareSettings) -> bytes:
    encoder = _encoder(settings)
    return f"{encoder.signature}\x1f{settings.chunk_tokens}/{settings.chunk_overlap}/{settings.dense}\x1f".encode()


def doc_hash(settings: PrepareSettings, doc: Document, scope: tuple[str, ...], meta_json: str) -> str:
    """Changes whenever anything that ends up in the store would change."""
    h = hashlib.sha1(_settings_key(settings), usedforsecurity=False)
    fields = (doc.format, doc.title, doc.url or "", doc.origin, ",".join(scope), meta_json)
    h.update("\x1f".join((*fields, doc.path) if doc.path else fields).encode())
    h.update(b"\x1f")
    h.update(doc.text.encode())
    return h.hexdigest()


def document_hash(settings: PrepareSettings, doc: Document, run_scope: tuple[str, ...]) -> str:
    meta = dict(doc.metadata)
    return doc_hash(
        settings, doc, doc.scope or run_scope, json.dumps(meta, sort_keys=True, default=str) if meta else ""
    )


def point_id(kb: str, source: str, content: str, occurrence: int) -> str:
    """UUID version 5 (RFC 4122, SHA-1) of the chunk's identity, formatted like ``str(uuid.uuid5(...))``."""
    h = hashlib.sha1(
        _NAMESPACE.bytes + f"{kb}\x1f{source}\x1f{content}\x1f{occurrence}".encode(), usedforsecurity=False
    )
    x = h.hexdigest()
    variant = "89ab"[int(x[16], 16) & 0x3]
    return f"{x[:8]}-{x[8:12]}-5{x[13:16]}-{variant}{x[17:20]}-{x[20:32]}"


def prepare_batch(
    settings: PrepareSettings,
    docs: list[Document],
    kb: str,
    run_scope: tuple[str, ...],
    known: Mapping[str, tuple[frozenset[str], int]],
    avg_len: float | None,
) -> PreparedBatch:
    """Skip documents whose stored chunks all carry the same doc hash; prepare the others.

    ``known`` maps a source to the doc hashes its stored chunks carry and how many there are.
    """
    encoder = _encoder(settings)
    batch = PreparedBatch([])
    for doc in docs:
        scope = doc.scope or run_scope
        meta = dict(doc.metadata)
        meta_json = json.dumps(meta, sort_keys=True, default=str) if meta else ""
        dhash = doc_hash(settings, doc, scope, meta_json)
        stored = known.get(doc.source)
        if stored is not None and stored[0] == {dhash}:
            batch.unchanged_chunks += stored[1]
            continue
        prepared = PreparedDoc(doc.source, dhash)
        occurrences: dict[str, int] = {}
        scope_list = list(scope)
        doc_key = f"{kb}\x1f{','.join(scope)}\x1f{doc.source}\x1f{doc.origin}\x1f{doc.url or ''}\x1f{meta_json}"
        if doc.path:
            doc_key += f"\x1f{doc.path}"
        for chunk in chunk_document(doc, settings.chunk_tokens, settings.chunk_overlap):
            heading = chunk.heading
            embed_text = f"{doc.title}\n{heading}\n{chunk.text}" if heading else f"{doc.title}\n{chunk.text}"
            content = hashlib.sha1(embed_text.encode(), usedforsecurity=False).hexdigest()
            n = occurrences.get(content, 0)
            occurrences[content] = n + 1
            counts, length = encoder.analyze(embed_text)
            payload: dict[str, Any] = {
                "kb": kb,
                "scope": scope_list,
                "source": doc.source,
                "origin": doc.origin,
                "title": doc.title,
                "position": chunk.position,
                "text": chunk.text,
            }
            if heading:
                payload["heading"] = heading
            if doc.url:
                payload["url"] = doc.url
            if settings.dense != NO_DENSE:
                payload["dense"] = settings.dense  # switching embedders re-embeds the chunk
            if doc.path:
                payload["path"] = doc.path
            if chunk.page is not None:
                payload["page"] = chunk.page
            if meta:
                payload["meta"] = meta
            # what the payload says beyond the id's content hash: where the chunk sits and who sees it
            payload["chunk_hash"] = hashlib.sha1(
                f"{doc_key}\x1f{chunk.position}\x1f{chunk.page}\x1f{content}".encode(), usedforsecurity=False
            ).hexdigest()[:20]
            payload["doc_hash"] = dhash
            prepared.ids.append(point_id(kb, doc.source, content, n))
            prepared.payloads.append(payload)
            prepared.embed_texts.append(embed_text if settings.dense != NO_DENSE else "")
            prepared.terms.append((counts, length))
        if avg_len is not None:
            vectors = [encoder.weights(c, n, avg_len) for c, n in prepared.terms]
            prepared.weights = [(array("I", v.indices), array("f", v.values)) for v in vectors]
            prepared.terms = []
        batch.docs.append(prepared)
    return batch
