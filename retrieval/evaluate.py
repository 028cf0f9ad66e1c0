"""Retrieval evaluation on BEIR-layout data (and PubMedQA turned into it).

BEIR layout: ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl`` (``_id``,
``text``), ``qrels/<split>.tsv`` (``query-id corpus-id score`` with a header line). The corpus is
ingested into a fresh knowledge base in a temporary directory (embedded store); every judged query
is searched; chunks are folded into documents (a document ranks at its best chunk). Metrics follow
pytrec_eval/BEIR: nDCG@10 with linear gain, Recall@k, MRR@10; latency is the wall time of one
``search`` call (tokenise + query + payload), p50 and p99.

A question file (``load_questions``) judges sections instead: each line names the question, the
document that answers it (``source`` as ``bothbot ingest`` names it) and, optionally, the
``heading`` of the section (the last part of the heading path, or a longer tail of it) and
``also`` (other equally good ``{"source", "heading"}`` sections). The corpus is ingested from files
exactly as ``bothbot ingest`` would, and a passage counts as its section.
"""

from __future__ import annotations

import json
import math
import statistics
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from retrieval.api import Passage, SearchScope
from retrieval.config import RetrievalEnvironment
from retrieval.documents import Document
from retrieval.errors import RetrievalError
from retrieval.factory import open_knowledge_base
from retrieval.search import SearchMode

EVAL_KB = "eval"


class DatasetError(RetrievalError):
    """The evaluation data is missing or not in the expected layout."""


@dataclass(frozen=True, slots=True)
class EvalData:
    name: str
    corpus: dict[str, tuple[str, str]]  # doc id -> (title, text)
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> relevance
    paths: tuple[Path, ...] = ()  # files to ingest instead of ``corpus`` (question files)
    by_section: bool = False  # judge passages by "source#heading" rather than by source


@dataclass(frozen=True, slots=True)
class EvalRow:
    mode: str
    queries: int
    ndcg10: float
    recall1: float
    recall10: float
    recall100: float
    mrr10: float
    p50_ms: float
    p99_ms: float
    first: float = 0.0  # share of queries whose first result is relevant (Success@1)
    source_first: float = 0.0  # share whose first result comes from a relevant document (F@1; = S@1 unless by section)
    misses: tuple[tuple[str, str], ...] = ()  # (query id, first result) where that was not relevant


def _jsonl(path: Path) -> list[dict[str, object]]:
    if not path.is_file():
        raise DatasetError(f"{path} not found")
    rows: list[dict[str, object]] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as exc:
                    raise DatasetError(f"{path}:{lineno}: invalid JSON ({exc})") from None
                if isinstance(row, dict):
                    rows.append(row)
    return rows


def load_beir(root: Path, split: str = "test") -> EvalData:
    corpus = {
        str(r["_id"]): (str(r.get("title") or ""), str(r.get("text") or "")) for r in _jsonl(root / "corpus.jsonl")
    }
    queries = {str(r["_id"]): str(r.get("text") or "") for r in _jsonl(root / "queries.jsonl")}
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        raise DatasetError(f"{qrels_path} not found")
    qrels: dict[str, dict[str, int]] = {}
    for lineno, line in enumerate(qrels_path.read_text(encoding="utf-8").splitlines(), 1):
        parts = line.split("\t")
        if len(parts) < 3 or (lineno == 1 and not parts[2].strip().lstrip("-").isdigit()):
            continue
        qid, did, score = parts[0], parts[1], int(parts[2])
        if qid in queries:
            qrels.setdefault(qid, {})[did] = score
    return EvalData(root.name, corpus, queries, qrels)


def load_pubmedqa(root: Path) -> EvalData:
    """PubMedQA PQA-L: corpus = the abstracts (CONTEXTS joined); each question's gold is its own."""
    path = root / "ori_pqal.json" if root.is_dir() else root
    if not path.is_file():
        raise DatasetError(f"{path} not found (expected PubMedQA's ori_pqal.json)")
    data = json.loads(path.read_text(encoding="utf-8"))
    corpus = {pmid: ("", " ".join(item["CONTEXTS"])) for pmid, item in data.items()}
    queries = {pmid: str(item["QUESTION"]) for pmid, item in data.items()}
    qrels = {pmid: {pmid: 1} for pmid in data}
    return EvalData("pubmedqa", corpus, queries, qrels)


