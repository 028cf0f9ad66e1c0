from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from bot.cli import build_parser
from retrieval.cli import EXIT_LOCKED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.factory import open_knowledge_base
from tests.fakes.openai_server import FakeOpenAI
from tests.retrieval.conftest import write_files

REPO_ROOT = Path(__file__).resolve().parents[2]
PUBMEDQA = REPO_ROOT.parent / "shared" / "datasets" / "pubmedqa"


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


async def run(env: RetrievalEnvironment, *argv: str) -> int:
    args = parse(*argv)
    code: int = await args.retrieval_handler(args, env)
    return code


@pytest.fixture
def env(tmp_path: Path) -> RetrievalEnvironment:
    return RetrievalEnvironment(RetrievalConfig(), tmp_path / "data")


async def test_ingest_command_reports_and_is_idempotent(
    env: RetrievalEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_files(tmp_path / "docs", {"a.md": "# A\n\nalpha text", "b.txt": "bravo", "skip.md": "# S\n\nno"})
    assert await run(env, "ingest", str(root), "--kb", "eng", "--scope", "slack:C1", "--exclude", "skip.md") == EXIT_OK
    out = capsys.readouterr()
    assert "kb 'eng': 2 documents (2 new or changed); chunks: 2 added" in out.out
    assert await run(env, "ingest", str(root), "--kb", "eng", "--prune", "--exclude", "skip.md") == EXIT_OK
    assert "2 documents (0 new or changed)" not in capsys.readouterr().out  # scope changed -> payload updates
    assert await run(env, "ingest", str(root), "--kb", "eng", "--prune", "--exclude", "skip.md") == EXIT_OK
    assert "0 added, 0 updated, 0 removed, 2 unchanged" in capsys.readouterr().out
    svc = await open_knowledge_base(env)
    try:
        assert await svc.kb_counts() == {"eng": 2}
    finally:
        await svc.aclose()


async def test_ingest_command_names_unreadable_files_and_goes_on(
    env: RetrievalEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = write_files(tmp_path / "docs", {"good.md": "# G\n\ngood", "bad.txt": b"\xff\xfe\x00"})
    assert await run(env, "ingest", str(root)) == EXIT_PARTIAL
    out = capsys.readouterr()
    assert f"skipped {root / 'bad.txt'}: binary" in out.err
    assert "1 documents" in out.out and "1 failed" in out.out
    # a path that does not exist is a bad argument (2), not a file that failed to load:
    # tests/retrieval/test_ingest_edges.py


async def test_ingest_command_rejects_bad_scope(env: RetrievalEnvironment, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(env, "ingest", ".", "--scope", "everyone") == EXIT_USAGE
    assert "scope 'everyone'" in capsys.readouterr().err


async def test_ingest_command_waits_then_gives_up_when_the_store_is_held(
    env: RetrievalEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = await open_knowledge_base(env)
    try:
        assert await run(env, "ingest", str(tmp_path), "--wait", "0.2", "--no-progress") == EXIT_LOCKED
    finally:
        await holder.aclose()
    err = capsys.readouterr().err
    assert "waiting up to 0.2 s" in err
    assert "stop the other bothbot process" in err and "QDRANT_URL" in err


def _beir(root: Path) -> Path:
    corpus = [
        {"_id": "d1", "title": "Cats", "text": "Cats purr and sleep most of the day."},
        {"_id": "d2", "title": "Dogs", "text": "Dogs bark at the mail carrier."},
        {"_id": "d3", "title": "Birds", "text": "Birds sing at dawn and migrate south."},
        {"_id": "d4", "title": "Fish", "text": "Fish swim in schools to avoid predators."},
    ]
    queries = [{"_id": "q1", "text": "why do cats purr"}, {"_id": "q2", "text": "when do birds sing"},
               {"_id": "q3", "text": "unjudged query"}]  # fmt: skip
    files: dict[str, str | bytes] = {
        "corpus.jsonl": "\n".join(json.dumps(c) for c in corpus),
        "queries.jsonl": "\n".join(json.dumps(q) for q in queries),
        "qrels/test.tsv": "query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td3\t2\nq2\td2\t0\n",
    }
    return write_files(root, files)


async def test_eval_retrieval_beir(
    env: RetrievalEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _beir(tmp_path / "beir")
    assert await run(env, "eval", "retrieval", "--beir", str(root)) == EXIT_OK
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("sparse"))
    fields = row.split()
    assert fields[1] == "2"  # judged queries
    assert [float(x) for x in fields[2:7]] == [1.0, 1.0, 1.0, 1.0, 1.0]
    assert not (env.data_dir / "qdrant").exists()  # a fresh temporary store, not the deployment's


async def test_eval_retrieval_reports_missing_data(env: RetrievalEnvironment, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert await run(env, "eval", "retrieval", "--beir", str(tmp_path)) == EXIT_USAGE
    assert "corpus.jsonl not found" in capsys.readouterr().err


@pytest.mark.skipif(not PUBMEDQA.is_dir(), reason="PubMedQA not present next to the repository")
async def test_eval_retrieval_pubmedqa(env: RetrievalEnvironment, capsys: pytest.CaptureFixture[str]) -> None:
    assert await run(env, "eval", "retrieval", "--pubmedqa", str(PUBMEDQA), "--max-queries", "100") == EXIT_OK
    out = capsys.readouterr().out
    assert "1000 documents, 1000 queries" in out
    fields = next(line for line in out.splitlines() if line.startswith("sparse")).split()
    assert fields[1] == "100"
    assert float(fields[2]) > 0.9  # nDCG@10: PubMedQA questions are written from their abstracts


async def test_eval_retrieval_with_an_embedder_reports_dense_and_hybrid(
    tmp_path: Path, openai_server: FakeOpenAI, capsys: pytest.CaptureFixture[str]
) -> None:
    config = RetrievalConfig(embedder="openai", embedding_model="emb", fusion="rrf")
    env = RetrievalEnvironment(config, tmp_path / "data", openai_base_url=openai_server.base_url, openai_api_key="k")
    assert await run(env, "eval", "retrieval", "--beir", str(_beir(tmp_path / "beir"))) == EXIT_OK
    out = capsys.readouterr().out
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if line.split()[:1] in (["sparse"], ["dense"], ["hybrid"])
    }
    assert set(rows) == {"sparse", "dense", "hybrid"}
    assert float(rows["hybrid"][2]) == 1.0  # nDCG@10
    assert "fusion rrf" in out
    assert any(r.path.endswith("/embeddings") for r in openai_server.requests)
