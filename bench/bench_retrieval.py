"""Hybrid upsert rate and query latency of the retrieval engine: prints numbers, asserts nothing.

    python bench/bench_retrieval.py --chunks 10000,100000,1000000 [--dim 384] [--queries 2000] [--titles N]

(``--titles N``: see ``bench/bench_ingest.py``.)

Each size runs in a fresh process (a comma-separated list runs them one after the other; one size
runs in this process), with these phases, each printing its wall time, CPU time, peak RSS and the
load average:

1. build: an embedded store (qdrant-edge) of N chunks, BM25 sparse + dense, written at the store
   level (``EdgeStore.upsert``, 512 points a call, as ingest writes) and optimised. The dense
   vectors are synthetic (no model: unit vectors of --dim drawn around 1,000 cluster centres, as
   real embeddings cluster): a real embedding model on this machine's CPU cores makes about 22
   chunks a second per core (``bench/bench_local_embedder.py``), so a million chunks would take
   hours. Printed: upsert rate, optimise time, the data directory's size on disk.
2. query: filtered hybrid query (sparse + dense prefetch, DBSF fusion, kb + scope filter) timed at
   the engine call itself (``EdgeShard.query``) and through the async store API
   (``await EdgeStore.search``, as the store does it now); BM25 only at the engine for reference.
   p50 and p99. A query is four words of a stored chunk and a noisy copy of some stored chunk's
   vector.
3. hop (sizes up to --hop-max, 100,000 by default): the cost of a thread-pool hop. The work of
   ``EdgeStore.search`` (build the request, call the engine, read the hits) with the engine call
   made through ``asyncio.to_thread`` and made directly on the event-loop thread, whichever of
   the two the store does now, plus ``EdgeStore.search`` itself; the same filtered queries,
   interleaved: p50, p99 and CPU per query; throughput with several queries in flight; and
   whether qdrant-edge releases the GIL while a query runs (a pure-Python counter in the main
   thread, with a second thread idle, running queries, running pure Python (holds the GIL) or
   hashing (releases it)).
4. e2e: end-to-end BM25 search (tokenise + filtered BM25 search + passages) through
   ``RetrievalService.search`` over the same store, no embedder configured (BM25-only bots).
   ``bench/bench_ingest.py`` measures the same on a BM25-only store written by the real ingest
   path, from a fresh serving process.

Then, once: qdrant-client local mode (``AsyncQdrantClient(":memory:")``) with --local-chunks
points, the same filtered hybrid query, for comparison (``--skip local`` leaves it out).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import math
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

# sibling script (bench/ is on sys.path when run)
from bench_ingest import (
    Phase,
    iter_corpus,
    latency_line,
    load,
    machine_header,
    parse_sizes,
    pct,
    run_sizes,
    size_line,
)
from qdrant_client import AsyncQdrantClient

from retrieval.api import SearchScope
from retrieval.config import RetrievalConfig
from retrieval.factory import RetrievalService
from retrieval.prepare import PrepareSettings, prepare_batch
from retrieval.sparse import Bm25Encoder, SparseVec
from retrieval.store.edge import EdgeStore, _scope_filter, _sparse
from retrieval.store.protocol import DENSE_NAME, SPARSE_NAME, SearchHits, StoredPoint, VectorStore, hits_from
from retrieval.store.server import ServerStore

CHANNELS = [f"slack:C{i}" for i in range(50)]
UPSERT_BATCH = 512  # points per upsert, as retrieval.ingest writes


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


class Fill:
    """What filling a store took, and what queries need from it."""

    def __init__(self) -> None:
        self.prepare_s = 0.0  # corpus, BM25 analysis, synthetic vectors, points: not the store's work
        self.upsert_s = 0.0
        self.optimize_s = 0.0
        self.points = 0
        self.queries: list[str] = []
        self.sample = np.zeros((0, 1), dtype=np.float32)


async def fill(store: VectorStore, n: int, vectors: Vectors | None, seed: int = 3, titles: int = 0) -> Fill:
    """Write n synthetic chunks (public, or scoped to one of 50 channels) and optimise; time the
    store's part. Query texts are four words of chunks drawn from the whole corpus."""
    rng = random.Random(seed)
    wanted = [rng.randrange(n) for _ in range(500)]
    need = set(wanted)
    texts: dict[int, str] = {}
    settings = PrepareSettings("english", True, True, 1.2, 0.75, 256, 32, "-")
    encoder = settings.encoder()
    out = Fill()
    if vectors is not None:
        await store.ensure_dense(vectors.dim)
    start = 0
    t = time.perf_counter()
    for docs in iter_corpus(n, 120, titles=titles):
        for i, doc in enumerate(docs, start):
            if i in need:
                texts[i] = doc.text
        start += len(docs)
        batch = prepare_batch(settings, docs, "bench", ("public",), {}, 150.0)
        dense = vectors.batch(len(batch.docs)) if vectors is not None else None
        if dense is not None and not len(out.sample):
            out.sample = dense[:500]
        points = [
            StoredPoint(
                d.ids[0],
                d.sparse_vectors(encoder, 150.0)[0],
                d.payloads[0],
                dense[j].tolist() if dense is not None else None,
            )
            for j, d in enumerate(batch.docs)
        ]
        for k in range(0, len(points), UPSERT_BATCH):
            u = time.perf_counter()
            out.prepare_s += u - t
            await store.upsert(points[k : k + UPSERT_BATCH])
            t = time.perf_counter()
            out.upsert_s += t - u
            out.points += len(points[k : k + UPSERT_BATCH])
    out.prepare_s += time.perf_counter() - t
    t = time.perf_counter()
    await store.optimize()
    out.optimize_s = time.perf_counter() - t
    out.queries = [" ".join(rng.sample(texts[i].rstrip(".").split(), 4)) for i in wanted]
    return out


