"""Cost of embedder=local (all-MiniLM-L6-v2 int8 on onnxruntime): prints numbers, asserts nothing.

    python bench/bench_local_embedder.py [--pubmedqa DIR] [--threads 0] [--queries 200] [--docs 256]

1. Load: first use (sha256 check of the 23 MB file, tokenizer, ONNX session).
2. One question, as the bot embeds it (``embed_query``, through its executor): p50/p99 in ms.
3. Documents (``embed_documents``, batched and length-sorted): chunks per second. With --pubmedqa the
   texts are PubMedQA questions and abstracts (read from the path given); else synthetic sentences.
4. A question while a document batch is being embedded (the bot answering during an ingest).
Needs the extra: pip install 'bothbot[local-embeddings]'.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import time
from pathlib import Path

from retrieval.local_embedder import LocalEmbedder


def _texts(pubmedqa: Path | None, docs: int, queries: int) -> tuple[list[str], list[str]]:
    if pubmedqa is not None:
        data = json.loads((pubmedqa / "ori_pqal.json").read_text(encoding="utf-8"))
        items = list(data.values())
        return [" ".join(i["CONTEXTS"]) for i in items[:docs]], [i["QUESTION"] for i in items[:queries]]
    rng = random.Random(7)
    words = ["cell", "protein", "risk", "patients", "trial", "dose", "effect", "study", "outcome", "model"]
    docs_out = [" ".join(rng.choices(words, k=rng.randint(60, 220))) for _ in range(docs)]
    return docs_out, [" ".join(rng.choices(words, k=rng.randint(5, 14))) + "?" for _ in range(queries)]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pubmedqa", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--docs", type=int, default=256)
    args = parser.parse_args()
    docs, queries = _texts(args.pubmedqa, args.docs, args.queries)
    embedder = LocalEmbedder(threads=args.threads)
    try:
        started = time.perf_counter()
        await embedder.dimensions()
        print(f"load + first query: {(time.perf_counter() - started) * 1000:.0f} ms ({embedder.name})")
        times = []
        for q in queries:
            t = time.perf_counter()
            await embedder.embed_query(q)
            times.append(time.perf_counter() - t)
        print(f"one question: p50 {_pct(times, 0.5):.2f} ms, p99 {_pct(times, 0.99):.2f} ms ({len(times)} questions)")
        t = time.perf_counter()
        await embedder.embed_documents(docs)
        elapsed = time.perf_counter() - t
        print(f"documents: {len(docs) / elapsed:.1f} texts/s ({len(docs)} texts, {elapsed:.1f} s, up to 256 tokens)")
        batch = asyncio.create_task(embedder.embed_documents(docs))
        during = []
        for q in queries[:50]:
            t = time.perf_counter()
            await embedder.embed_query(q)
            during.append(time.perf_counter() - t)
            if batch.done():
                break
        await batch
        print(f"one question during a document batch: p50 {statistics.median(during) * 1000:.2f} ms ({len(during)})")
    finally:
        await embedder.aclose()


if __name__ == "__main__":
    asyncio.run(main())
