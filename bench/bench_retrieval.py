"""Query latency of the retrieval engine: prints numbers, asserts nothing.

    python bench/bench_retrieval.py [--chunks 100000] [--dim 384] [--queries 2000]

1. Embedded store (qdrant-edge) with N chunks, sparse BM25 + dense (no model: synthetic unit
   vectors of --dim drawn around 1,000 cluster centres, as real embeddings cluster; a query is a
   noisy copy of some chunk's vector), optimised: filtered hybrid query (sparse + dense prefetch,
   DBSF, kb + scope filter) timed at the engine call itself (``EdgeShard.query_batch``) and
   through the async store API.
2. End to end sparse-only (tokenise + filtered BM25 search + passages) through
   ``RetrievalService.search`` on a BM25-only embedded store of the same chunks.
3. qdrant-client local mode (``AsyncQdrantClient(":memory:")``) with --local-chunks points, the
   same filtered hybrid query, for comparison.
Peak memory (max RSS) is printed after each phase.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import qdrant_edge as qe
from bench_ingest import synthetic_corpus  # sibling script (bench/ is on sys.path when run)
from qdrant_client import AsyncQdrantClient

from retrieval.api import SearchScope
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.factory import open_knowledge_base
from retrieval.prepare import PrepareSettings, prepare_batch
from retrieval.sparse import Bm25Encoder
from retrieval.store.edge import EdgeStore, _scope_filter
from retrieval.store.protocol import DENSE_NAME, SPARSE_NAME, StoredPoint, VectorStore
from retrieval.store.server import ServerStore

CHANNELS = [f"slack:C{i}" for i in range(50)]


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def report(name: str, ms: list[float]) -> None:
    print(
        f"  {name:<44} p50 {pct(ms, 0.5):7.3f} ms  p99 {pct(ms, 0.99):7.3f} ms  "
        f"mean {statistics.fmean(ms):7.3f} ms  (n={len(ms)})"
    )


class Vectors:
    """Clustered synthetic embeddings."""

    def __init__(self, dim: int, seed: int = 11) -> None:
        self.rng = np.random.default_rng(seed)
        self.dim = dim
        self.centres = self.rng.standard_normal((1000, dim)).astype(np.float32)

    def batch(self, n: int, noise: float = 0.6) -> np.ndarray:
        labels = self.rng.integers(0, len(self.centres), n)
        v = self.centres[labels] + noise * self.rng.standard_normal((n, self.dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def near(self, v: np.ndarray, noise: float = 0.5) -> list[float]:
        q = v + noise * self.rng.standard_normal(self.dim).astype(np.float32) / math.sqrt(self.dim) * 4
        return [float(x) for x in q / np.linalg.norm(q)]


async def fill(store: VectorStore, n: int, vectors: Vectors | None, seed: int = 3) -> tuple[list[str], np.ndarray]:
    """Write n synthetic chunks (public, or scoped to one of 50 channels); returns query texts drawn
    from the corpus and a sample of stored dense vectors to build queries near."""
    rng = random.Random(seed)
    docs = synthetic_corpus(n, 120)
    settings = PrepareSettings("english", True, True, 1.2, 0.75, 256, 32, "-")
    encoder = settings.encoder()
    sample = np.zeros((0, 1), dtype=np.float32)
    if vectors is not None:
        await store.ensure_dense(vectors.dim)
    for i in range(0, n, 2000):
        batch = prepare_batch(settings, docs[i : i + 2000], "bench", ("public",), {}, 150.0)
        dense = vectors.batch(len(batch.docs)) if vectors is not None else None
        if dense is not None and i == 0:
            sample = dense[:500]
        points = [
            StoredPoint(
                d.ids[0],
                d.sparse_vectors(encoder, 150.0)[0],
                d.payloads[0],
                [float(x) for x in dense[j]] if dense is not None else None,
            )
            for j, d in enumerate(batch.docs)
        ]
        await store.upsert(points)
    await store.optimize()
    texts = [" ".join(rng.sample(docs[rng.randrange(n)].text.rstrip(".").split(), 4)) for _ in range(500)]
    return texts, sample


async def edge_phase(args: argparse.Namespace, tmp: Path) -> None:
    print(f"embedded qdrant-edge, {args.chunks:,} chunks, dense dim {args.dim}, hybrid + filter")
    store = await EdgeStore.open(tmp / "hybrid", args.dim)
    started = time.perf_counter()
    vectors = Vectors(args.dim)
    queries, sample = await fill(store, args.chunks, vectors)
    print(f"  built + optimised in {time.perf_counter() - started:.1f} s; max RSS {rss_mb():,.0f} MB")
    encoder = Bm25Encoder()
    cfg = RetrievalConfig()
    pl, ef = cfg.prefetch_limit, max(cfg.hnsw_ef, cfg.prefetch_limit)
    print(f"  prefetch {pl} per vector, hnsw_ef {ef}, int8 scalar quantization (the defaults)")
    rng = random.Random(5)
    engine: list[float] = []
    engine_sparse: list[float] = []
    via_api: list[float] = []
    shard = store._shard
    for i in range(args.queries):
        text = queries[i % len(queries)]
        sparse = encoder.query(text)
        dense = vectors.near(sample[i % len(sample)])
        channel = rng.choice(CHANNELS)
        flt = _scope_filter(["bench"], channel)
        sq = qe.Query.Nearest(qe.SparseVector(sparse.indices, sparse.values), using=SPARSE_NAME)
        dq = qe.Query.Nearest(dense, using=DENSE_NAME)
        request = qe.QueryBatchRequest(
            [
                qe.QueryRequest(
                    limit=5,
                    prefetches=[
                        qe.Prefetch(limit=pl, query=sq, filter=flt),
                        qe.Prefetch(limit=pl, query=dq, filter=flt, params=qe.SearchParams(hnsw_ef=ef)),
                    ],
                    query=qe.Fusion.Dbsf(),  # type: ignore[arg-type]
                    with_payload=True,
                    with_vector=[DENSE_NAME],
                ),
            ]
        )
        t = time.perf_counter()
        shard.query_batch(request)
        engine.append((time.perf_counter() - t) * 1000)
        sparse_only = qe.QueryBatchRequest([qe.QueryRequest(limit=5, query=sq, filter=flt, with_payload=True)])
        t = time.perf_counter()
        shard.query_batch(sparse_only)
        engine_sparse.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        await store.search(
            sparse=sparse,
            dense=dense,
            kbs=["bench"],
            channel=channel,
            limit=5,
            prefetch_limit=pl,
            fusion="dbsf",
            hnsw_ef=ef,
        )
        via_api.append((time.perf_counter() - t) * 1000)
    report("engine: hybrid DBSF + filter + payload", engine[10:])
    report("engine: BM25 only + filter + payload", engine_sparse[10:])
    report("store.search (async, to_thread)", via_api[10:])
    await store.aclose()


async def sparse_phase(args: argparse.Namespace, tmp: Path) -> None:
    print(f"embedded qdrant-edge, {args.chunks:,} chunks, BM25 only, end to end")
    env = RetrievalEnvironment(RetrievalConfig(), tmp / "sparse")
    svc = await open_knowledge_base(env)
    queries, _ = await fill(svc.store, args.chunks, None)
    print(f"  max RSS {rss_mb():,.0f} MB (process also holds the previous phase's garbage)")
    rng = random.Random(9)
    e2e: list[float] = []
    for i in range(args.queries):
        scope = SearchScope(kbs=("bench",), channel=rng.choice(CHANNELS))
        t = time.perf_counter()
        await svc.search(queries[i % len(queries)], scope, limit=5)
        e2e.append((time.perf_counter() - t) * 1000)
    report("RetrievalService.search (tokenise + search)", e2e[10:])
    await svc.aclose()


SERVE_SCRIPT = """
import asyncio, sys, time
from pathlib import Path
from retrieval.api import SearchScope
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.factory import open_knowledge_base

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024