class Workload:
    """The same queries for every variant: texts, BM25 vectors, dense vectors, channels."""

    def __init__(self, queries: list[str], sample: np.ndarray, vectors: Vectors, count: int) -> None:
        encoder = Bm25Encoder()
        rng = random.Random(5)
        self.sparse: list[SparseVec] = []
        self.dense: list[list[float]] = []
        self.channels: list[str] = []
        for i in range(count):
            self.sparse.append(encoder.query(queries[i % len(queries)]))
            self.dense.append(vectors.near(sample[i % len(sample)]))
            self.channels.append(rng.choice(CHANNELS))
        cfg = RetrievalConfig()
        self.prefetch = cfg.prefetch_limit
        self.ef = max(cfg.hnsw_ef, cfg.prefetch_limit)

    def __len__(self) -> int:
        return len(self.sparse)

    def request(self, i: int, hybrid: bool = True) -> qe.QueryRequest:
        """What ``EdgeStore.search`` sends the engine for query i."""
        flt = _scope_filter(("bench",), self.channels[i])
        sq = qe.Query.Nearest(_sparse(self.sparse[i]), using=SPARSE_NAME)
        if not hybrid:
            return qe.QueryRequest(limit=5, query=sq, filter=flt, with_payload=True)
        dq = qe.Query.Nearest(self.dense[i], using=DENSE_NAME)
        return qe.QueryRequest(
            limit=5,
            prefetches=[
                qe.Prefetch(limit=self.prefetch, query=sq, filter=flt),
                qe.Prefetch(limit=self.prefetch, query=dq, filter=flt, params=qe.SearchParams(hnsw_ef=self.ef)),
            ],
            query=qe.Fusion.Dbsf(),  # type: ignore[arg-type]
            with_payload=True,
            with_vector=[DENSE_NAME],
        )

    async def hop_search(self, store: EdgeStore, i: int, hybrid: bool, hop: bool) -> SearchHits:
        """``EdgeStore.search``'s work for query i, the engine called through ``asyncio.to_thread``
        (``hop``) or on this (the event loop's) thread."""
        request = self.request(i, hybrid)
        if hop:
            points = await asyncio.to_thread(store._shard.query, request)
        else:
            points = store._shard.query(request)
        dense = self.dense[i] if hybrid else None
        return hits_from(points, dense, fused=hybrid, dense_name=DENSE_NAME)

    async def search(self, store: EdgeStore, i: int, hybrid: bool = True) -> None:
        await store.search(
            sparse=self.sparse[i],
            dense=self.dense[i] if hybrid else None,
            kbs=["bench"],
            channel=self.channels[i],
            limit=5,
            prefetch_limit=self.prefetch,
            fusion="dbsf",
            hnsw_ef=self.ef,
        )


