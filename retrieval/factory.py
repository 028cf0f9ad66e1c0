"""The retrieval service the bot opens once: search and inventory (``KnowledgeBase``) plus ingest.

Backend: the embedded qdrant-edge store under ``data_dir/qdrant`` when no ``QDRANT_URL`` is set,
else the Qdrant server at ``QDRANT_URL`` (``:memory:`` selects qdrant-client's local mode, for
tests). Only one process can open the embedded store; ``open_knowledge_base`` can wait a bounded
time for it and says why it is waiting.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path

from retrieval.api import PUBLIC_SCOPE, Passage, SearchResult, SearchScope
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.documents import Document, LoadFailure
from retrieval.embeddings import Embedder, make_embedder
from retrieval.errors import RetrievalError, StoreLockedError
from retrieval.ingest import Ingester, IngestReport
from retrieval.loaders import LoadOptions
from retrieval.search import Searcher, SearchMode, passage_from
from retrieval.sparse import Bm25Encoder
from retrieval.store.edge import EdgeStore
from retrieval.store.protocol import VectorStore

EDGE_DIRNAME = "qdrant"
_LOCK_POLL = 0.25


class RetrievalService:
    """``KnowledgeBase`` for the engine, with the ingest and admin operations beside it."""

    def __init__(
        self,
        store: VectorStore,
        config: RetrievalConfig,
        embedder: Embedder | None = None,
        location: str = "",
    ) -> None:
        self.store = store
        self.config = config
        self.embedder = embedder
        self.location = location
        self.encoder = Bm25Encoder(
            config.language,
            stemming=config.stemming,
            stop_words=config.stop_words,
            k1=config.bm25_k1,
            b=config.bm25_b,
        )
        self._searcher = Searcher(store, self.encoder, embedder, config)
        self._ingester = Ingester(store, self.encoder, embedder, config)

    async def search(self, query: str, scope: SearchScope, limit: int = 5, mode: SearchMode = "auto") -> SearchResult:
        return await self._searcher.search(query, scope, limit, mode)

    async def count(self, kbs: Sequence[str] | None = None) -> int:
        return await self.store.count(kbs)

    async def passages(
        self, kbs: Sequence[str], *, ids: Sequence[str] | None = None, sources: Sequence[str] | None = None
    ) -> list[Passage]:
        """Stored chunks as passages (score 0), by chunk id, by source, or every chunk when both are None.

        In document order within each source. No scope filter: the caller decides what may be shown.
        """
        hits = await self.store.chunks(kbs, ids=ids, sources=sources)
        hits.sort(key=lambda h: (str(h.payload.get("source", "")), int(h.payload.get("position", 0) or 0), h.id))
        return [passage_from(h.id, h.score, h.payload) for h in hits]

    async def list_kbs(self) -> list[str]:
        return sorted(await self.store.kb_counts())

    async def kb_counts(self) -> dict[str, int]:
        return await self.store.kb_counts()

    async def ingest_paths(
        self,
        paths: Sequence[Path],
        *,
        kb: str = "default",
        scope: tuple[str, ...] = (PUBLIC_SCOPE,),
        prune: bool = False,
        options: LoadOptions | None = None,
        progress: bool = False,
        on_document: Callable[[int], None] | None = None,
    ) -> IngestReport:
        """Load files/folders into a knowledge base; only changed documents cost work.

        ``on_document`` is told the number of documents read so far, after each one.
        """
        return await self._ingester.ingest_paths(
            paths, kb=kb, scope=scope, prune=prune, options=options, progress=progress, on_document=on_document
        )

    async def ingest_documents(
        self,
        documents: Iterable[Document],
        *,
        kb: str = "default",
        scope: tuple[str, ...] = (PUBLIC_SCOPE,),
        prune_origins: Sequence[str] | None = None,
        progress: bool = False,
    ) -> IngestReport:
        """Ingest already-built documents (e.g. evaluation corpora, records from an API)."""

        async def items() -> AsyncIterator[Document | LoadFailure]:
            for doc in documents:
                yield doc

        return await self._ingester.ingest(items(), kb=kb, scope=scope, prune_origins=prune_origins, progress=progress)

    async def delete_kb(self, kb: str) -> int:
        return await self.store.delete_kb(kb)

    async def aclose(self) -> None:
        try:
            await self.store.aclose()
        finally:
            if self.embedder is not None:
                await self.embedder.aclose()


async def open_knowledge_base(
    env: RetrievalEnvironment,
    *,
    lock_wait: float = 0.0,
    on_wait: Callable[[str], None] | None = None,
) -> RetrievalService:
    """Open the deployment's knowledge bases (creating an empty store when there is none).

    With the embedded store held by another process, retry for up to ``lock_wait`` seconds,
    telling ``on_wait`` once why; then raise ``StoreLockedError`` naming the fix.
    """
    embedder = make_embedder(env)
    dense_size = env.config.embedding_dimensions if embedder is not None else None
    try:
        if env.qdrant_url:
            store: VectorStore = await _open_server(env.qdrant_url, env.qdrant_api_key, dense_size)
            location = f"Qdrant at {env.qdrant_url}"
        else:
            path = env.data_dir / EDGE_DIRNAME
            store = await _open_edge(path, dense_size, lock_wait, on_wait)
            location = f"embedded Qdrant at {path}"
    except BaseException:
        if embedder is not None:
            await embedder.aclose()
        raise
    return RetrievalService(store, env.config, embedder, location)


async def _open_server(url: str, api_key: str | None, dense_size: int | None) -> VectorStore:
    # Imported here: qdrant-client takes about a second to import, and the embedded default never needs it.
    from qdrant_client import AsyncQdrantClient

    from retrieval.store.server import ServerStore

    if url == ":memory:":
        client = AsyncQdrantClient(location=":memory:")
    else:
        # no version check: it runs a blocking request in a thread and only warns
        client = AsyncQdrantClient(url=url, api_key=api_key, check_compatibility=False)
    try:
        return await ServerStore.open(client, dense_size)
    except Exception as exc:  # connection and HTTP errors of qdrant-client, told in one sentence
        await client.close()
        raise RetrievalError(
            f"Cannot use the Qdrant server at QDRANT_URL={url}: {exc}. Check that it is "
            "running and reachable (and QDRANT_API_KEY), or unset QDRANT_URL to use the embedded store."
        ) from exc


async def _open_edge(
    path: Path, dense_size: int | None, lock_wait: float, on_wait: Callable[[str], None] | None
) -> EdgeStore:
    started = time.monotonic()
    told = False
    while True:
        try:
            return await EdgeStore.open(path, dense_size)
        except StoreLockedError:
            waited = time.monotonic() - started
            if lock_wait <= 0:
                raise
            if on_wait is not None and not told:
                told = True
                on_wait(
                    f"The knowledge base at {path} is open in another bothbot process (a running bot or "
                    f"another ingest); waiting up to {lock_wait:g} s for it to close. To share it between "
                    "processes, set QDRANT_URL to a Qdrant server."
                )
            if waited >= lock_wait:
                raise StoreLockedError(path, waited) from None
            await asyncio.sleep(min(_LOCK_POLL, max(0.0, lock_wait - waited)))
