"""Ingest throughput, sparse only, embedded store (qdrant-edge): prints numbers, asserts nothing.

    python bench/bench_ingest.py [--chunks 100000] [--words 120]

Synthetic documents (Zipf-distributed vocabulary whose 33 most frequent words are the English stop
words, one chunk each) go through the full path:
chunking, BM25 analysis, payload + id hashing, upserts, and the index optimisation at the end.
A second run over the same documents measures the "nothing changed" path.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import tempfile
import time
from pathlib import Path

from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.documents import Document
from retrieval.factory import open_knowledge_base
from retrieval.stopwords import STOP_WORDS


def synthetic_corpus(n: int, words: int, seed: int = 7) -> list[Document]:
    rng = random.Random(seed)
    # Zipf-distributed words; as in real text, the most frequent ranks are stop words
    stop = sorted(STOP_WORDS["english"])
    vocab = stop + [f"w{i}" for i in range(50_000 - len(stop))]
    cum: list[float] = []
    total = 0.0
    for i in range(len(vocab)):
        total += 1.0 / (i + 1)
        cum.append(total)
    docs = []
    for i in range(n):
        text = " ".join(rng.choices(vocab, cum_weights=cum, k=words)) + "."
        scope = ("public",) if i % 3 else (f"slack:C{i % 50}",)
        docs.append(Document(f"doc-{i}", f"Document {i}", text, "text", origin="bench", scope=scope))
    return docs


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--words", type=int, default=120)
    parser.add_argument("--workers", type=int, default=1, help="ingest_workers (0: prepare in a thread)")
    args = parser.parse_args()
    docs = synthetic_corpus(args.chunks, args.words)
    with tempfile.TemporaryDirectory() as tmp:
        env = RetrievalEnvironment(RetrievalConfig(ingest_workers=args.workers), Path(tmp))
        svc = await open_knowledge_base(env)
        try:
            started = time.perf_counter()
            report = await svc.ingest_documents(docs, kb="bench")
            first = time.perf_counter() - started
            started = time.perf_counter()
            again = await svc.ingest_documents(docs, kb="bench")
            second = time.perf_counter() - started
        finally:
            await svc.aclose()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"documents: {len(docs)}, words/doc: {args.words}, ingest_workers: {args.workers}")
    print(f"first ingest:  {report.chunks_added} chunks in {first:.2f} s = {report.chunks_added / first:,.0f} chunks/s")
    print(f"second ingest: {again.chunks_unchanged} unchanged in {second:.2f} s = {len(docs) / second:,.0f} docs/s")
    print(f"peak RSS: {peak_mb:,.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
