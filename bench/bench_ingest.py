"""Ingest throughput, sparse only, embedded store (qdrant-edge): prints numbers, asserts nothing.

    python bench/bench_ingest.py --chunks 10000,100000,1000000 [--words 120] [--workers 1] [--titles N]

Titles are unique ("Document i"), so a million documents bring over 500,000 distinct words, more
than the BM25 analyser's word cache holds (it is cleared and refilled; a bug, fixed, once lost
words when that happened part way through a document). ``--titles N`` numbers them modulo N.

Each size runs in a fresh process (a comma-separated list runs them one after the other; one size
runs in this process). Synthetic documents (Zipf-distributed vocabulary whose 33 most frequent
words are the English stop words, one chunk each) go through bothbot's real ingest path,
``RetrievalService.ingest_documents``: chunking, BM25 analysis (in the worker process, as
configured), payload + id hashing, upserts, and the index optimisation at the end (timed apart as
well). A second run over the same documents measures the "nothing changed" path. Then a fresh
process opens the store, as a serving bot would, and answers BM25 questions end to end through
``RetrievalService.search`` (tokenise + filtered search + passages): latency and its memory.
Printed per size: chunks/s, peak RSS per phase (this process, and the ingest worker process),
the data directory's size on disk, and the load average.

The store-level upsert rate of hybrid points (BM25 + dense vectors) is printed by
``bench/bench_retrieval.py``, which builds that store.

The helpers here (machine description, per-phase peak memory, sizes on disk, the corpus) are
shared with ``bench_retrieval.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import numpy as np

from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.documents import Document
from retrieval.factory import EDGE_DIRNAME, open_knowledge_base
from retrieval.stopwords import STOP_WORDS

# --- shared helpers (bench_retrieval.py imports these) ------------------------------------------


def parse_sizes(text: str) -> list[int]:
    """``10000,100000,1e6`` or ``10k,100k,1m`` -> [10000, 100000, 1000000]."""
    out = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        if not part:
            continue
        scale = {"k": 1_000, "m": 1_000_000}.get(part[-1], 1)
        out.append(int(float(part[:-1] if scale > 1 else part) * scale))
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"--chunks wants positive numbers separated by commas, not {text!r}")
    return out


def _proc_status(key: str) -> float:
    """A ``/proc/self/status`` memory line in MB (0 where there is none: not Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def current_rss_mb() -> float:
    return _proc_status("VmRSS:")


def children_peak_mb() -> float:
    """Largest peak RSS among the child processes waited for so far (e.g. the ingest worker)."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class Phase:
    """Wall time, CPU time, peak RSS and load average of one phase of a benchmark.

    The peak is this process' ``VmHWM``, reset at the start of the phase (``/proc/self/clear_refs``,
    Linux); where it cannot be reset, the process' peak so far, said so.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.reset = False
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.reset = True
        except OSError:
            pass
        self.rss_start = current_rss_mb()
        self.started = time.perf_counter()
        self.cpu_started = time.process_time()

    def peak_mb(self) -> float:
        return _proc_status("VmHWM:") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def line(self) -> str:
        wall = time.perf_counter() - self.started
        cpu = time.process_time() - self.cpu_started
        peak = self.peak_mb()
        how = "peak RSS" if self.reset else "peak RSS of the process so far (could not reset)"
        return (
            f"  [{self.name}] {wall:.1f} s wall, {cpu:.1f} s CPU (this process); {how} {peak:,.0f} MB "
            f"(RSS at start {self.rss_start:,.0f} MB, now {current_rss_mb():,.0f} MB); load {load()}"
        )


def load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def dir_size(path: Path) -> tuple[int, int, int]:
    """(bytes allocated on disk, apparent bytes, files) under ``path``."""
    disk = apparent = files = 0
    stack = [path]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    disk += st.st_blocks * 512
                    apparent += st.st_size
                    files += 1
            except OSError:
                continue
    return disk, apparent, files


