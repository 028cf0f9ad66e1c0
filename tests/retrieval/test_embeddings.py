from __future__ import annotations

from pathlib import Path

import pytest

from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.embeddings import EmbeddingError, FastEmbedEmbedder, OpenAIEmbedder, make_embedder
from tests.fakes.openai_server import FakeOpenAI


async def test_openai_embedder_batches_keeps_order_and_probes_size(openai_server: FakeOpenAI) -> None:
    emb = OpenAIEmbedder("m", base_url=openai_server.base_url, api_key="k", batch_size=3, concurrency=2)
    try:
        texts = [f"text number {i}" for i in range(8)]
        vectors = await emb.embed_documents(texts)
        assert len(vectors) == 8 and {len(v) for v in vectors} == {openai_server.embedding_dim}
        assert vectors[5] == await emb.embed_query("text number 5")
        assert sorted(len(r.body["input"]) for r in openai_server.requests) == [1, 2, 3, 3]
        assert all(r.body["model"] == "m" for r in openai_server.requests)
        assert await emb.dimensions() == openai_server.embedding_dim
    finally:
        await emb.aclose()


async def test_openai_embedder_retries_and_then_reports(openai_server: FakeOpenAI) -> None:
    emb = OpenAIEmbedder("m", base_url=openai_server.base_url, api_key="k", retries=2, dimensions=16)
    try:
        openai_server.fail_next(429, count=2)
        assert len((await emb.embed_documents(["hello"]))[0]) == 16
        assert len(openai_server.requests) == 3
        assert openai_server.requests[-1].body["dimensions"] == 16
        openai_server.fail_next(429, count=3)
        with pytest.raises(EmbeddingError, match="embeddings request to model 'm' failed"):
            await emb.embed_documents(["hello"])
        # a question does not wait through retries: it fails at once and search falls back to BM25
        before = len(openai_server.requests)
        openai_server.fail_next(429, count=1)
        with pytest.raises(EmbeddingError, match="embeddings request to model 'm' failed"):
            await emb.embed_query("hello")
        assert len(openai_server.requests) == before + 1
    finally:
        await emb.aclose()


def test_make_embedder_chooses_and_validates(tmp_path: Path) -> None:
    env = RetrievalEnvironment(RetrievalConfig(), tmp_path)
    assert make_embedder(env) is None
    with pytest.raises(EmbeddingError, match="OPENAI_API_KEY"):
        make_embedder(RetrievalEnvironment(RetrievalConfig(embedder="openai"), tmp_path))
    emb = make_embedder(
        RetrievalEnvironment(RetrievalConfig(embedder="openai", embedding_model="e"), tmp_path, openai_api_key="k")
    )
    assert isinstance(emb, OpenAIEmbedder) and emb.name == "openai:e"
    with pytest.raises(ValueError, match="embedding_model_path"):
        RetrievalConfig(embedder="fastembed")


def test_fastembed_explains_what_is_missing(tmp_path: Path) -> None:
    try:
        import fastembed  # noqa: F401
    except ImportError:
        with pytest.raises(EmbeddingError, match=r"bothbot\[fastembed\]"):
            FastEmbedEmbedder("m", tmp_path)
    else:
        with pytest.raises(EmbeddingError, match="not a directory"):
            FastEmbedEmbedder("m", tmp_path / "missing")