async def build_phase(args: argparse.Namespace, n: int, path: Path) -> tuple[EdgeStore, Fill, Vectors]:
    titled = f"titles numbered modulo {args.titles:,}" if args.titles else "unique titles"
    print(
        f"  build: {n:,} chunks ({titled}), BM25 + {args.dim}-d dense (synthetic vectors, no model), store level",
        flush=True,
    )
    phase = Phase("build")
    store = await EdgeStore.open(path, args.dim)
    vectors = Vectors(args.dim)
    f = await fill(store, n, vectors, titles=args.titles)
    print(
        f"  hybrid upsert: {f.points:,} points in {f.upsert_s:.2f} s = {f.points / f.upsert_s:,.0f} points/s "
        f"({UPSERT_BATCH} a call); optimise {f.optimize_s:.2f} s; upsert + optimise "
        f"{f.points / (f.upsert_s + f.optimize_s):,.0f} points/s"
    )
    print(f"  (preparing them, not counted: corpus + BM25 analysis + vectors + points, {f.prepare_s:.1f} s)")
    print(f"  data dir after optimise: {size_line(path, n)}")
    print(phase.line(), flush=True)
    return store, f, vectors


async def query_phase(args: argparse.Namespace, store: EdgeStore, work: Workload) -> None:
    cfg = RetrievalConfig()
    print(
        f"  query: limit 5, prefetch {work.prefetch} per vector, hnsw_ef {work.ef}, fusion DBSF, kb + scope filter, "
        f"int8 scalar quantization (the defaults; RetrievalConfig.fusion={cfg.fusion})",
        flush=True,
    )
    phase = Phase("query")
    engine: list[float] = []
    engine_sparse: list[float] = []
    via_api: list[float] = []
    shard = store._shard
    for i in range(len(work)):
        request, sparse_only = work.request(i), work.request(i, hybrid=False)
        t = time.perf_counter()
        shard.query(request)
        engine.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        shard.query(sparse_only)
        engine_sparse.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        await work.search(store, i)
        via_api.append((time.perf_counter() - t) * 1000)
    print(latency_line("engine: hybrid DBSF + filter + payload", engine[10:]))
    print(latency_line("store.search, hybrid (as the store is now)", via_api[10:]))
    print(latency_line("engine: BM25 only + filter + payload", engine_sparse[10:]))
    print(phase.line(), flush=True)


HOP_VARIANTS = {
    "to_thread": "engine via asyncio.to_thread",
    "direct": "engine on the loop thread",
    "store": "await store.search (as now)",
}


async def hop_latency(store: EdgeStore, work: Workload, hybrid: bool) -> None:
    """The variants take turns query by query, in a rotating order (so load drift hits all alike)."""
    names = list(HOP_VARIANTS)
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for i in range(len(work)):
        for name in names[i % 3 :] + names[: i % 3]:
            c, t = time.process_time(), time.perf_counter()
            if name == "store":
                await work.search(store, i, hybrid)
            else:
                await work.hop_search(store, i, hybrid, hop=name == "to_thread")
            wall[name].append((time.perf_counter() - t) * 1000)
            cpu[name].append((time.process_time() - c) * 1000)
    kind = "hybrid" if hybrid else "BM25  "
    for name, label in HOP_VARIANTS.items():
        print(latency_line(f"{kind} {label}", wall[name][10:], cpu[name][10:]))
    d50 = pct(wall["to_thread"][10:], 0.5) - pct(wall["direct"][10:], 0.5)
    d99 = pct(wall["to_thread"][10:], 0.99) - pct(wall["direct"][10:], 0.99)
    dcpu = statistics.fmean(cpu["to_thread"][10:]) - statistics.fmean(cpu["direct"][10:])
    print(
        f"    hop cost ({kind.strip()}, to_thread - direct): p50 {d50 * 1000:+.0f} µs, p99 {d99 * 1000:+.0f} µs, "
        f"CPU/query {dcpu * 1000:+.0f} µs"
    )


