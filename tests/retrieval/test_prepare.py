"""The prepared-chunk format that travels from the ingest worker process, and bulk-ingest GC scoping."""

from __future__ import annotations

import gc
import pickle
from array import array

import pytest

from retrieval import ingest
from retrieval.documents import Document
from retrieval.prepare import PreparedBatch, PrepareSettings, prepare_batch

SETTINGS = PrepareSettings("english", True, True, 1.2, 0.75, 64, 8, "-")
DOCS = [
    Document(f"d{i}", f"Doc {i}", f"# T{i}\n\nThe routers {i} were rebooted twice.\n\n## S\n\nVPN {i % 3}", "markdown")
    for i in range(5)
]


def test_prepared_weights_are_packed_and_match_the_encoder() -> None:
    batch = prepare_batch(SETTINGS, DOCS, "kb", ("public",), {}, 12.0)
    encoder = SETTINGS.encoder()
    for doc in batch.docs:
        assert doc.weights is not None and not doc.terms
        assert all(isinstance(ids, array) and ids.typecode == "I" for ids, _ in doc.weights)
        for vec, text in zip(doc.sparse_vectors(encoder, 12.0), doc.payloads, strict=True):
            assert vec.indices  # every chunk has terms
            assert text["kb"] == "kb"
    # same terms and (float32-rounded) weights as weighing in the writing process
    unweighed = prepare_batch(SETTINGS, DOCS, "kb", ("public",), {}, None)
    for packed, raw in zip(batch.docs, unweighed.docs, strict=True):
        assert raw.weights is None and raw.terms
        for a, b in zip(packed.sparse_vectors(encoder, 12.0), raw.sparse_vectors(encoder, 12.0), strict=True):
            assert list(a.indices) == list(b.indices)
            assert list(a.values) == pytest.approx(list(b.values), rel=1e-6)


def test_prepared_batch_survives_pickling() -> None:
    batch = prepare_batch(SETTINGS, DOCS, "kb", ("slack:C1",), {}, 12.0)
    batch.unchanged_chunks = 3
    copy = pickle.loads(pickle.dumps(batch, protocol=pickle.HIGHEST_PROTOCOL))
    assert isinstance(copy, PreparedBatch) and copy == batch


def test_bulk_gc_threshold_is_restored_after_the_last_bulk_run() -> None:
    before = gc.get_threshold()
    ingest._bulk_gc(True)
    ingest._bulk_gc(True)
    assert gc.get_threshold()[0] >= ingest._BULK_GC_GEN0
    ingest._bulk_gc(False)
    assert gc.get_threshold()[0] >= ingest._BULK_GC_GEN0
    ingest._bulk_gc(False)
    assert gc.get_threshold() == before