def size_line(path: Path, n: int) -> str:
    disk, apparent, files = dir_size(path)
    return (
        f"{disk / 2**20:,.0f} MB on disk ({apparent / 2**20:,.0f} MB apparent, {files} files), "
        f"{disk / max(n, 1):,.0f} bytes per chunk"
    )


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def latency_line(name: str, ms: list[float], cpu_ms: list[float] | None = None) -> str:
    cpu = f"  CPU/query {statistics.fmean(cpu_ms) * 1000:6.0f} µs" if cpu_ms else ""
    return (
        f"  {name:<46} p50 {pct(ms, 0.5):7.3f} ms  p99 {pct(ms, 0.99):7.3f} ms  "
        f"mean {statistics.fmean(ms):7.3f} ms{cpu}  (n={len(ms)})"
    )


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def machine_header(data_root: str | None) -> str:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    mem_gb = 0.0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_gb = int(line.split()[1]) / 2**20
    except OSError:
        pass
    root = Path(data_root or tempfile.gettempdir())
    free = shutil.disk_usage(root).free / 2**30
    return "\n".join(
        [
            f"machine: {os.cpu_count()} cores ({usable} usable by this process), {cpu_model()}, "
            f"{mem_gb:.1f} GiB RAM, {platform.system()} {platform.release()}",
            f"python {platform.python_version()} ({sys.implementation.name}), qdrant-edge-py "
            f"{package_version('qdrant-edge-py')}, numpy {np.__version__}; nice {os.nice(0)}",
            f"load average {load()}; data under {root} ({free:,.1f} GiB free)",
            f"started {time.strftime('%Y-%m-%d %H:%M:%S')}",
        ]
    )


def run_sizes(script: str, sizes: list[int], child_args: list[str], data_root: str | None) -> None:
    """Run ``script`` once per size, each in a fresh process, one after the other."""
    print(machine_header(data_root), flush=True)
    total = time.perf_counter()
    for n in sizes:
        started = time.perf_counter()
        subprocess.run([sys.executable, script, "--chunks", str(n), "--child", *child_args], check=False)
        print(f"== {n:,} chunks: {time.perf_counter() - started:.0f} s in all; load {load()}\n", flush=True)
    print(f"all sizes: {time.perf_counter() - total:.0f} s; finished {time.strftime('%H:%M:%S')}", flush=True)


# --- the corpus -----------------------------------------------------------------------------------

_VOCAB_SIZE = 50_000


def _vocabulary() -> tuple[list[str], np.ndarray]:
    # Zipf-distributed words; as in real text, the most frequent ranks are stop words
    stop = sorted(STOP_WORDS["english"])
    vocab = stop + [f"w{i}" for i in range(_VOCAB_SIZE - len(stop))]
    cum = np.cumsum(1.0 / np.arange(1, len(vocab) + 1))
    return vocab, cum / cum[-1]


def iter_corpus(n: int, words: int, seed: int = 7, batch: int = 2_000, titles: int = 0) -> Iterator[list[Document]]:
    """The synthetic corpus in batches (a million documents need not be held at once).

    Document i is titled "Document i", so every title adds a term of its own to the BM25 analyser's
    vocabulary (as numbers, names and codes do in real text); ``titles`` > 0 numbers them modulo
    ``titles`` instead.
    """
    vocab, cum = _vocabulary()
    rng = np.random.default_rng(seed)
    for start in range(0, n, batch):
        count = min(batch, n - start)
        rows = np.searchsorted(cum, rng.random((count, words)), side="right").tolist()
        docs = []
        for i, row in enumerate(rows, start):
            text = " ".join([vocab[j] for j in row]) + "."
            scope = ("public",) if i % 3 else (f"slack:C{i % 50}",)
            title = f"Document {i % titles if titles else i}"
            docs.append(Document(f"doc-{i}", title, text, "text", origin="bench", scope=scope))
        yield docs


def synthetic_corpus(n: int, words: int, seed: int = 7, titles: int = 0) -> list[Document]:
    return [doc for docs in iter_corpus(n, words, seed, titles=titles) for doc in docs]


def query_texts(docs: list[Document], count: int = 500, seed: int = 3) -> list[str]:
    """Four words of a random document each: questions that the corpus can answer."""
    rng = random.Random(seed)
    return [" ".join(rng.sample(rng.choice(docs).text.rstrip(".").split(), 4)) for _ in range(count)]


# --- the benchmark --------------------------------------------------------------------------------

SERVE_SCRIPT = """
import asyncio, json, math, statistics, sys, time
from pathlib import Path
from retrieval.api import SearchScope
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.factory import open_knowledge_base

def status(key):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) / 1024
    return 0.0

def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

async def main():
    queries = json.loads(Path(sys.argv[2]).read_text())
    n = int(sys.argv[3])
    started = time.perf_counter()
    svc = await open_knowledge_base(RetrievalEnvironment(RetrievalConfig(), Path(sys.argv[1])))
    opened, open_s = status("VmRSS:"), time.perf_counter() - started
    ms = []
    for i in range(n):
        scope = SearchScope(kbs=("bench",), channel=f"slack:C{i % 50}")
        t = time.perf_counter()
        await svc.search(queries[i % len(queries)], scope, limit=5)
        ms.append((time.perf_counter() - t) * 1000)
    ms = ms[10:]
    print(f"  {'RetrievalService.search (tokenise + search)':<46} p50 {pct(ms, 0.5):7.3f} ms  "
          f"p99 {pct(ms, 0.99):7.3f} ms  mean {statistics.fmean(ms):7.3f} ms  (n={len(ms)})")
    print(f"  serving process: opened in {open_s:.2f} s; RSS after open {opened:,.0f} MB, after {n:,} queries "
          f"{status('VmRSS:'):,.0f} MB, peak {status('VmHWM:'):,.0f} MB; {await svc.count():,} chunks")
    await svc.aclose()

asyncio.run(main())
"""