async def hop_throughput(store: EdgeStore, work: Workload, in_flight: int, rounds: int) -> None:
    """Queries a second with ``in_flight`` coroutines asking at once (a bot answering several people)."""
    rates: dict[str, list[float]] = {"to_thread": [], "direct": []}
    cpus: dict[str, list[float]] = {"to_thread": [], "direct": []}
    for r in range(rounds):
        for name in ("to_thread", "direct") if r % 2 else ("direct", "to_thread"):
            todo = iter(range(len(work)))

            async def worker(hop: bool = name == "to_thread", todo: Any = todo) -> None:
                for i in todo:
                    await work.hop_search(store, i, True, hop)

            c, t = time.process_time(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(in_flight)))
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            rates[name].append(len(work) / wall)
            cpus[name].append(cpu / wall)
    for name in ("to_thread", "direct"):
        print(
            f"    {in_flight} in flight, hybrid, {name:<9}: median {statistics.median(rates[name]):6,.0f} queries/s "
            f"(rounds: {', '.join(f'{x:,.0f}' for x in rates[name])}), process CPU "
            f"{statistics.median(cpus[name]) * 100:4.0f} % of one core"
        )


def _count_for(seconds: float) -> tuple[float, list[float]]:
    """Pure-Python work on this (the main) thread: increments a second, and its stalls over 1 ms (seconds)."""
    n = 0
    started = last = time.perf_counter()
    end = started + seconds
    stalls: list[float] = []
    while True:
        for _ in range(256):
            n += 1
        now = time.perf_counter()
        if now - last > 0.001:
            stalls.append(now - last)
        last = now
        if now >= end:
            return n / (now - started), stalls


class GilRound:
    def __init__(self, rate: float, stalls: list[float], calls: int, caller_cpu: float, busy: float) -> None:
        self.rate = rate  # main-thread increments a second
        self.stalls = stalls
        self.max_stall = max(stalls, default=0.0)
        self.stalled = sum(stalls)
        self.calls = calls  # calls the second thread made in the window
        self.caller_cpu = caller_cpu  # CPU seconds of the second thread itself
        self.busy = busy  # seconds the second thread spent inside those calls


def _gil_round(mode: str, shard: qe.EdgeShard, requests: list[Any], seconds: float) -> GilRound:
    stop = threading.Event()
    done = [0, 0.0, 0.0]  # calls, thread CPU seconds, seconds inside the calls
    buf = b"x" * (1 << 20)

    def background() -> None:
        c = time.thread_time()
        k, busy = 0, 0.0
        while not stop.is_set():
            t = time.perf_counter()
            if mode == "query":
                shard.query(requests[k % len(requests)])
            elif mode == "long":
                shard.query_batch(requests[k % len(requests)])
            elif mode == "python":
                x = 0
                for j in range(10_000):
                    x += j
            elif mode == "sha256":
                hashlib.sha256(buf).digest()
            busy += time.perf_counter() - t
            k += 1
        done[0], done[1], done[2] = k, time.thread_time() - c, busy

    thread = threading.Thread(target=background) if mode != "none" else None
    if thread is not None:
        thread.start()
        time.sleep(0.05)
    rate, stalls = _count_for(seconds)
    stop.set()
    if thread is not None:
        thread.join()
    return GilRound(rate, stalls, int(done[0]), done[1], done[2])


