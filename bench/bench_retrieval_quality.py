"""Retrieval quality of BM25 settings on PubMedQA (or any BEIR folder): prints a table, asserts nothing.

    python bench/bench_retrieval_quality.py [--pubmedqa DIR | --beir DIR]

Each row ingests the corpus into a fresh embedded store with one configuration and scores every
judged query (see retrieval/evaluate.py for the metrics).
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path
from typing import Any

from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.evaluate import evaluate, load_beir, load_pubmedqa

DEFAULT_PUBMEDQA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "pubmedqa"
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("default (english stem + stop, 256-token chunks)", {}),
    ("whole documents (2048-token chunks)", {"chunk_tokens": 2048}),
    ("no stemming", {"stemming": False}),
    ("no stop words", {"stop_words": False}),
    ("no stemming, no stop words", {"stemming": False, "stop_words": False}),
    ("porter (original) stemmer", {"language": "porter"}),
    ("k1=0.9 b=0.4 (Anserini)", {"bm25_k1": 0.9, "bm25_b": 0.4}),
]


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pubmedqa", type=Path, default=DEFAULT_PUBMEDQA)
    parser.add_argument("--beir", type=Path, default=None)
    args = parser.parse_args()
    data = load_beir(args.beir) if args.beir else load_pubmedqa(args.pubmedqa)
    print(f"{data.name}: {len(data.corpus)} documents, {len(data.qrels)} judged queries")
    print(f"{'variant':<50} {'nDCG@10':>8} {'R@1':>6} {'R@10':>6} {'R@100':>6} {'MRR@10':>7} {'p50 ms':>7}")
    for name, overrides in VARIANTS:
        with tempfile.TemporaryDirectory() as tmp:
            env = RetrievalEnvironment(RetrievalConfig(**overrides), Path(tmp))
            row = (await evaluate(data, env, ["sparse"]))[0]
        print(
            f"{name:<50} {row.ndcg10:>8.4f} {row.recall1:>6.3f} {row.recall10:>6.3f} {row.recall100:>6.3f} "
            f"{row.mrr10:>7.4f} {row.p50_ms:>7.2f}"
        )


if __name__ == "__main__":
    asyncio.run(main())
