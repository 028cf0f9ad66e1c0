"""The one reader of question sets: JSON Lines, CSV, chat files with and without their sidecar, bad lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.questions import QuestionFileError, QuestionItem, load_questions, prompt_question, sidecar_path


def test_jsonl_with_problems_named_by_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_bytes(
        b'{"question": "What is A?", "answer": "a", "source": "docs/a.md", "chunk_id": "x|y"}\n'
        b"\n"
        b"{not json\n"
        b'{"answer": "no question"}\n'
        b'{"question": "caf\xe9?"}\n'
        b'{"question": "Empty?", "answer": "  "}\n'
        b'{"question": "Which?", "answer": "yes", "choices": ["yes", "no", "maybe"], "id": "q7"}\n'
    )
    loaded = load_questions(path, require_answer=True)
    assert [i.question for i in loaded.items] == ["What is A?", "Which?"]
    first = loaded.items[0]
    assert (first.sources, first.chunk_ids, first.line) == (("docs/a.md",), ("x", "y"), 1)
    assert loaded.items[1].id == "q7" and loaded.items[1].choices == ("yes", "no", "maybe")
    problems = [str(p) for p in loaded.problems]
    assert problems[0].startswith("line 3: not valid JSON")
    assert problems[1] == "line 4: missing or empty `question`"
    assert problems[2].startswith("line 5: not UTF-8 text (byte 0xe9")
    assert problems[3] == "line 6: missing or empty `answer`"
    assert len(load_questions(path).items) == 3  # answers optional for evaluation


def test_csv_columns_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "q.csv"
    good.write_text('question,answer,choices\n"Is it, really?",yes,yes|no\nSecond?,,\n', encoding="utf-8")
    loaded = load_questions(good)
    assert [(i.question, i.answer, i.choices, i.line) for i in loaded.items] == [
        ("Is it, really?", "yes", ("yes", "no"), 2),
        ("Second?", "", (), 3),
    ]
    missing = tmp_path / "m.csv"
    missing.write_text("query,answer\nx,y\n", encoding="utf-8")
    with pytest.raises(QuestionFileError, match="no `question` column"):
        load_questions(missing)
    latin = tmp_path / "l.csv"
    latin.write_bytes(b"question,answer\nok?,fine\ncaf\xe9?,x\n")
    with pytest.raises(QuestionFileError, match="line 3 is not UTF-8"):
        load_questions(latin)
    with pytest.raises(QuestionFileError, match="no such file"):
        load_questions(tmp_path / "none.csv")


def test_chat_file_reads_its_sidecar_or_its_messages(tmp_path: Path) -> None:
    chat = tmp_path / "validation.jsonl"
    rows = [{"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "Q1?"},
                          {"role": "assistant", "content": "A1 [1]"}]}]
    chat.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    plain = load_questions(chat)
    assert [(i.question, i.answer) for i in plain.items] == [("Q1?", "A1 [1]")]
    item = QuestionItem(id="q1", question="Q1?", line=1, answer="A1", chunk_ids=("c9",), sources=("d.md",))
    sidecar_path(chat).write_text(json.dumps(item.to_json()) + "\n", encoding="utf-8")
    gold = load_questions(chat).items[0]
    assert (gold.id, gold.answer, gold.chunk_ids, gold.sources) == ("q1", "A1", ("c9",), ("d.md",))


def test_prompt_question_lists_choices() -> None:
    plain = QuestionItem(id="1", question="Why?", line=1)
    assert prompt_question(plain) == "Why?"
    choice = QuestionItem(id="2", question="Does it?", line=1, choices=("yes", "no", "maybe"))
    assert prompt_question(choice).startswith("Does it?\n\nAnswer with one of: yes, no, maybe")