def gil_test(store: EdgeStore, work: Workload, seconds: float, rounds: int) -> None:
    """Does the thread that calls the engine let other Python threads run while the engine works?

    A pure-Python counter on the main thread, while a second thread is idle, runs the hybrid
    queries, runs long calls (batches of exact dense searches, 100 hits, no payload, about 50 ms a
    call: almost all of it the engine's work, little converting its answer), runs pure Python
    (holds the GIL) or hashes 1 MiB buffers (``hashlib`` releases the GIL). If the engine held the
    GIL, the counter stops for the whole of each long call; if it released it, only for the
    switches (a few ms at most).
    """
    requests = [work.request(i) for i in range(min(len(work), 500))]
    exact = [
        qe.QueryRequest(
            limit=100,
            query=qe.Query.Nearest(work.dense[i], using=DENSE_NAME),
            params=qe.SearchParams(exact=True, quantization=qe.QuantizationSearchParams(ignore=True)),
            with_payload=False,
        )
        for i in range(min(len(work), 64))
    ]
    per_request = 1.0
    for _ in range(3):  # the first reads the vectors from disk
        t = time.perf_counter()
        store._shard.query_batch(qe.QueryBatchRequest(exact[:4]))
        per_request = min(per_request, (time.perf_counter() - t) / 4)
    k = max(1, min(len(exact), math.ceil(0.05 / per_request)))  # calls of about 50 ms
    long_requests = [qe.QueryBatchRequest(exact[j : j + k]) for j in range(0, len(exact) - k + 1, k)] or [
        qe.QueryBatchRequest(exact)
    ]
    modes = {
        "none": "second thread idle",
        "query": "second thread: hybrid queries (as served)",
        "long": f"second thread: batches of {k} exact dense queries",
        "python": "second thread: pure Python (holds the GIL)",
        "sha256": "second thread: sha256 of 1 MiB (releases it)",
    }
    results: dict[str, list[GilRound]] = {m: [] for m in modes}
    for _ in range(rounds):
        for mode in modes:
            results[mode].append(_gil_round(mode, store._shard, long_requests if mode == "long" else requests, seconds))
    base = statistics.median(r.rate for r in results["none"])
    ratio = {m: statistics.median(r.rate for r in rs) / base for m, rs in results.items()}
    print(
        f"  GIL: main thread counts in pure Python for {seconds:g} s while a second thread works "
        f"({rounds} rounds, median; switch interval {sys.getswitchinterval() * 1000:g} ms; load {load()}):"
    )
    for mode, label in modes.items():
        rs = results[mode]
        line = (
            f"    {label:<48} {statistics.median(r.rate for r in rs) / 1e6:6.2f} M incr/s = "
            f"{ratio[mode] * 100:4.0f} %; "
            f"main stalled {statistics.median(r.stalled for r in rs) / seconds * 100:3.0f} % of the time, "
            f"longest stall {max(r.max_stall for r in rs) * 1000:5.1f} ms"
        )
        calls = sum(r.calls for r in rs)
        if mode in ("query", "long") and calls:
            line += (
                f"; {calls / (seconds * rounds):,.0f} calls/s of {sum(r.busy for r in rs) / calls * 1000:.2f} ms, "
                f"calling thread's own CPU {sum(r.caller_cpu for r in rs) / calls * 1000:.2f} ms/call"
            )
        print(line)
    long_call = sum(r.busy for r in results["long"]) / max(1, sum(r.calls for r in results["long"]))

    def typical_stall(mode: str) -> float:
        return statistics.median([x for r in results[mode] for x in r.stalls] or [0.0])

    stall_long, stall_free = typical_stall("long"), typical_stall("sha256")
    print(
        f"    median stall of the main thread: {stall_long * 1000:.1f} ms during the {long_call * 1000:.1f} ms "
        f"engine calls, {stall_free * 1000:.1f} ms beside the hashing thread (GIL released), "
        f"{typical_stall('python') * 1000:.1f} ms beside pure Python (switch interval)"
    )
    held, released = ratio["python"], ratio["sha256"]
    if long_call <= 2 * sys.getswitchinterval():
        verdict = "inconclusive: the long calls are too short to tell"
    elif stall_long >= 0.5 * long_call and stall_long > 2 * max(stall_free, sys.getswitchinterval()):
        verdict = (
            "qdrant-edge HOLDS the GIL for the whole call: the main thread stops for as long as each engine "
            "call lasts (whether the engine's pool or the calling thread searches, the caller keeps the GIL)"
        )
    elif stall_long <= 2 * stall_free and ratio["long"] - held > (released - held) / 2:
        verdict = "qdrant-edge RELEASES the GIL while the engine works (the main thread keeps running)"
    else:
        verdict = "unclear (the machine may be too busy to tell): compare the lines above"
    print(f"    => {verdict}", flush=True)


async def hop_phase(args: argparse.Namespace, store: EdgeStore, work: Workload) -> None:
    print(
        "  hop: EdgeStore.search's work with the engine called through asyncio.to_thread vs. on the event-loop "
        f"thread, and store.search as it is now; same queries, interleaved; CPU/query = process CPU (all "
        f"threads) / query; load {load()}",
        flush=True,
    )
    phase = Phase("hop")
    await hop_latency(store, work, hybrid=True)
    await hop_latency(store, work, hybrid=False)
    await hop_throughput(store, work, args.in_flight, args.throughput_rounds)
    gil_test(store, work, args.gil_seconds, args.gil_rounds)
    print(phase.line(), flush=True)