def section_key(source: str, heading: str | None) -> str:
    return f"{source}#{heading}" if heading else source


def _source_of(unit: str) -> str:
    """The document of a judged unit: ``docs/guide.md#Guide > Setup`` → ``docs/guide.md``."""
    return unit.split("#", 1)[0]


def _section_of(passage: Passage, rels: dict[str, int]) -> str:
    """The judged unit a passage belongs to: its section when a tail of its heading path is judged."""
    parts = [p.strip() for p in (passage.heading or "").split(" > ") if p.strip()]
    for i in range(len(parts)):
        key = section_key(passage.source, " > ".join(parts[i:]))
        if key in rels:
            return key
    return passage.source if passage.source in rels else section_key(passage.source, passage.heading)


def load_questions(path: Path, corpus: Sequence[Path], split: str = "all") -> EvalData:
    """A JSON Lines question file (``question``, ``source``, optional ``heading``, ``also``, ``id``,
    ``split``) judged against the files in ``corpus``. Rows with a ``split`` other than ``split``
    are left out (``all`` keeps every row)."""
    if not corpus:
        raise DatasetError("a question file needs --corpus: the files or folders its answers are in")
    for root in corpus:
        if not root.exists():
            raise DatasetError(f"{root} not found")
    queries: dict[str, str] = {}
    qrels: dict[str, dict[str, int]] = {}
    for n, row in enumerate(_jsonl(path), 1):
        if split != "all" and str(row.get("split", split)) != split:
            continue
        question, source = row.get("question"), row.get("source")
        if not isinstance(question, str) or not isinstance(source, str) or not question.strip():
            raise DatasetError(f"{path}: question {n} needs a 'question' and a 'source'")
        qid = str(row.get("id") or n)
        queries[qid] = question
        judged = [(source, row.get("heading"))]
        also: Any = row.get("also") or []
        judged.extend((str(a.get("source", source)), a.get("heading")) for a in also if isinstance(a, dict))
        qrels[qid] = {section_key(s, str(h) if h else None): 1 for s, h in judged}
    if not queries:
        raise DatasetError(f"{path}: no questions (split {split!r})")
    return EvalData(path.stem, {}, queries, qrels, paths=tuple(corpus), by_section=True)


def corpus_documents(data: EvalData) -> Iterator[Document]:
    """The corpus as documents to ingest (``source`` = the document id), for this module and ``eval answers``."""
    for did, (title, text) in data.corpus.items():
        yield Document(source=did, title=title, text=text, format="text", origin=data.name)


