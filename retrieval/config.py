"""Retrieval settings (nested in the bot's settings tree as ``retrieval``; env ``BOTHBOT_RETRIEVAL__*``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator


class RetrievalConfig(BaseModel):
    """Tuning of ingest and search. Every field has a default that works with no model."""

    top_k: int = Field(default=5, ge=1, le=50, description="Passages given to the model per question.")

    # Chunking
    chunk_tokens: int = Field(
        default=256,
        ge=16,
        le=8192,
        description="Upper bound of a chunk's length in tokens (words and marks).",
    )
    chunk_overlap: int = Field(
        default=32,
        ge=0,
        le=2048,
        description="Tokens repeated from the end of one chunk at the start of the next.",
    )

    ingest_workers: int = Field(
        default=1,
        ge=0,
        le=32,
        description="Worker processes that chunk and analyse documents during large ingests "
        "(0: a thread of the ingesting process).",
    )

    # Sparse (BM25)
    bm25_k1: float = Field(default=1.2, ge=0.0, le=10.0, description="BM25 term-frequency saturation (k1).")
    bm25_b: float = Field(default=0.75, ge=0.0, le=1.0, description="BM25 document-length normalisation (b).")
    language: str = Field(
        default="english",
        description="Snowball stemmer and stop-word language (english, german, french, …); 'none' disables both.",
    )
    stemming: bool = Field(default=True, description="Reduce words to their stem (Snowball) before indexing.")
    stop_words: bool = Field(default=True, description="Drop the language's stop words from documents and queries.")
    drop_question_words: bool = Field(
        default=True,
        description="Leave question words and filler ('how do I', 'can you tell me', 'please', @mentions) out "
        "of a query's ranking and match check (documents keep them); a query of nothing else keeps all its words.",
    )

    # Dense (optional)
    embedder: Literal["none", "openai", "local", "fastembed"] = Field(
        default="none",
        description="Dense embedder: none (BM25 only), openai (any OpenAI-compatible /v1/embeddings), "
        "local (all-MiniLM-L6-v2 int8 on this machine's CPU, or the ONNX model in embedding_model_path; "
        "extra 'local-embeddings'), fastembed (a fastembed ONNX model from embedding_model_path; extra 'fastembed').",
    )
    embedding_model: str = Field(
        default="text-embedding-3-small", description="Embedding model id (openai) or model name (fastembed)."
    )
    embedding_model_path: Path | None = Field(
        default=None,
        description="Local model directory (nothing is downloaded). local: model.onnx plus tokenizer.json or "
        "vocab.txt of a sentence-embedding model, default the packaged all-MiniLM-L6-v2; fastembed: its ONNX model.",
    )
    embedding_base_url: str | None = Field(
        default=None, description="Embeddings endpoint; default OPENAI_BASE_URL (the bot's)."
    )
    embedding_api_key: SecretStr | None = Field(default=None, description="Embeddings key; default OPENAI_API_KEY.")
    embedding_dimensions: int | None = Field(
        default=None, ge=1, le=16384, description="Vector size; None asks the model once and uses its size."
    )
    embedding_batch_size: int = Field(default=64, ge=1, le=2048, description="Texts per embeddings request.")
    embedding_concurrency: int = Field(default=4, ge=1, le=64, description="Embedding requests in flight at once.")
    embedding_retries: int = Field(default=3, ge=0, le=10, description="Retries of a failed embeddings request.")
    embedding_threads: int = Field(
        default=0,
        ge=0,
        le=64,
        description="CPU threads of each local model run (embedder=local; 0: onnxruntime's default, one per core).",
    )
    embedding_max_tokens: int = Field(
        default=256,
        ge=8,
        le=8192,
        description="Longest text the local model reads, in its own tokens; longer chunks are truncated "
        "(embedder=local; all-MiniLM-L6-v2 was trained up to 256).",
    )
    embedding_query_prefix: str = Field(
        default="", description="Put before each question by embedder=local (e5 models: 'query: ')."
    )
    embedding_passage_prefix: str = Field(
        default="", description="Put before each chunk by embedder=local (e5 models: 'passage: ')."
    )

    # Search
    fusion: Literal["dbsf", "rrf"] = Field(
        default="dbsf", description="How sparse and dense results are fused when both exist."
    )
    prefetch_limit: int = Field(
        default=20, ge=1, le=1000, description="Candidates per vector (sparse, dense) before fusion."
    )
    hnsw_ef: int = Field(
        default=40,
        ge=4,
        le=4096,
        description="Dense search breadth (HNSW ef; at least the candidate count). Higher: better recall, slower.",
    )
    min_term_coverage: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description="Share of the question's distinct terms the best passage must contain; below it the "
        "result is 'no good match' (unless the dense score says otherwise).",
    )
    min_dense_score: float = Field(
        default=0.5,
        ge=-1.0,
        le=1.0,
        description="Cosine similarity of the best dense hit that counts as a good match on its own.",
    )

    # Embedded store
    lock_wait_seconds: float = Field(
        default=30.0,
        ge=0.0,
        le=3600.0,
        description="How long `bothbot ingest` waits for another process to release the embedded store.",
    )

    @model_validator(mode="after")
    def _overlap_below_size(self) -> RetrievalConfig:
        if self.chunk_overlap >= self.chunk_tokens:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_tokens ({self.chunk_tokens})"
            )
        if self.embedder == "fastembed" and self.embedding_model_path is None:
            raise ValueError("embedder=fastembed needs embedding_model_path (a local model directory)")
        return self


@dataclass(frozen=True, slots=True)
class RetrievalEnvironment:
    """Everything retrieval needs from the deployment, resolved once by the bot's settings."""

    config: RetrievalConfig
    data_dir: Path
    qdrant_url: str | None = None
    qdrant_api_key: str | None = None
    openai_base_url: str | None = None
    openai_api_key: str | None = None
