"""``bothbot eval answers`` end to end: the real CLI, real Redis, a real embedded knowledge base, and the
real ``openai`` SDK talking to :class:`FakeOpenAI` on loopback.

The fake model answers right only when the gold passage is in its prompt (it looks for the reference
answer inside the numbered sources, and cites that source); otherwise it says it does not know. So
every score the report gives is implied by what the prompt held.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.evaluation.answers import RowLog, gold_passages
from bot.evaluation.question_sets import read_pubmedqa, sample_questions
from bot.evaluation.records import AnswerRow, ProfileInfo, RunSettings
from bot.evaluation.report import build_report
from bot.prompts import CLOSED_BOOK_NOTE, SOURCES_NOTE
from bot.questions import QuestionItem
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.documents import Document
from retrieval.factory import open_knowledge_base
from tests.conftest import TEST_REDIS_URL, IngestDocs
from tests.fakes.openai_server import FakeOpenAI

PUBMEDQA = Path(__file__).resolve().parents[3] / "shared" / "datasets" / "pubmedqa"

DOCS = {
    "alpha.md": "# Alpha project\n\nThe alpha project's codename is HELIOTROPE. It ships every quarter.\n",
    "beta.md": "# Beta service\n\nThe beta service listens on port 7311 for health checks.\n",
    "gamma.md": "# Gamma team\n\nThe gamma team is led by Marisol Quispe, who joined in spring.\n",
    "delta.md": "# Office plants\n\nWater the ficus by the window on Thursdays.\n",
}
QUESTIONS = [
    {"id": "q1", "question": "What is the codename of the alpha project?", "answer": "HELIOTROPE",
     "source": "docs/alpha.md"},
    {"id": "q2", "question": "Which port does the beta service listen on for health checks?", "answer": "7311",
     "source": "docs/beta.md"},
    {"id": "q3", "question": "Who leads the gamma team?", "answer": "Marisol Quispe", "source": "docs/gamma.md"},
    # no word of it is in any document: retrieval finds nothing, so only the oracle has the gold
    {"id": "q4", "question": "What is the greenery schedule?", "answer": "Thursdays", "source": "docs/delta.md"},
]
TOML = """
[profiles.base]
model = "base-model"

[profiles.tuned]
model = "tuned-model"
price_input_per_mtok = 1.0
price_output_per_mtok = 2.0

