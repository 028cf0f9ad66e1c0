"""Retrieval: loaders, chunking, sparse/dense vectors, Qdrant stores, ingest, search, evaluation."""
