"""The embedded engine's search pool size: CPU and latency of one filtered top-5 BM25 query (issue #13).

    python bench/bench_search_threads.py [--chunks 10000,100000] [--threads 1,2,4] [--queries 1000]
                                         [--gap-ms 2] [--data-root DIR]

bothbot opens its qdrant-edge store with one search thread (``retrieval.store.edge.SEARCH_THREADS``),
so a query runs on the calling thread. This prints what a query costs with 1, 2 or 4 threads, on
copies of the engine benchmark's store (``bench/workload.py``: N chunks of 120 words, built by
bothbot's ingest; the copies keep the original untouched): per query, the CPU of the whole process
(all threads: ``time.process_time``), that of the calling thread alone (``time.thread_time``), and
the latency p50 / p99. Queries are the workload's questions as bothbot encodes them, with the
bench channel's scope filter and the payload and sparse vector of each hit, as ``EdgeStore.search``
asks; --gap-ms of sleep between queries stands for the rest of an answer's work (a pool's threads
then go idle and wake again, as in the bot). Each thread count runs in a fresh process, in rounds
(1 2 4 1 2 4). Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# sibling scripts (bench/ is on sys.path when run)
import workload as wl
from bench_engine import int_list

SCRIPT = Path(__file__).resolve()


def measure(store_dir: Path, threads: int, queries: int, gap: float) -> dict[str, float]:
    """In this process: open the copy at ``store_dir`` with ``threads`` search threads, time the queries."""
    import qdrant_edge as qe

    from retrieval.factory import EDGE_DIRNAME
    from retrieval.query import QueryAnalyzer
    from retrieval.sparse import Bm25Encoder
    from retrieval.store.edge import _scope_filter, _sparse
    from retrieval.store.protocol import SPARSE_NAME

    store = wl.read_store(store_dir)
    sparse = {SPARSE_NAME: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)}
    shard = qe.EdgeShard.load(
        str(store_dir / EDGE_DIRNAME), qe.EdgeConfig(sparse_vectors=sparse, max_search_threads=threads)
    )
    analyzer = QueryAnalyzer(Bm25Encoder(), drop_filler=True)
    scope = _scope_filter(wl.SCOPE.kbs, wl.SCOPE.channel)
    requests = [
        qe.QueryRequest(
            limit=wl.TOP_K,
            query=qe.Query.Nearest(_sparse(analyzer.terms(q).sparse()), using=SPARSE_NAME),
            filter=scope,
            with_payload=True,
            with_vector=[SPARSE_NAME],
        )
        for q in store.questions
    ]
    for request in requests[:100]:  # warm up: pages read, pool started
        shard.query(request)
    latencies: list[float] = []
    cpu, own = time.process_time(), time.thread_time()
    for i in range(queries):
        started = time.perf_counter()
        shard.query(requests[i % len(requests)])
        latencies.append(time.perf_counter() - started)
        if gap:
            time.sleep(gap)
    cpu, own = time.process_time() - cpu, time.thread_time() - own
    shard.close()
    latencies.sort()
    return {
        "process_us": cpu / queries * 1e6,
        "thread_us": own / queries * 1e6,
        "p50_us": statistics.median(latencies) * 1e6,
        "p99_us": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] * 1e6,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int_list, default=[10_000, 100_000])
    p.add_argument("--threads", type=int_list, default=[1, 2, 4])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--gap-ms", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--data-root", type=Path, default=None, help="where the engine benchmark's stores are kept")
    p.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--child-threads", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        print(json.dumps(measure(args.child, args.child_threads, args.queries, args.gap_ms / 1000)), flush=True)
        return
    print("qdrant-edge search pool size (bench/bench_search_threads.py)")
    for line in wl.machine_lines():
        print(line)
    print(f"per query: filtered top-{wl.TOP_K} BM25 with payloads and sparse vectors; {args.queries} queries, "
          f"{args.gap_ms:g} ms between them; {args.rounds} rounds")
    with tempfile.TemporaryDirectory(prefix="bothbot-threads-") as tmp:
        root = args.data_root or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        print(f"{'chunks':>9} {'threads':>7} {'process CPU µs':>14} {'caller CPU µs':>13} {'p50 µs':>8} {'p99 µs':>8}"
              "  (medians over rounds)  load")
        for chunks in args.chunks:
            store = wl.prepare_store(root, chunks)
            rows: dict[int, list[dict[str, float]]] = {t: [] for t in args.threads}
            for _ in range(args.rounds):
                for threads in args.threads:
                    copy = Path(tmp) / f"copy-{chunks}-{threads}"
                    shutil.rmtree(copy, ignore_errors=True)
                    shutil.copytree(store.data_dir, copy)
                    out = subprocess.run(
                        [sys.executable, str(SCRIPT), "--child", str(copy), "--child-threads", str(threads),
                         "--queries", str(args.queries), "--gap-ms", str(args.gap_ms)],
                        capture_output=True, text=True, check=True, env=wl.child_env(),
                    )  # fmt: skip
                    rows[threads].append(json.loads(out.stdout.splitlines()[-1]))
                    shutil.rmtree(copy, ignore_errors=True)
            for threads, runs in rows.items():
                med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                print(f"{chunks:>9,} {threads:>7} {med['process_us']:>14.1f} {med['thread_us']:>13.1f} "
                      f"{med['p50_us']:>8.1f} {med['p99_us']:>8.1f}  {wl.load_average()}", flush=True)


if __name__ == "__main__":
    main()