async def main():
    svc = await open_knowledge_base(RetrievalEnvironment(RetrievalConfig(), Path(sys.argv[1])))
    opened = status("VmRSS:")
    for i in range(1000):
        scope = SearchScope(kbs=("bench",), channel="slack:C1")
        await svc.search(f"w{i % 300} w{(i * 7) % 500} w{(i * 13) % 900}", scope)
    print(f"  serving process: RSS after open {opened:,.0f} MB, after 1,000 queries {status('VmRSS:'):,.0f} MB, "
          f"peak {status('VmHWM:'):,.0f} MB; {await svc.count():,} chunks")
    await svc.aclose()

asyncio.run(main())
"""


async def memory_phase(args: argparse.Namespace, tmp: Path) -> None:
    print(f"memory: a fresh process opens the {args.chunks:,}-chunk BM25-only store and answers queries")
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", SERVE_SCRIPT, str(tmp / "sparse"))
    await proc.wait()


async def local_phase(args: argparse.Namespace) -> None:
    print(f"qdrant-client local mode, {args.local_chunks:,} points, dense dim {args.dim}, hybrid + filter")
    store = await ServerStore.open(AsyncQdrantClient(location=":memory:"), args.dim)
    vectors = Vectors(args.dim)
    queries, sample = await fill(store, args.local_chunks, vectors)
    encoder = Bm25Encoder()
    rng = random.Random(5)
    times: list[float] = []
    for i in range(min(args.queries, 50)):
        t = time.perf_counter()
        await store.search(
            sparse=encoder.query(queries[i % len(queries)]),
            dense=vectors.near(sample[i % len(sample)]),
            kbs=["bench"],
            channel=rng.choice(CHANNELS),
            limit=5,
            prefetch_limit=20,
            fusion="dbsf",
            hnsw_ef=40,
        )
        times.append((time.perf_counter() - t) * 1000)
    report("store.search (local mode)", times[2:])
    await store.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=100_000)
    parser.add_argument("--local-chunks", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=2_000)
    parser.add_argument("--skip", action="append", default=[], choices=["edge", "sparse", "local"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if "edge" not in args.skip:
            await edge_phase(args, Path(tmp))
        if "sparse" not in args.skip:
            await sparse_phase(args, Path(tmp))
            await memory_phase(args, Path(tmp))
    if "local" not in args.skip:
        await local_phase(args)
    print(f"max RSS of this process: {rss_mb():,.0f} MB; current {current_rss_mb():,.0f} MB")


if __name__ == "__main__":
    asyncio.run(main())
