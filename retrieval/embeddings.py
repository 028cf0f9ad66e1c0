"""Dense embedders behind one port: an OpenAI-compatible ``/v1/embeddings`` client, a local ONNX
sentence-embedding model (``retrieval.local_embedder``, extra ``local-embeddings``), or a local ONNX model
through fastembed (extra ``fastembed``). Local models are read from disk only, never downloaded."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.errors import RetrievalError

if TYPE_CHECKING:
    from openai import AsyncOpenAI

QUERY_TIMEOUT_SECONDS = 5.0


class EmbeddingError(RetrievalError):
    """The embedder could not be set up or did not answer."""


class Embedder(Protocol):
    """Turns texts into dense vectors of one fixed size."""

    name: str

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]: ...

    async def embed_query(self, text: str) -> list[float]: ...

    async def dimensions(self) -> int: ...

    async def aclose(self) -> None: ...


class OpenAIEmbedder:
    """``/v1/embeddings`` of any OpenAI-compatible endpoint: batched, a bounded number of requests
    in flight, failed requests retried by the SDK (429, 5xx, connection errors; with back-off)."""

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None,
        api_key: str | None,
        batch_size: int = 64,
        concurrency: int = 4,
        retries: int = 3,
        dimensions: int | None = None,
        timeout: float = 60.0,
    ) -> None:
        from openai import AsyncOpenAI

        self.name = f"openai:{model}"
        self.model = model
        self.batch_size = batch_size
        self._dimensions = dimensions
        self._ask_dimensions = dimensions
        self._limit = asyncio.Semaphore(concurrency)
        self._client = AsyncOpenAI(base_url=base_url, api_key=api_key or "unused", max_retries=retries, timeout=timeout)
        # a question waits on this one: fail fast and let search fall back to BM25
        self._query_client = self._client.with_options(timeout=min(timeout, QUERY_TIMEOUT_SECONDS), max_retries=0)

    async def _request(self, batch: Sequence[str], client: AsyncOpenAI | None = None) -> list[list[float]]:
        extra: dict[str, Any] = {}
        if self._ask_dimensions:
            extra["dimensions"] = self._ask_dimensions
        async with self._limit:
            try:
                response = await (client or self._client).embeddings.create(
                    model=self.model, input=list(batch), encoding_format="float", **extra
                )
            except Exception as exc:  # the SDK's error hierarchy; one message for the user
                raise EmbeddingError(f"embeddings request to model {self.model!r} failed: {exc}") from exc
        data = sorted(response.data, key=lambda d: d.index)
        if len(data) != len(batch):
            raise EmbeddingError(f"embeddings endpoint returned {len(data)} vectors for {len(batch)} texts")
        return [list(d.embedding) for d in data]

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        batches = [texts[i : i + self.batch_size] for i in range(0, len(texts), self.batch_size)]
        results = await asyncio.gather(*(self._request(b) for b in batches))
        vectors = [v for batch in results for v in batch]
        if vectors and self._dimensions is None:
            self._dimensions = len(vectors[0])
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        return (await self._request([text], self._query_client))[0]

    async def dimensions(self) -> int:
        if self._dimensions is None:
            self._dimensions = len(await self.embed_query("dimension probe"))
        return self._dimensions

    async def aclose(self) -> None:
        await self._client.close()


class FastEmbedEmbedder:
    """A local ONNX model via fastembed, read from ``model_path`` (nothing is downloaded).
    Inference is blocking CPU work and runs in a worker thread."""

    def __init__(self, model: str, model_path: Path, batch_size: int = 64) -> None:
        try:
            from fastembed import TextEmbedding
        except ImportError:
            raise EmbeddingError(
                "embedder=fastembed needs the optional extra: pip install 'bothbot[fastembed]'"
            ) from None
        if not model_path.is_dir():
            raise EmbeddingError(f"embedding_model_path {model_path} is not a directory holding the ONNX model")
        self.name = f"fastembed:{model}"
        self.batch_size = batch_size
        self._model: Any = TextEmbedding(model_name=model, specific_model_path=str(model_path), lazy_load=True)
        self._dimensions: int | None = None

    def _embed(self, texts: Sequence[str]) -> list[list[float]]:
        return [[float(x) for x in v] for v in self._model.embed(list(texts), batch_size=self.batch_size)]

    def _embed_query(self, text: str) -> list[float]:
        return [float(x) for x in next(iter(self._model.query_embed(text)))]

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        return await asyncio.to_thread(self._embed, texts)

    async def embed_query(self, text: str) -> list[float]:
        return await asyncio.to_thread(self._embed_query, text)

    async def dimensions(self) -> int:
        if self._dimensions is None:
            self._dimensions = len(await self.embed_query("dimension probe"))
        return self._dimensions

    async def aclose(self) -> None:
        return None


def make_embedder(env: RetrievalEnvironment, config: RetrievalConfig | None = None) -> Embedder | None:
    """The configured embedder, or None for BM25 only."""
    cfg = config or env.config
    if cfg.embedder == "openai":
        base_url = cfg.embedding_base_url or env.openai_base_url
        api_key = cfg.embedding_api_key.get_secret_value() if cfg.embedding_api_key else env.openai_api_key
        if base_url is None and api_key is None:
            raise EmbeddingError(
                "embedder=openai needs an endpoint: set OPENAI_API_KEY (api.openai.com) or "
                "BOTHBOT_RETRIEVAL__EMBEDDING_BASE_URL / OPENAI_BASE_URL for a compatible server"
            )
        return OpenAIEmbedder(
            cfg.embedding_model,
            base_url=base_url,
            api_key=api_key,
            batch_size=cfg.embedding_batch_size,
            concurrency=cfg.embedding_concurrency,
            retries=cfg.embedding_retries,
            dimensions=cfg.embedding_dimensions,
        )
    if cfg.embedder == "local":
        from retrieval.local_embedder import LocalEmbedder, LocalModelError

        try:
            return LocalEmbedder(
                cfg.embedding_model_path,
                batch_size=cfg.embedding_batch_size,
                max_tokens=cfg.embedding_max_tokens,
                threads=cfg.embedding_threads,
                query_prefix=cfg.embedding_query_prefix,
                passage_prefix=cfg.embedding_passage_prefix,
            )
        except LocalModelError as exc:
            raise EmbeddingError(str(exc)) from None
    if cfg.embedder == "fastembed":
        if cfg.embedding_model_path is None:
            raise EmbeddingError("embedder=fastembed needs embedding_model_path (a local model directory)")
        return FastEmbedEmbedder(cfg.embedding_model, cfg.embedding_model_path, cfg.embedding_batch_size)
    return None
