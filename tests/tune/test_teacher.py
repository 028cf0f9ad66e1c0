"""``tune dataset --from-kb --teacher``: questions and grounded answers from the chunks, through the
real model client talking to the OpenAI-compatible fake; garbage replies skipped and counted."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.tune.teacher import ANSWER_SYSTEM, QUESTIONS_SYSTEM, parse_questions
from tests.fakes.openai_server import FakeOpenAI
from tests.tune.test_dataset import Kb, kb, read_jsonl  # noqa: F401  (kb is a fixture)

GARBAGE_MARK = "grey recycling box"  # the chunk whose question reply is garbage


def teacher_reply(body: dict[str, Any]) -> str:
    """Questions as JSON for the question prompt; the passage's own sentence for the answer prompt."""
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if system.startswith(QUESTIONS_SYSTEM.split("{")[0]):
        if GARBAGE_MARK in user:
            return "Sure! Here are some great questions about toner."
        where = user.splitlines()[0]
        return "```json\n" + json.dumps([f"What does {where} say?", f"Tell me about {where}?"]) + "\n```"
    assert system.startswith(ANSWER_SYSTEM)
    passage = system.split("Passage:\n", 1)[1]
    return passage.strip().splitlines()[-1]


@pytest.fixture
def teacher_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "bothbot.toml"
    config.write_text('[profiles.teacher]\nmodel = "teacher-model"\n')
    monkeypatch.setenv("BOTHBOT_CONFIG", str(config))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret-key-123456")
    monkeypatch.setenv("BOTHBOT_MODEL_MAX_RETRIES", "0")


@pytest.mark.usefixtures("teacher_env")
async def test_teacher_writes_grounded_questions_and_garbage_is_skipped(
    kb: Kb,  # noqa: F811
    openai_server: FakeOpenAI,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    openai_server.reply_text = teacher_reply
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.base_url)
    out = tmp_path / "out"
    args = ["tune", "dataset", "--from-kb", "--teacher", "teacher", "--questions-per-chunk", "2",
            "--concurrency", "3", "--validation", "0.2", "--out", str(out)]
    assert await asyncio.to_thread(main, args) == 1  # one chunk skipped
    err = capsys.readouterr().err
    garbage = next(p for text, p in kb.chunks.items() if GARBAGE_MARK in text)
    assert f"skipped chunk {garbage.chunk_id}: the teacher's reply is not a JSON list of questions" in err

    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["source"]["kind"] == "from-kb" and manifest["source"]["chunks"] == 20
    assert manifest["source"]["teacher_skipped"] == 1
    assert manifest["counts"]["examples"] == 38  # 19 chunks, 2 questions each
    assert manifest["gold_selection"]["chunk_id"] == 38
    assert [s["ref"] for s in manifest["skipped"]] == [f"chunk {garbage.chunk_id}"]

    by_id = {p.chunk_id: p for p in kb.chunks.values()}
    rows = read_jsonl(out / "train.questions.jsonl") + read_jsonl(out / "validation.questions.jsonl")
    assert len(rows) == 38
    for row in rows:
        chunk = by_id[row["chunk_id"]]
        assert row["answer"] == chunk.text.strip()  # the answer came from its own chunk only
        assert row["source"] == chunk.source
        assert chunk.title in row["question"]
    chats = openai_server.chat_requests
    assert len(chats) == 20 + 38
    assert all(r.body["model"] == "teacher-model" for r in chats)
    answer_prompts = [r.body["messages"][0]["content"] for r in chats if r.body["messages"][0]["content"].startswith(
        ANSWER_SYSTEM)]
    assert len(answer_prompts) == 38
    assert all(sum(text in prompt for text in kb.chunks) == 1 for prompt in answer_prompts)


async def test_unknown_teacher_profile_and_missing_teacher_exit_2(
    kb: Kb,  # noqa: F811
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = str(tmp_path / "out")
    assert await asyncio.to_thread(main, ["tune", "dataset", "--from-kb", "--teacher", "nobody", "--out", out]) == 2
    assert "bothbot tune dataset: unknown teacher profile 'nobody' (profiles: none)" in capsys.readouterr().err
    assert await asyncio.to_thread(main, ["tune", "dataset", "--from-kb", "--out", out]) == 2
    assert "--from-kb needs --teacher PROFILE" in capsys.readouterr().err


def test_parse_questions() -> None:
    assert parse_questions('["A?", "B?", "A?"]', 5) == ["A?", "B?"]
    assert parse_questions('Here you go: ["A?", "B?", "C?"] enjoy', 2) == ["A?", "B?"]
    assert parse_questions('{"questions": ["A?"]}', 3) == ["A?"]
    assert parse_questions("```json\n[\"A?\"]\n```", 3) == ["A?"]
    assert parse_questions("no list here", 3) is None
    assert parse_questions("[1, 2]", 3) is None
    assert parse_questions("[]", 3) is None
