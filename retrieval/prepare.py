"""Per-document preparation for ingest: hash, chunk, analyse (and weigh, once the average length is
known). Pure CPU work on picklable inputs, so it runs in a worker thread or, for large ingests, in
a worker process beside the one writing to the store (two cores, no shared GIL)."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from retrieval.chunking import chunk_document
from retrieval.documents import Document
from retrieval.sparse import Bm25Encoder, SparseVec

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
    dense: str  # the embedder's name, or "-"

    def encoder(self) -> Bm25Encoder:
        return Bm25Encoder(self.language, stemming=self.stemming, stop_words=self.stop_words, k1=self.k1, b=self.b)


@dataclass(slots=True)
class PreparedDoc:
    """One new or changed document, chunked and analysed."""

    source: str
    doc_hash: str
    ids: list[str] = field(default_factory=list)
    payloads: list[dict[str, Any]] = field(default_factory=list)
    embed_texts: list[str] = field(default_factory=list)
    terms: list[tuple[dict[int, int], int]] = field(default_factory=list)
    vectors: list[SparseVec] | None = None  # set when the average length was known


@dataclass(slots=True)
class PreparedBatch:
    docs: list[PreparedDoc]
    unchanged_chunks: int = 0


_ENCODERS: dict[PrepareSettings, Bm25Encoder] = {}


def _encoder(settings: PrepareSettings) -> Bm25Encoder:
    enc = _ENCODERS.get(settings)
    if enc is None:
        enc = _ENCODERS[settings] = settings.encoder()
    return enc


def doc_hash(settings: PrepareSettings, doc: Document, scope: tuple[str, ...]) -> str:
    """Changes whenever anything that ends up in the store would change."""
    h = hashlib.sha256()
    encoder = _encoder(settings)
    parts = (
        encoder.signature,
        f"{settings.chunk_tokens}/{settings.chunk_overlap}/{settings.dense}",
        doc.format,
        doc.title,
        doc.url or "",
        doc.origin,
        ",".join(scope),
    )
    for part in parts:
        h.update(part.encode())
        h.update(b"\x1f")
    h.update(json.dumps(dict(doc.metadata), sort_keys=True, default=str).encode())
    h.update(b"\x1f")
    h.update(doc.text.encode())
    return h.hexdigest()[:32]


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
        dhash = doc_hash(settings, doc, scope)
        stored = known.get(doc.source)
        if stored is not None and stored[0] == {dhash}:
            batch.unchanged_chunks += stored[1]
            continue
        prepared = PreparedDoc(doc.source, dhash)
        occurrences: dict[str, int] = {}
        for chunk in chunk_document(doc, settings.chunk_tokens, settings.chunk_overlap):
            heading = chunk.heading
            embed_text = f"{doc.title}\n{heading}\n{chunk.text}" if heading else f"{doc.title}\n{chunk.text}"
            content = hashlib.sha1(embed_text.encode(), usedforsecurity=False).hexdigest()
            n = occurrences.get(content, 0)
            occurrences[content] = n + 1
            counts, length = encoder.analyze(embed_text)
            payload: dict[str, Any] = {
                "kb": kb,
                "scope": list(scope),
                "source": doc.source,
                "origin": doc.origin,
                "title": doc.title,
                "position": chunk.position,
                "format": doc.format,
                "text": chunk.text,
                "terms": length,
            }
            if heading:
                payload["heading"] = heading
            if doc.url:
                payload["url"] = doc.url
            if chunk.page is not None:
                payload["page"] = chunk.page
            if doc.metadata:
                payload["meta"] = dict(doc.metadata)
            payload["chunk_hash"] = hashlib.sha1(
                json.dumps(payload, sort_keys=True, default=str).encode(), usedforsecurity=False
            ).hexdigest()[:20]
            payload["doc_hash"] = dhash
            prepared.ids.append(str(uuid.uuid5(_NAMESPACE, f"{kb}\x1f{doc.source}\x1f{content}\x1f{n}")))
            prepared.payloads.append(payload)
            prepared.embed_texts.append(embed_text if settings.dense != "-" else "")
            prepared.terms.append((counts, length))
        if avg_len is not None:
            prepared.vectors = [encoder.weights(c, n, avg_len) for c, n in prepared.terms]
            prepared.terms = []
        batch.docs.append(prepared)
    return batch
