"""bothbot's engine overhead per answer (issue #13): prints numbers, asserts nothing.

    python bench/bench_engine.py [--chunks 10000,100000] [--concurrency 1,50,200] [--answers N]
                                 [--warmup N] [--redis redis://127.0.0.1:6379/15 | --memory] [--data-root DIR]

The workload is ``bench/workload.py``'s: per answer, dedup claim, rate limits, a 20-message history
in Redis (4 of its messages sent), top-5 BM25 retrieval from the embedded store of N synthetic
chunks, a 6-message prompt, a 50-chunk answer streamed from the fake model server (its own
process), the turn and trace persisted. The store is built once per chunk count by bothbot's
ingest path (in a temporary directory, or kept under --data-root and reused); the fake model
server starts once; then every (chunks, concurrency) cell runs in a fresh process, one after the
other (qdrant-edge lets one process open a store), through the public API only:
``Runtime.start(settings)`` and ``runtime.engine.handle(IncomingMessage(…))``.

Per cell: p50 and p99 latency per answer, answers/s, CPU per answer of that process alone (the
fake model's own CPU per answer beside it, for reference), the process' peak RSS (``ru_maxrss``),
and what the fake model received (messages and sources per prompt). --answers N sets the measured
answers of every cell (default: 500 at concurrency 1, 20 per conversation above it).
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

# sibling script (bench/ is on sys.path when run)
import workload as wl

SCRIPT = Path(__file__).resolve()


def int_list(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        part = part.strip().lower().replace("_", "")
        if part:
            scale = {"k": 1_000, "m": 1_000_000}.get(part[-1], 1)
            out.append(int(float(part[:-1] if scale > 1 else part) * scale))
    if not out or min(out) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers separated by commas, not {text!r}")
    return out


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int_list, default=[10_000, 100_000], help="chunk counts (10000,100000)")
    p.add_argument("--concurrency", type=int_list, default=[1, 50, 200], help="conversations at once (1,50,200)")
    p.add_argument("--answers", type=int, default=None, help="measured answers per cell")
    p.add_argument("--warmup", type=int, default=None, help="unmeasured answers first (default max(50, 2*c))")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/15", help="Redis URL (keys under a unique prefix)")
    p.add_argument("--memory", action="store_true", help="in-process state instead of Redis")
    p.add_argument("--data-root", type=Path, default=None, help="keep the stores here and reuse them")
    wl.child_arguments(p)
    return p


def answers_for(args: argparse.Namespace, concurrency: int) -> int:
    if args.answers is not None:
        return int(args.answers)
    return 500 if concurrency == 1 else 20 * concurrency


async def open_bothbot(args: argparse.Namespace, store: wl.Store) -> wl.System:
    return await wl.Bothbot.open(
        data_dir=store.data_dir, redis_url=args.redis, prefix=args.prefix, base_url=args.base_url,
        questions=store.questions,
    )


def table(rows: list[dict[str, Any]]) -> list[str]:
    head = (f"{'chunks':>8} {'conc':>5} {'answers':>7} {'p50 ms':>8} {'p99 ms':>8} {'answers/s':>9} "
            f"{'CPU ms/ans':>10} {'peak RSS MB':>11} {'fake CPU ms/ans':>15}  load / prompts seen by the model")
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(
            f"{r['chunks']:>8,} {r['concurrency']:>5} {r['answers']:>7} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
            f"{r['answers_per_s']:>9.1f} {r['cpu_ms_per_answer']:>10.3f} {r['peak_rss_mb']:>11.0f} "
            f"{r['fake_cpu_ms_per_answer']:>15.3f}  {r['load']} / {wl.check_line(r)}"
        )
    return lines


def main() -> None:
    args = parser().parse_args()
    if args.memory:
        args.redis = None
    if args.child:
        asyncio.run(wl.child_main(args, open_bothbot))
        return
    print("bothbot engine overhead per answer (bench/bench_engine.py)")
    for line in wl.machine_lines():
        print(line)
    print(wl.versions_line(["bothbot", "qdrant-edge-py", "redis", "openai", "httpx2", "aiohttp"]))
    state = "in-process state" if args.redis is None else f"Redis {args.redis}"
    print(f"workload: {state}; top-{wl.TOP_K} BM25 from chunks of {wl.WORDS_PER_CHUNK} words; prompt of "
          f"{wl.PROMPT_MESSAGES} messages; {wl.ANSWER_CHUNKS}-chunk streamed answers, fake model in its own process")
    run_id = uuid.uuid4().hex[:8]
    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    with wl.stores_root(args.data_root) as root, wl.FakeModelProcess() as fake:
        for chunks in args.chunks:
            store = wl.prepare_store(root, chunks)
            print(store.line(), flush=True)
            for c in args.concurrency:
                prefix = f"bench-{run_id}-engine-{chunks}-{c}"
                child = [
                    "--child", "bothbot", "--data-dir", str(store.data_dir),
                    "--base-url", fake.base_url,
                    "--prefix", prefix, "--phases", f"{c}:{answers_for(args, c)}",
                    *(["--memory"] if args.redis is None else ["--redis", args.redis]),
                    *(["--warmup", str(args.warmup)] if args.warmup is not None else []),
                ]
                started = time.perf_counter()
                result = wl.run_child(SCRIPT, child, cwd=root)
                if result is None:
                    failed.append(f"{chunks:,} chunks, c={c}")
                    continue
                rows.extend(wl.iter_phase_rows(result))
                print(f"  {chunks:,} chunks, c={c}: done in {time.perf_counter() - started:.0f} s "
                      f"(seeded {result['seeded_conversations']} conversations); peak RSS "
                      f"{result['peak_rss_mb']:.0f} MB (VmHWM {result['vm_hwm_mb']:.0f} MB); "
                      f"load {wl.load_average()}", flush=True)
                for line in result["stderr_notable"]:
                    print(f"    its stderr ({result['stderr_lines']} lines) says: {line[:200]}", flush=True)
        if args.redis is not None:
            asyncio.run(wl.delete_keys(args.redis, f"bench-{run_id}-"))
    print()
    for line in table(rows):
        print(line)
    if failed:
        print(f"failed (see above): {'; '.join(failed)}")
    print(f"load average at the end {wl.load_average()}")


if __name__ == "__main__":
    main()