async def e2e_phase(args: argparse.Namespace, store: EdgeStore, f: Fill, n: int) -> None:
    print(f"  e2e: RetrievalService.search over the {n:,} chunks, no embedder (BM25 only), kb + scope filter")
    phase = Phase("e2e")
    svc = RetrievalService(store, RetrievalConfig())
    rng = random.Random(9)
    ms: list[float] = []
    for i in range(args.queries):
        scope = SearchScope(kbs=("bench",), channel=rng.choice(CHANNELS))
        t = time.perf_counter()
        await svc.search(f.queries[i % len(f.queries)], scope, limit=5)
        ms.append((time.perf_counter() - t) * 1000)
    print(latency_line("RetrievalService.search (tokenise + search)", ms[10:]))
    print(phase.line(), flush=True)


async def run_one(args: argparse.Namespace, n: int) -> None:
    print(f"== {n:,} chunks: bench_retrieval (embedded qdrant-edge, hybrid + filter), load {load()}", flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-retrieval-") as tmp:
        path = Path(tmp) / "hybrid"
        store, f, vectors = await build_phase(args, n, path)
        try:
            work = Workload(f.queries, f.sample, vectors, args.queries)
            if "query" not in args.skip:
                await query_phase(args, store, work)
            if "hop" not in args.skip and n <= args.hop_max:
                await hop_phase(args, store, work)
            if "e2e" not in args.skip:
                await e2e_phase(args, store, f, n)
        finally:
            await store.aclose()
        print(f"  data dir after close: {size_line(path, n)}", flush=True)


async def local_phase(args: argparse.Namespace) -> None:
    print(f"qdrant-client local mode, {args.local_chunks:,} points, dense dim {args.dim}, hybrid + filter")
    phase = Phase("local")
    store = await ServerStore.open(AsyncQdrantClient(location=":memory:"), args.dim)
    vectors = Vectors(args.dim)
    f = await fill(store, args.local_chunks, vectors)
    encoder = Bm25Encoder()
    rng = random.Random(5)
    times: list[float] = []
    for i in range(min(args.queries, 50)):
        t = time.perf_counter()
        await store.search(
            sparse=encoder.query(f.queries[i % len(f.queries)]),
            dense=vectors.near(f.sample[i % len(f.sample)]),
            kbs=["bench"],
            channel=rng.choice(CHANNELS),
            limit=5,
            prefetch_limit=20,
            fusion="dbsf",
            hnsw_ef=40,
        )
        times.append((time.perf_counter() - t) * 1000)
    print(latency_line("store.search (local mode)", times[2:]))
    await store.aclose()
    print(phase.line(), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=parse_sizes, default=[100_000], help="sizes, e.g. 10000,100000,1000000")
    parser.add_argument("--local-chunks", type=int, default=10_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=2_000, help="queries per measurement")
    parser.add_argument("--hop-max", type=int, default=100_000, help="largest size that runs the hop phase")
    parser.add_argument("--in-flight", type=int, default=4, help="concurrent queries in the hop throughput test")
    parser.add_argument("--throughput-rounds", type=int, default=3, help="rounds of the in-flight test")
    parser.add_argument("--gil-seconds", type=float, default=1.5, help="length of one GIL-test window")
    parser.add_argument("--gil-rounds", type=int, default=3)
    parser.add_argument(
        "--skip", action="append", default=[], choices=["query", "hop", "e2e", "local"], help="leave a phase out"
    )
    parser.add_argument(
        "--titles", type=int, default=0, help="number the documents' titles modulo this (default 0: unique titles)"
    )
    parser.add_argument("--dir", default=None, help="where the data directories go (default: the temp dir)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if len(args.chunks) > 1:
        child_args = [
            *("--dim", str(args.dim), "--queries", str(args.queries), "--hop-max", str(args.hop_max)),
            *("--in-flight", str(args.in_flight), "--gil-seconds", str(args.gil_seconds)),
            *("--gil-rounds", str(args.gil_rounds), "--throughput-rounds", str(args.throughput_rounds)),
            *("--titles", str(args.titles), "--skip", "local"),
            *(arg for skip in args.skip for arg in ("--skip", skip) if skip != "local"),
            *(["--dir", args.dir] if args.dir else []),
        ]
        run_sizes(__file__, args.chunks, child_args, args.dir)
    else:
        if not args.child:
            print(machine_header(args.dir), flush=True)
        asyncio.run(run_one(args, args.chunks[0]))
    if "local" not in args.skip:
        asyncio.run(local_phase(args))


if __name__ == "__main__":
    main()