async def run_one(args: argparse.Namespace, n: int) -> None:
    print(f"== {n:,} chunks: bench_ingest (BM25 only, embedded store, real ingest path), load {load()}", flush=True)
    phase = Phase("corpus")
    docs = synthetic_corpus(n, args.words, titles=args.titles)
    titled = f"titles numbered modulo {args.titles:,}" if args.titles else "unique titles"
    print(
        f"  corpus: {len(docs):,} documents of {args.words} words, {titled}, generated before timing (not timed below)"
    )
    print(phase.line(), flush=True)
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench-ingest-") as tmp:
        env = RetrievalEnvironment(RetrievalConfig(ingest_workers=args.workers), Path(tmp))
        data = Path(tmp) / EDGE_DIRNAME
        svc = await open_knowledge_base(env)
        optimise: list[float] = []
        store_optimize = svc.store.optimize

        async def timed_optimize() -> None:
            t = time.perf_counter()
            await store_optimize()
            optimise.append(time.perf_counter() - t)

        svc.store.optimize = timed_optimize  # type: ignore[method-assign]
        try:
            phase = Phase("first ingest")
            worker_cpu = children_cpu_s()
            try:
                report = await svc.ingest_documents(docs, kb="bench")
            except Exception as exc:
                traceback.print_exc()
                print(
                    f"  first ingest FAILED after {time.perf_counter() - phase.started:.1f} s: "
                    f"{type(exc).__name__}: {exc}",
                    flush=True,
                )
                return
            first = time.perf_counter() - phase.started
            opt = sum(optimise)
            print(
                f"  first ingest:  {report.chunks_added:,} chunks in {first:.2f} s = "
                f"{report.chunks_added / first:,.0f} chunks/s incl. the final optimise ({opt:.2f} s; "
                f"{report.chunks_added / max(first - opt, 1e-9):,.0f} chunks/s without it); "
                f"ingest_workers {args.workers}"
            )
            print(phase.line())
            print(
                f"  ingest worker process(es): {children_cpu_s() - worker_cpu:.1f} s CPU, "
                f"peak RSS {children_peak_mb():,.0f} MB"
            )
            print(f"  data dir after ingest: {size_line(data, n)}", flush=True)
            phase = Phase("second ingest")
            again = await svc.ingest_documents(docs, kb="bench")
            second = time.perf_counter() - phase.started
            print(
                f"  second ingest: {again.chunks_unchanged:,} unchanged in {second:.2f} s = "
                f"{len(docs) / second:,.0f} docs/s"
            )
            print(phase.line(), flush=True)
        finally:
            await svc.aclose()
        print(f"  data dir after close: {size_line(data, n)}")
        queries = Path(tmp) / "queries.json"
        queries.write_text(json.dumps(query_texts(docs)))
        del docs
        print(f"  a fresh process opens the {n:,}-chunk store and answers {args.queries:,} BM25 questions:", flush=True)
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", SERVE_SCRIPT, tmp, str(queries), str(args.queries)
        )
        await proc.wait()
    print(f"  load {load()}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=parse_sizes, default=[100_000], help="sizes, e.g. 10000,100000,1000000")
    parser.add_argument("--words", type=int, default=120)
    parser.add_argument("--workers", type=int, default=1, help="ingest_workers (0: prepare in a thread)")
    parser.add_argument("--queries", type=int, default=1_000, help="end-to-end questions in the serving process")
    parser.add_argument(
        "--titles", type=int, default=0, help="number the documents' titles modulo this (default 0: unique titles)"
    )
    parser.add_argument("--dir", default=None, help="where the data directories go (default: the temp dir)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if len(args.chunks) > 1:
        child_args = [
            *("--words", str(args.words), "--workers", str(args.workers), "--queries", str(args.queries)),
            *("--titles", str(args.titles)),
        ]
        run_sizes(__file__, args.chunks, child_args + (["--dir", args.dir] if args.dir else []), args.dir)
        return
    if not args.child:
        print(machine_header(args.dir), flush=True)
    asyncio.run(run_one(args, args.chunks[0]))


if __name__ == "__main__":
    main()