def write_beir(data: EvalData, root: Path, split: str = "test") -> None:
    """Write data in BEIR layout (used to exercise ``--beir`` with converted data)."""
    (root / "qrels").mkdir(parents=True, exist_ok=True)
    with (root / "corpus.jsonl").open("w", encoding="utf-8") as fh:
        for did, (title, text) in data.corpus.items():
            fh.write(json.dumps({"_id": did, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w", encoding="utf-8") as fh:
        for qid, text in data.queries.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with (root / "qrels" / f"{split}.tsv").open("w", encoding="utf-8") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, rels in data.qrels.items():
            for did, score in rels.items():
                fh.write(f"{qid}\t{did}\t{score}\n")


def ndcg_at(ranked: Sequence[str], rels: dict[str, int], k: int) -> float:
    dcg = sum(rels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted((r for r in rels.values() if r > 0), reverse=True)[:k]
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at(ranked: Sequence[str], rels: dict[str, int], k: int) -> float:
    relevant = {d for d, r in rels.items() if r > 0}
    return len(relevant.intersection(ranked[:k])) / len(relevant) if relevant else 0.0


def mrr_at(ranked: Sequence[str], rels: dict[str, int], k: int) -> float:
    for i, d in enumerate(ranked[:k]):
        if rels.get(d, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


async def evaluate(
    data: EvalData,
    env: RetrievalEnvironment,
    modes: Sequence[SearchMode] | None = None,
    max_queries: int | None = None,
) -> list[EvalRow]:
    """Ingest ``data`` into a fresh embedded store and score each mode (sparse; dense and hybrid
    when an embedder is configured)."""
    dense = env.config.embedder != "none"
    default: list[SearchMode] = ["sparse", "dense", "hybrid"] if dense else ["sparse"]
    chosen = list(modes) if modes else default
    judged = [q for q in data.queries if data.qrels.get(q)][: max_queries or None]
    with tempfile.TemporaryDirectory(prefix="bothbot-eval-") as tmp:
        fresh = RetrievalEnvironment(
            config=env.config,
            data_dir=Path(tmp),
            qdrant_url=None,
            openai_base_url=env.openai_base_url,
            openai_api_key=env.openai_api_key,
        )
        service = await open_knowledge_base(fresh)
        try:
            if data.paths:
                report = await service.ingest_paths(list(data.paths), kb=EVAL_KB)
                documents = report.documents
            else:
                await service.ingest_documents(corpus_documents(data), kb=EVAL_KB)
                documents = len(data.corpus)
            chunks = await service.count([EVAL_KB])
            limit = min(1000, max(100, math.ceil(100 * chunks / max(1, documents) * 1.5)))
            scope = SearchScope(kbs=(EVAL_KB,))
            rows = []
            for mode in chosen:
                scores: dict[str, list[float]] = {m: [] for m in ("ndcg10", "r1", "r10", "r100", "mrr10", "s1", "f1")}
                latencies: list[float] = []
                misses: list[tuple[str, str]] = []
                for qid in judged:
                    started = time.perf_counter()
                    result = await service.search(data.queries[qid], scope, limit=limit, mode=mode)
                    latencies.append((time.perf_counter() - started) * 1000)
                    rels = data.qrels[qid]
                    units = (_section_of(p, rels) if data.by_section else p.source for p in result.passages)
                    ranked = list(dict.fromkeys(units))[:100]
                    scores["ndcg10"].append(ndcg_at(ranked, rels, 10))
                    scores["r1"].append(recall_at(ranked, rels, 1))
                    scores["r10"].append(recall_at(ranked, rels, 10))
                    scores["r100"].append(recall_at(ranked, rels, 100))
                    scores["mrr10"].append(mrr_at(ranked, rels, 10))
                    scores["s1"].append(1.0 if ranked and rels.get(ranked[0], 0) > 0 else 0.0)
                    relevant_sources = {_source_of(unit) for unit, grade in rels.items() if grade > 0}
                    scores["f1"].append(1.0 if ranked and _source_of(ranked[0]) in relevant_sources else 0.0)
                    if not scores["s1"][-1]:
                        misses.append((qid, ranked[0] if ranked else "(nothing)"))
                mean = {k: statistics.fmean(v) if v else 0.0 for k, v in scores.items()}
                rows.append(
                    EvalRow(
                        mode,
                        len(judged),
                        mean["ndcg10"],
                        mean["r1"],
                        mean["r10"],
                        mean["r100"],
                        mean["mrr10"],
                        percentile(latencies, 0.5),
                        percentile(latencies, 0.99),
                        mean["s1"],
                        mean["f1"],
                        tuple(misses),
                    )
                )
            return rows
        finally:
            await service.aclose()


def format_rows(name: str, rows: Sequence[EvalRow]) -> str:
    header = (
        f"{'mode':<8} {'queries':>7} {'nDCG@10':>8} {'S@1':>6} {'F@1':>6} {'R@1':>6} {'R@10':>6} {'R@100':>6} "
        f"{'MRR@10':>7} {'p50 ms':>7} {'p99 ms':>7}"
    )
    lines = [f"retrieval evaluation: {name}", header]
    for r in rows:
        lines.append(
            f"{r.mode:<8} {r.queries:>7} {r.ndcg10:>8.4f} {r.first:>6.3f} {r.source_first:>6.3f} {r.recall1:>6.3f} "
            f"{r.recall10:>6.3f} "
            f"{r.recall100:>6.3f} "
            f"{r.mrr10:>7.4f} {r.p50_ms:>7.2f} {r.p99_ms:>7.2f}"
        )
    return "\n".join(lines)
