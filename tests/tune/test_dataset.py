"""``bothbot tune dataset`` end to end: a knowledge base ingested with the real CLI, the real retriever,
files written and read back, compared with direct searches and with the chat's own prompt builder."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.prompts import build_messages
from bot.questions import QuestionItem, load_questions, prompt_question
from bot.runtime import Runtime
from bot.settings import load_settings
from bot.tune.dataset import normalise_question
from retrieval.api import Passage, SearchScope
from tests.conftest import TEST_REDIS_URL, IngestDocs
from tests.core.helpers import ask
from tests.fakes.openai_server import FakeOpenAI

# Ten documents of two sections; every section one sentence that appears nowhere else.
TOPICS: dict[str, tuple[str, list[tuple[str, str, str, str]]]] = {
    "laptops.md": ("Laptops", [
        ("Requests", "To request a laptop, open a ticket in the IT portal under Hardware.",
         "How do I request a laptop?", "Open a ticket in the IT portal under Hardware."),
        ("Delivery", "Laptops arrive within five working days through the courier desk.",
         "How long does laptop delivery take?", "Five working days."),
    ]),
    "holidays.md": ("Holidays", [
        ("Allowance", "Every employee has twenty eight days of paid holiday a year.",
         "How many days of paid holiday do employees get?", "Twenty eight days a year."),
        ("Carry over", "Unused holiday days carry over until the end of March.",
         "Until when do unused holiday days carry over?", "Until the end of March."),
    ]),
    "vpn.md": ("VPN", [
        ("Setup", "Install WireGuard and import the profile from the network page.",
         "Which client do I install for the VPN?", "WireGuard, with the profile from the network page."),
        ("Endpoint", "The VPN endpoint is vpn.example.com on port 51820.",
         "What is the VPN endpoint?", "vpn.example.com on port 51820."),
    ]),
    "expenses.md": ("Expenses", [
        ("Receipts", "Upload expense receipts to the finance tool within thirty days.",
         "Where do expense receipts go?", "To the finance tool, within thirty days."),
        ("Limits", "Meals on business trips are reimbursed up to forty euros a day.",
         "What is the daily meal limit on business trips?", "Forty euros a day."),
    ]),
    "parking.md": ("Parking", [
        ("Permits", "Parking permits for the garage are issued by the reception desk.",
         "Who issues garage parking permits?", "The reception desk."),
        ("Bicycles", "Bicycle racks stand behind the north entrance near the cafeteria.",
         "Where are the bicycle racks?", "Behind the north entrance near the cafeteria."),
    ]),
    "security.md": ("Security", [
        ("Badges", "Lost badges must be reported to security within one hour.",
         "How quickly must a lost badge be reported?", "Within one hour."),
        ("Passwords", "Passwords rotate every ninety days and need sixteen characters.",
         "How often do passwords rotate?", "Every ninety days."),
    ]),
    "payroll.md": ("Payroll", [
        ("Payday", "Salaries are paid on the twenty fifth day of each month.",
         "When are salaries paid?", "On the twenty fifth of each month."),
        ("Payslips", "Payslips are published in the HR portal as PDF documents.",
         "Where are payslips published?", "In the HR portal, as PDF documents."),
    ]),
    "onboarding.md": ("Onboarding", [
        ("First day", "New hires meet their buddy at nine in the lobby on the first day.",
         "Where do new hires meet their buddy?", "In the lobby at nine on the first day."),
        ("Training", "Mandatory compliance training must be finished in the first two weeks.",
         "When must compliance training be finished?", "In the first two weeks."),
    ]),
    "printing.md": ("Printing", [
        ("Printers", "Colour printers are located on the second floor next to the kitchen.",
         "Where are the colour printers?", "On the second floor next to the kitchen."),
        ("Toner", "Empty toner cartridges go into the grey recycling box.",
         "Where do empty toner cartridges go?", "Into the grey recycling box."),
    ]),
    "meetings.md": ("Meetings", [
        ("Rooms", "Meeting rooms are booked through the calendar with the room resource.",
         "How are meeting rooms booked?", "Through the calendar with the room resource."),
        ("Video", "Video calls use the conference camera switched on by the wall panel.",
         "How is the conference camera switched on?", "By the wall panel."),
    ]),
}


def docs() -> dict[str, str]:
    return {
        name: f"# {title}\n\n" + "\n\n".join(f"## {heading}\n\n{text}" for heading, text, _q, _a in sections) + "\n"
        for name, (title, sections) in TOPICS.items()
    }


@dataclass
class Kb:
    data: Path
    chunks: dict[str, Passage]  # by text


@pytest.fixture
def kb(ingest_docs: IngestDocs, monkeypatch: pytest.MonkeyPatch, redis_prefix: str, redis_cleanup: object) -> Kb:
    data = ingest_docs(docs())
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)
    monkeypatch.setenv("BOTHBOT_REDIS_PREFIX", redis_prefix)
    monkeypatch.setenv("BOTHBOT_DATA_DIR", str(data))

    async def stored() -> list[Passage]:
        runtime = await Runtime.start(load_settings())
        try:
            return await runtime.knowledge.passages(["default"])  # type: ignore[attr-defined,no-any-return]
        finally:
            await runtime.aclose()

    chunks = {p.text.strip(): p for p in asyncio.run(stored())}
    assert len(chunks) == 20
    return Kb(data, chunks)


def qa_rows(kb: Kb) -> list[dict[str, Any]]:
    """23 questions: most with a source, four with a chunk_id, three with neither; two asked twice."""
    rows: list[dict[str, Any]] = []
    for n, (_title, sections) in enumerate(TOPICS.values()):
        for m, (_heading, text, question, answer) in enumerate(sections):
            chunk = kb.chunks[text]
            row: dict[str, Any] = {"question": question, "answer": answer}
            index = 2 * n + m
            if index in (1, 6, 13):
                row["chunk_id"] = chunk.chunk_id
            elif index not in (4, 9, 17):
                row["source"] = chunk.source
            rows.append(row)
    rows.append({"question": "how do I request a LAPTOP", "answer": "Through the IT portal.",
                 "source": kb.chunks[TOPICS["laptops.md"][1][0][1]].source})
    rows.append({"question": "When are salaries paid", "answer": "The 25th.",
                 "source": kb.chunks[TOPICS["payroll.md"][1][0][1]].source})
    # No word in common with its gold chunk: the retriever misses it, so the gold is inserted.
    rows.append({"question": "What do I need to do after losing my card?", "answer": "Tell security within an hour.",
                 "chunk_id": kb.chunks[TOPICS["security.md"][1][0][1]].chunk_id})
    return rows


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def context_of(system: str, chunks: dict[str, Passage]) -> list[Passage]:
    """The passages a system message shows, in order (every chunk's text is unique here)."""
    found = [(system.find(text), p) for text, p in chunks.items() if text in system]
    return [p for _pos, p in sorted(found, key=lambda x: x[0])]


def examples(out: Path) -> Iterator[tuple[dict[str, Any], QuestionItem]]:
    for name in ("train", "validation"):
        lines = read_jsonl(out / f"{name}.jsonl")
        items = load_questions(out / f"{name}.jsonl", require_answer=True).items
        assert len(lines) == len(items)
        yield from zip(lines, items, strict=True)


async def search(data: Path, questions: list[str], limit: int) -> dict[str, list[Passage]]:
    runtime = await Runtime.start(load_settings(data_dir=data))
    try:
        scope = SearchScope(kbs=("default",), channel=None)
        return {q: list((await runtime.knowledge.search(q, scope, limit=limit)).passages) for q in questions}
    finally:
        await runtime.aclose()


@pytest.mark.parametrize(("share", "expected"), [(0.0, 0), (0.8, 18), (1.0, 23)])
def test_raft_dataset_matches_retrieval_and_chat_prompt(kb: Kb, tmp_path: Path, share: float, expected: int) -> None:
    qa = write_jsonl(tmp_path / "qa.jsonl", qa_rows(kb))
    out = tmp_path / "out"
    code = main(["tune", "dataset", "--qa", str(qa), "--golden-share", str(share), "--k", "3",
                 "--validation", "0.3", "--seed", "7", "--out", str(out)])
    assert code == 0

    rows = list(examples(out))
    assert len(rows) == 23
    ranked = asyncio.run(search(kb.data, [item.question for _l, item in rows], limit=4))
    with_gold = inserted = 0
    for line, item in rows:
        assert list(line) == ["messages"]
        messages = line["messages"]
        assert [m["role"] for m in messages] == ["system", "user", "assistant"]
        assert all(list(m) == ["role", "content"] and m["content"].strip() for m in messages)
        context = context_of(messages[0]["content"], kb.chunks)
        gold = set(item.chunk_ids)
        assert len(gold) == 1
        # The chat's own prompt for exactly these passages and this question.
        assert messages[:2] == build_messages(
            system_prompt=None, question=prompt_question(item), passages=context, history=(), rag=True
        )
        # Apart from the gold passage, the context is what a direct search returns, in its order.
        direct = [p.chunk_id for p in ranked[item.question] if p.chunk_id not in gold]
        others = [p.chunk_id for p in context if p.chunk_id not in gold]
        assert others == direct[: len(others)]
        assert len(others) == min(len(direct), 3 - (1 if gold & {p.chunk_id for p in context} else 0))
        numbers = [i for i, p in enumerate(context, start=1) if p.chunk_id in gold]
        cites = [int(n) for n in re.findall(r"\[(\d+)\]", messages[2]["content"])]
        assert cites == numbers  # the gold is cited when present, nothing is cited when it is not
        with_gold += bool(numbers)
        inserted += bool(numbers) and not gold & {p.chunk_id for p in ranked[item.question][:3]}
    assert with_gold == expected
    if share == 1.0:
        assert inserted == 1  # the gold the retriever missed is put in

    cut = len(read_jsonl(out / "train.jsonl"))
    train = {normalise_question(item.question) for _l, item in rows[:cut]}
    validation = {normalise_question(item.question) for _l, item in rows[cut:]}
    assert validation and not train & validation
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["gold_in_context"] == expected
    assert manifest["counts"]["train"] + manifest["counts"]["validation"] == 23
    assert manifest["k"] == 3 and manifest["golden_share"] == share and manifest["seed"] == 7
    assert manifest["gold_selection"] == {"chunk_id": 4, "source_ranked": 16, "source_overlap": 0, "top_retrieved": 3}
    assert manifest["training_tokens"]["epochs"] == 3
    assert manifest["tokens_per_example"]["max"] >= manifest["tokens_per_example"]["p50"] > 50
    assert main(["tune", "validate", str(out / "train.jsonl")]) == 0


def test_same_seed_same_files_and_profile_system_prompt(
    kb: Kb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "bothbot.toml"
    config.write_text('[profiles.tuned]\nmodel = "gpt-4o-mini"\nsystem_prompt = "You are Acme\'s helper."\n')
    monkeypatch.setenv("BOTHBOT_CONFIG", str(config))
    qa = write_jsonl(tmp_path / "qa.jsonl", qa_rows(kb))
    args = ["tune", "dataset", "--qa", str(qa), "--target-model", "tuned", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    for name in ("train.jsonl", "validation.jsonl", "validation.questions.jsonl"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    first = read_jsonl(tmp_path / "a" / "train.jsonl")[0]["messages"][0]["content"]
    assert first.startswith("You are Acme's helper.\n\n")
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["target_model"] == "tuned"
    assert manifest["tokenizer"]["limit"] == 65_536
    assert manifest["k"] == 5  # the chat's retrieval.top_k


def test_refuses_a_non_empty_out_dir_unless_forced(
    kb: Kb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    qa = write_jsonl(tmp_path / "qa.jsonl", qa_rows(kb))
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(["tune", "dataset", "--qa", str(qa), "--out", str(out)]) == 2
    assert "bothbot tune dataset: --out" in capsys.readouterr().err
    assert not (out / "train.jsonl").exists()
    assert main(["tune", "dataset", "--qa", str(qa), "--out", str(out), "--force"]) == 0
    assert (out / "train.jsonl").is_file() and (out / "notes.txt").read_text() == "mine"


def test_bad_rows_are_named_and_the_rest_used(kb: Kb, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = qa_rows(kb)
    lines = [json.dumps(r).encode() for r in rows]
    lines.insert(2, json.dumps({"question": "Where is the cafeteria?"}).encode())  # line 3: no answer
    lines.insert(4, json.dumps({"question": "Who cleans?", "answer": "  "}).encode())  # line 5: empty answer
    lines.insert(6, b'{"question": "Caf\xe9 hours?", "answer": "9"}')  # line 7: not UTF-8
    lines.insert(8, json.dumps({"question": "Parking?", "answer": "x", "source": "nowhere.md"}).encode())  # line 9
    qa = tmp_path / "qa.jsonl"
    qa.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp_path / "out"
    assert main(["tune", "dataset", "--qa", str(qa), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "line 3: missing or empty `answer`" in err
    assert "line 5: missing or empty `answer`" in err
    assert "line 7: not UTF-8 text (byte 0xe9" in err
    assert "line 9: source nowhere.md has no chunks in knowledge base default" in err
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"]["examples"] == 23
    assert sorted(s["ref"] for s in manifest["skipped"]) == ["line 3", "line 5", "line 7", "line 9"]


def test_too_few_usable_rows_exit_2(kb: Kb, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [*qa_rows(kb)[:9], {"question": "Anything else?"}]
    qa = write_jsonl(tmp_path / "qa.jsonl", rows)
    assert main(["tune", "dataset", "--qa", str(qa), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "line 10: missing or empty `answer`" in err
    assert "bothbot tune dataset: only 9 usable question(s); at least 10 are needed" in err
    assert not (tmp_path / "out").exists()


def test_csv_without_question_column_exit_2(kb: Kb, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    qa = tmp_path / "qa.csv"
    qa.write_text("query,answer\nHow?,Like this.\n", encoding="utf-8")
    assert main(["tune", "dataset", "--qa", str(qa), "--out", str(tmp_path / "out")]) == 2
    assert "line 1: the header has no `question` column" in capsys.readouterr().err


def test_csv_without_answer_column_names_each_line(
    kb: Kb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    qa = tmp_path / "qa.csv"
    qa.write_text("question,source\n" + "".join(f"Question {i}?,x.md\n" for i in range(12)), encoding="utf-8")
    assert main(["tune", "dataset", "--qa", str(qa), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "line 2: missing or empty `answer`" in err and "line 13: missing or empty `answer`" in err
    assert "only 0 usable question(s)" in err


def test_unknown_and_empty_kb_exit_2(
    kb: Kb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    qa = write_jsonl(tmp_path / "qa.jsonl", qa_rows(kb))
    assert main(["tune", "dataset", "--qa", str(qa), "--kb", "nope", "--out", str(tmp_path / "o1")]) == 2
    assert "bothbot tune dataset: unknown knowledge base nope (knowledge bases: default)" in capsys.readouterr().err
    monkeypatch.setenv("BOTHBOT_DATA_DIR", str(tmp_path / "empty-data"))
    assert main(["tune", "dataset", "--qa", str(qa), "--out", str(tmp_path / "o2")]) == 2
    assert "unknown knowledge base default (knowledge bases: none; run `bothbot ingest PATH` first)" in (
        capsys.readouterr().err
    )


async def test_from_feedback_uses_answers_rated_up(
    kb: Kb, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, openai_server: FakeOpenAI
) -> None:
    openai_server.reply_text = lambda body: f"Here is what I found about {body['messages'][-1]['content']} [1]."
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-key-123456")
    questions = [q for _title, sections in TOPICS.values() for _h, _t, q, _a in sections][:13]
    runtime = await Runtime.start(load_settings())
    try:
        finals = [await ask(runtime.engine, q, event_id=f"fb-{i}") for i, q in enumerate(questions)]
        for i, final in enumerate(finals):
            assert final.trace_id and final.citations
            value = "down" if i == 12 else "up"  # one answer rated down: left out
            assert await runtime.engine.record_feedback(final.trace_id, user="U9", value=value, platform="slack")
    finally:
        await runtime.aclose()

    out = tmp_path / "out"
    assert await asyncio.to_thread(main, ["tune", "dataset", "--from-feedback", "--validation", "0", "--out",
                                          str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["source"] == {"kind": "from-feedback", "rated_up": 12}
    assert manifest["gold_selection"]["chunk_id"] == 12
    items = load_questions(out / "train.jsonl").items
    assert [i.question for i in items] == questions[:12]
    for final, item in zip(finals, items, strict=False):
        assert item.chunk_ids == (final.citations[0].chunk_id,)
        assert item.answer == f"Here is what I found about {item.question}."  # the old [1] is not kept


def test_channel_only_documents_never_become_training_data(
    kb: Kb, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    private = tmp_path / "private"
    private.mkdir()
    (private / "salaries.md").write_text("# Salaries\n\nThe CEO earns a secret amount of money.\n", encoding="utf-8")
    assert main(["ingest", str(private), "--scope", "slack:C9"]) == 0
    capsys.readouterr()

    async def scoped_chunk() -> Passage:
        runtime = await Runtime.start(load_settings())
        try:
            (chunk,) = await runtime.knowledge.passages(["default"], sources=["private/salaries.md"])  # type: ignore[attr-defined]
            return chunk  # type: ignore[no-any-return]
        finally:
            await runtime.aclose()

    chunk = asyncio.run(scoped_chunk())
    assert chunk.scope == ("slack:C9",) and not chunk.visible_from(None) and chunk.visible_from("slack:C9")
    rows = [
        *qa_rows(kb),
        {"question": "What does the CEO earn?", "answer": "A secret amount.", "source": "private/salaries.md"},
        {"question": "How much is the CEO paid?", "answer": "A secret amount.", "chunk_id": chunk.chunk_id},
    ]
    out = tmp_path / "out"
    assert main(["tune", "dataset", "--qa", str(write_jsonl(tmp_path / "qa.jsonl", rows)), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "line 24: source private/salaries.md is not visible in the training data's scope" in err
    assert f"line 25: chunk_id {chunk.chunk_id} is not visible" in err
    written = "".join((out / name).read_text(encoding="utf-8") for name in ("train.jsonl", "validation.jsonl"))
    assert "secret amount" not in written
