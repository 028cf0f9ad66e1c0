"""Vector stores: one protocol, an embedded backend (qdrant-edge) and a server backend (qdrant-client)."""

from retrieval.store.protocol import ChunkState, Hit, SearchHits, StoredPoint, VectorStore

__all__ = ["ChunkState", "Hit", "SearchHits", "StoredPoint", "VectorStore"]