[profiles.judge]
model = "judge-model"
"""
LATENCY_FREE = ("latency_ms",)

_SOURCE_RE = re.compile(r"^\[(\d+)\] ", re.MULTILINE)


def sources_in(body: dict[str, Any]) -> dict[int, str]:
    """The numbered sources of the prompt's system message, as the chat's prompt builder writes them."""
    system = body["messages"][0]["content"]
    if "Sources:" not in system:
        return {}
    block = system.split("Sources:", 1)[1]
    marks = list(_SOURCE_RE.finditer(block))
    return {
        int(m.group(1)): block[m.end(): marks[i + 1].start() if i + 1 < len(marks) else len(block)]
        for i, m in enumerate(marks)
    }


def grounded_model(answers: dict[str, str]) -> Callable[[dict[str, Any]], str]:
    """Right (citing the gold source) only when a source holds the answer; else it does not know."""

    def reply(body: dict[str, Any]) -> str:
        question = body["messages"][-1]["content"]
        answer = answers[question.split("\n\n", 1)[0]]
        for n, text in sources_in(body).items():
            if answer in text:
                return f"{answer} [{n}]"
        return "I don't know."

    return reply


@pytest.fixture
def data_dir(ingest_docs: IngestDocs) -> Path:
    return ingest_docs(DOCS)


@pytest.fixture
def eval_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, openai_server: FakeOpenAI, redis_prefix: str,
    redis_cleanup: object,
) -> dict[str, str]:
    config = tmp_path / "bothbot.toml"
    config.write_text(TOML, encoding="utf-8")
    env = {
        "REDIS_URL": TEST_REDIS_URL,
        "BOTHBOT_REDIS_PREFIX": redis_prefix,
        "BOTHBOT_DATA_DIR": str(tmp_path / "data"),
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_API_KEY": "sk-test",
        "BOTHBOT_CONFIG": str(config),
        "BOTHBOT_MODEL_MAX_RETRIES": "0",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def question_file(tmp_path: Path) -> Path:
    path = tmp_path / "questions.jsonl"
    path.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS), encoding="utf-8")
    return path


async def run(*args: str) -> int:
    return await asyncio.to_thread(main, ["eval", "answers", *args])


def report_of(out: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((out / "report.json").read_text(encoding="utf-8"))
    return data


def without_latency(report: dict[str, Any]) -> dict[str, Any]:
    """The report with its wall-clock fields left out (latency is measured, so it differs run to run)."""
    copy: dict[str, Any] = json.loads(json.dumps(report))
    for item in [*copy["cells"], *copy["rows"]]:
        for name in LATENCY_FREE:
            item.pop(name, None)
    return copy


def cell(report: dict[str, Any], profile: str, mode: str) -> dict[str, Any]:
    found: dict[str, Any] = next(c for c in report["cells"] if c["profile"] == profile and c["mode"] == mode)
    return found



async def test_scores_follow_what_the_prompt_held(
    data_dir: Path, eval_env: dict[str, str], openai_server: FakeOpenAI, question_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    openai_server.reply_text = grounded_model({q["question"]: q["answer"] for q in QUESTIONS})
    out = tmp_path / "out"

    assert await run(str(question_file), "--profiles", "base,tuned", "--out", str(out)) == 0

    report = report_of(out)
    assert report["questions"] == 4
    for profile in ("base", "tuned"):
        closed, oracle, retrieved = (cell(report, profile, m) for m in ("closed", "oracle", "retrieved"))
        assert closed["n"] == oracle["n"] == retrieved["n"] == 4
        assert closed["scores"] == {
            "exact_match": 0.0, "f1": 0.0, "contains": 0.0, "abstention": 1.0, "correct_abstention": 1.0
        }
        assert oracle["scores"] == {
            "exact_match": 1.0, "f1": 1.0, "contains": 1.0, "abstention": 0.0, "citation_accuracy": 1.0
        }
        assert retrieved["scores"] == {
            "exact_match": 0.75, "f1": 0.75, "contains": 0.75, "abstention": 0.25, "correct_abstention": 1.0,
            "citation_accuracy": 1.0, "hit_at_k": 0.75,
        }
        assert retrieved["scored"]["correct_abstention"] == 1  # only q4, whose gold retrieval missed
    oracle_vs_closed = next(
        d for d in report["differences"]
        if d["a"] == ["tuned", "oracle"] and d["b"] == ["tuned", "closed"] and d["metric"] == "exact_match"
    )
    assert oracle_vs_closed["difference"] == 1.0 and oracle_vs_closed["ci95"] == [1.0, 1.0]
    assert report["verdict"]["a"] == ["tuned", "retrieved"] and report["verdict"]["b"] == ["base", "retrieved"]
    assert report["verdict"]["metric"] == "f1" and report["verdict"]["difference"] == 0.0
    # tokens: the fake counts words; cost from the tuned profile's prices only
    tuned = cell(report, "tuned", "retrieved")
    assert tuned["cost"] == pytest.approx(
        (tuned["tokens"]["prompt"] * 1.0 + tuned["tokens"]["completion"] * 2.0) / 1_000_000
    )
    assert cell(report, "base", "retrieved")["cost"] is None
    # completion words: "HELIOTROPE [1]", "7311 [n]", "Marisol Quispe [n]", "I don't know."
    assert tuned["tokens"]["completion"] == 2 + 2 + 3 + 3

    # every request: temperature 0, the chat's prompt (closed-book note, or numbered sources), no history
    bodies = [r.body for r in openai_server.chat_requests]
    assert len(bodies) == 2 * 3 * 4
    assert {b["temperature"] for b in bodies} == {0.0}
    assert {b["model"] for b in bodies} == {"base-model", "tuned-model"}
    closed_prompts = [b for b in bodies if CLOSED_BOOK_NOTE in b["messages"][0]["content"]]
    assert len(closed_prompts) == 8 and all(len(b["messages"]) == 2 for b in bodies)
    assert sum(SOURCES_NOTE in b["messages"][0]["content"] for b in bodies) == 8 + 6  # oracle 8, retrieved 3×2

    printed = capsys.readouterr().out
    assert "tuned + retrieved is not clearly different from base + retrieved on f1" in printed
    for name in ("report.md", "report.json", "report.png", "rows.jsonl", "settings.json"):
        assert (out / name).is_file()
    # report.json recomputes from the rows and the settings alone
    rows, _ = RowLog(out / "rows.jsonl").read()
    settings = RunSettings.model_validate_json((out / "settings.json").read_text(encoding="utf-8"))
    assert build_report(rows, settings) == report


async def test_a_model_that_always_abstains(
    data_dir: Path, eval_env: dict[str, str], openai_server: FakeOpenAI, question_file: Path, tmp_path: Path
) -> None:
    openai_server.reply_text = "I don't know; the sources do not cover this."
    out = tmp_path / "out"
    assert await run(str(question_file), "--profiles", "base", "--out", str(out)) == 0
    for c in report_of(out)["cells"]:
        assert c["scores"]["exact_match"] == 0.0 and c["scores"]["contains"] == 0.0
        assert c["scores"]["abstention"] == 1.0
        assert "citation_accuracy" not in c["scores"]  # it cites nothing


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGINT], ids=["crash", "ctrl-c"])
async def test_a_killed_run_resumes_to_the_same_report(
    data_dir: Path, eval_env: dict[str, str], openai_server: FakeOpenAI, question_file: Path, tmp_path: Path,
    how: signal.Signals,
) -> None:
    """Kill the CLI (a crash, or Ctrl-C) while a request hangs after 6 finished rows; the rerun finishes
    the other rows only.

    Compared: the whole report.json except the latency fields (measured wall time).
    """
    openai_server.reply_text = grounded_model({q["question"]: q["answer"] for q in QUESTIONS})
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    args = [str(question_file), "--profiles", "base,tuned", "--concurrency", "1"]
    stderr = (tmp_path / "stderr.txt").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "eval", "answers", *args, "--out", str(killed),
        env={**os.environ, **eval_env}, stdout=asyncio.subprocess.DEVNULL, stderr=stderr,
    )
    try:
        await openai_server.wait_for_requests(6, timeout=60)
        openai_server.hang_next()  # the 7th request hangs: with one in flight, row 6 is written before it is sent
        await openai_server.wait_for_requests(7, timeout=60)
        process.send_signal(how)
        assert await process.wait() == (-signal.SIGKILL if how == signal.SIGKILL else 130)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        stderr.close()
    said = (tmp_path / "stderr.txt").read_text(encoding="utf-8")
    if how == signal.SIGINT:
        assert "bothbot eval answers: interrupted; finished rows are kept in" in said and "Traceback" not in said
    rows, problems = RowLog(killed / "rows.jsonl").read()
    assert len(rows) == 6 and not problems
    assert not (killed / "report.json").exists()

    assert await run(*args[:-2], "--concurrency", "3", "--out", str(killed)) == 0
    assert len(openai_server.chat_requests) == 7 + 24 - 6  # only the unfinished rows ran again
    assert await run(*args, "--out", str(whole)) == 0

    resumed, uninterrupted = report_of(killed), report_of(whole)
    assert len(resumed["rows"]) == 24
    assert without_latency(resumed) == without_latency(uninterrupted)

    # a third run with the same arguments has nothing left to do
    before = len(openai_server.chat_requests)
    assert await run(*args, "--out", str(whole)) == 0
    assert len(openai_server.chat_requests) == before


async def test_other_arguments_in_the_same_folder_are_refused(
    data_dir: Path, eval_env: dict[str, str], openai_server: FakeOpenAI, question_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = tmp_path / "out"
    assert await run(str(question_file), "--profiles", "base", "--modes", "closed", "--out", str(out)) == 0
    capsys.readouterr()
    assert await run(str(question_file), "--profiles", "base,tuned", "--modes", "closed", "--out", str(out)) == 2
    err = capsys.readouterr().err
    assert err.startswith("bothbot eval answers: ") and "profiles" in err and "another --out" in err
    assert "Traceback" not in err


async def test_bad_lines_are_named_and_the_rest_runs(
    data_dir: Path, eval_env: dict[str, str], openai_server: FakeOpenAI, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "questions.jsonl"
    lines = [json.dumps(QUESTIONS[0]), "{not json", json.dumps({"answer": "no question here"}),
             json.dumps(QUESTIONS[1]), json.dumps(QUESTIONS[0] | {"question": "Same id, other question?"})]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "out"

    assert await run(str(path), "--profiles", "base", "--modes", "closed", "--out", str(out)) == 1

    err = capsys.readouterr().err
    assert "questions.jsonl line 2: not valid JSON" in err
    assert "questions.jsonl line 3: missing or empty `question`" in err
    assert "questions.jsonl line 5: id 'q1' repeats line 1" in err
    assert [r["id"] for r in report_of(out)["rows"]] == ["q1", "q2"]


async def test_a_csv_without_a_question_column_is_refused(
    eval_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "questions.csv"
    path.write_text("query,answer\nWhat?,That\n", encoding="utf-8")
    assert await run(str(path), "--profiles", "base", "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "bothbot eval answers: " in err and "no `question` column (columns: query, answer)" in err


async def test_an_unknown_profile_names_the_known_ones(
    data_dir: Path, eval_env: dict[str, str], question_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert await run(str(question_file), "--profiles", "base,tunde", "--out", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert "bothbot eval answers: unknown profile tunde; known profiles: base, judge, tuned" in err
    assert not (tmp_path / "out").exists()


async def test_a_model_error_is_recorded_and_the_run_goes_on(
    data_dir: Path, eval_env: dict[str, str], openai_server: FakeOpenAI, question_file: Path, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    openai_server.reply_text = grounded_model({q["question"]: q["answer"] for q in QUESTIONS})
    openai_server.fail_next(500)
    out = tmp_path / "out"
    args = [str(question_file), "--profiles", "base", "--modes", "oracle", "--concurrency", "1", "--out", str(out)]

    assert await run(*args) == 1

    report = report_of(out)
    assert cell(report, "base", "oracle")["n"] == 3 and cell(report, "base", "oracle")["errors"] == 1
    failed = [r for r in report["rows"] if r["error"]]
    assert [(r["id"], r["error"]) for r in failed] == [("q1", "model: the model endpoint answered HTTP 500")]
    assert len(openai_server.chat_requests) == 4  # no retry (max retries 0), no loop
    assert "1 row(s) not answered" in capsys.readouterr().err
    assert "q1" in (out / "report.md").read_text(encoding="utf-8")

    assert await run(*args) == 0  # the rerun tries the failed row again, and only it
    assert len(openai_server.chat_requests) == 5
    assert cell(report_of(out), "base", "oracle")["scores"]["exact_match"] == 1.0


async def test_oracle_needs_a_gold_passage(
    data_dir: Path, eval_env: dict[str, str], openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    path = tmp_path / "questions.csv"
    path.write_text(
        "id,question,answer,source\n"
        "q1,What is the codename of the alpha project?,HELIOTROPE,\n"
        "q2,Which port does the beta service listen on?,7311,docs/nowhere.md\n",
        encoding="utf-8",
    )
    out = tmp_path / "out"
    assert await run(str(path), "--profiles", "base", "--modes", "oracle", "--out", str(out)) == 1
    errors = {r["id"]: r["error"] for r in report_of(out)["rows"]}
    assert "names no gold passage" in errors["q1"]
    assert "docs/nowhere.md is not in knowledge base default" in errors["q2"]
    assert openai_server.chat_requests == []


async def test_a_judge_that_replies_garbage_marks_the_row(
    data_dir: Path, eval_env: dict[str, str], openai_server: FakeOpenAI, question_file: Path, tmp_path: Path
) -> None:
    grounded = grounded_model({q["question"]: q["answer"] for q in QUESTIONS})

    def reply(body: dict[str, Any]) -> str:
        if body["model"] != "judge-model":
            return grounded(body)
        graded = body["messages"][1]["content"]
        if "HELIOTROPE" in graded.split("Answer to grade:", 1)[1]:
            return "Sure! Here is my verdict: it looks right to me."
        correct = "I don't know" not in graded
        verdict = {"correct": correct, "claims": 1, "supported": 1, "reason": "ok"}
        return f"```json\n{json.dumps(verdict)}\n```"

    openai_server.reply_text = reply
    out = tmp_path / "out"
    args = [str(question_file), "--profiles", "base", "--modes", "closed,oracle", "--judge", "judge"]

    assert await run(*args, "--out", str(out)) == 0

    report = report_of(out)
    by_key = {(r["id"], r["mode"]): r for r in report["rows"]}
    assert by_key[("q1", "oracle")]["judge"]["error"].startswith("no JSON object in the judge's reply")
    assert "judge_correct" not in by_key[("q1", "oracle")]["scores"]
    assert by_key[("q2", "oracle")]["scores"]["judge_correct"] == 1.0
    assert by_key[("q2", "oracle")]["scores"]["judge_faithfulness"] == 1.0
    oracle = cell(report, "base", "oracle")
    assert oracle["scores"]["judge_correct"] == 1.0 and oracle["scored"]["judge_correct"] == 3
    assert cell(report, "base", "closed")["scores"]["judge_correct"] == 0.0
    assert "judge_faithfulness" not in cell(report, "base", "closed")["scores"]  # no sources were given
    assert report["judge"]["model"] == "judge-model" and "JSON" in report["judge"]["system_prompt"]
    assert "## Judge" in (out / "report.md").read_text(encoding="utf-8")
    judge_bodies = [r.body for r in openai_server.chat_requests if r.body["model"] == "judge-model"]
    assert len(judge_bodies) == 8 and {b["temperature"] for b in judge_bodies} == {0.0}


async def test_oracle_prefers_the_chunks_of_the_source_that_match(tmp_path: Path) -> None:
    """A gold source with more chunks than top k: the oracle gives the k its search ranks highest."""
    env = RetrievalEnvironment(config=RetrievalConfig(chunk_tokens=16, chunk_overlap=0), data_dir=tmp_path / "kb")
    service = await open_knowledge_base(env)
    try:
        filler = " ".join(f"word{i}" for i in range(40))
        text = f"{filler}\n\nThe secret harbour is called Velmora.\n\n{filler} more filler words here."
        await service.ingest_documents([Document(source="long.md", title="Long", text=text, format="text")])
        chunks = await service.passages(["default"], sources=["long.md"])
        assert len(chunks) > 2
        item = QuestionItem(id="x", question="What is the secret harbour called?", line=1, sources=("long.md",))
        best = await gold_passages(service, ["default"], item, top_k=1)
        assert len(best) == 1 and "Velmora" in best[0].text
        everything = await gold_passages(service, ["default"], item, top_k=len(chunks))
        assert [p.chunk_id for p in everything] == [p.chunk_id for p in chunks]  # all of them, document order
        by_id = QuestionItem(id="y", question="?", line=1, chunk_ids=(chunks[-1].chunk_id, chunks[0].chunk_id))
        assert [p.chunk_id for p in await gold_passages(service, ["default"], by_id, top_k=1)] == [
            chunks[-1].chunk_id, chunks[0].chunk_id
        ]
    finally:
        await service.aclose()


def test_a_row_cut_off_mid_write_runs_again(tmp_path: Path) -> None:
    log = RowLog(tmp_path / "rows.jsonl")
    row = AnswerRow(index=0, id="q1", profile="base", model="m", mode="closed", question="?", answer="a")
    log.open()
    log.append(row)
    log.close()
    with (tmp_path / "rows.jsonl").open("a", encoding="utf-8") as fh:
        fh.write(row.model_copy(update={"id": "q2"}).model_dump_json()[:30])  # killed mid-write
    rows, problems = log.read()
    assert rows == [row] and problems == ["rows.jsonl line 2: cut off (an interrupted write); that row runs again"]
    log.open()
    log.append(row.model_copy(update={"id": "q3"}))
    log.close()
    rows, problems = log.read()
    assert [r.id for r in rows] == ["q1", "q3"]
    assert problems == ["rows.jsonl line 2: unreadable; ignored"]


@pytest.mark.skipif(not (PUBMEDQA / "ori_pqal.json").is_file(), reason="needs the PubMedQA data in ../shared")
async def test_pubmedqa_sample_of_ten_against_a_grounded_fake(
    eval_env: dict[str, str], openai_server: FakeOpenAI, tmp_path: Path
) -> None:
    source = read_pubmedqa(PUBMEDQA)
    truth = json.loads((PUBMEDQA / "test_ground_truth.json").read_text(encoding="utf-8"))
    assert len(source.questions) == 500 and [q.item.id for q in source.questions] == list(truth)
    assert {truth[i] for i in list(truth)[:10]} == {"yes"}  # the file is sorted: its first ten are no sample
    first = [q.item for q in sample_questions(source.questions, 10, seed=0)]
    positions = [list(truth).index(i.id) for i in first]
    assert positions == sorted(positions) and len({truth[i.id] for i in first}) > 1

    by_question = {i.question: i for i in first}

    def reply(body: dict[str, Any]) -> str:
        item = by_question[body["messages"][-1]["content"].split("\n\nAnswer with one of:", 1)[0]]
        system = body["messages"][0]["content"]
        for n, _ in sources_in(body).items():
            if f"[{n}] {item.id}\n" in system:
                return f"{item.answer.capitalize() if item.answer else ''}. The abstract says so [{n}]."
        return "I don't know; the sources do not cover this."

    openai_server.reply_text = reply
    out = tmp_path / "out"
    assert await run("--pubmedqa", str(PUBMEDQA), "--limit", "10", "--profiles", "base,tuned", "--out", str(out)) == 0

    report = report_of(out)
    assert report["questions"] == 10
    assert [r["id"] for r in report["rows"][::6]] == [i.id for i in first]
    for profile in ("base", "tuned"):
        assert cell(report, profile, "closed")["scores"]["accuracy"] == 0.0
        assert cell(report, profile, "closed")["scores"]["abstention"] == 1.0
        assert cell(report, profile, "oracle")["scores"]["accuracy"] == 1.0
        retrieved = cell(report, profile, "retrieved")["scores"]
        assert retrieved["accuracy"] == retrieved["hit_at_k"] > 0.5
    assert report["verdict"]["metric"] == "accuracy"
    prompts = [r.body["messages"][-1]["content"] for r in openai_server.chat_requests]
    assert all(p.endswith("Answer with one of: yes, no, maybe; then explain briefly.") for p in prompts)


def test_what_a_resumed_run_may_change() -> None:
    first = RunSettings(questions="q.jsonl", questions_sha256="0" * 64, count=3, limit=3,
                        profiles=(ProfileInfo(name="base", model="m-1", price_input_per_mtok=1.0),),
                        modes=("closed",), kbs=("default",), top_k=5)
    later = first.model_copy(update={
        "count": 9, "limit": None, "seed": 4,
        "profiles": (ProfileInfo(name="base", model="m-1", price_input_per_mtok=2.0),),
    })
    assert later.resume_conflicts(first) == []
    other_model = first.model_copy(update={"profiles": (ProfileInfo(name="base", model="m-2"),), "top_k": 8})
    conflicts = other_model.resume_conflicts(first)
    assert [c.split(":", 1)[0] for c in conflicts] == ["profiles", "top_k"]
    assert "'m-1'" in conflicts[0].split(" then, ")[0] and "'m-2'" in conflicts[0].split(" then, ")[1]
