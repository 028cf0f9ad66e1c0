"""``bothbot tune validate``: every class of problem, named with its line; token counting and limits."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.tune.tokens import estimate_count, token_counter
from bot.tune.validate import validate_lines
from tests.tune.tiny_model import smollm2_gguf


def example(n: int, answer: str = "It is done like this [1].") -> dict[str, Any]:
    return {"messages": [
        {"role": "system", "content": "You are bothbot."},
        {"role": "user", "content": f"Question number {n}?"},
        {"role": "assistant", "content": answer},
    ]}


def good_lines(count: int = 10) -> list[str]:
    return [json.dumps(example(n)) for n in range(count)]


def write(path: Path, lines: list[str | bytes]) -> Path:
    raw = [line if isinstance(line, bytes) else line.encode() for line in lines]
    path.write_bytes(b"\n".join(raw) + b"\n")
    return path


def test_a_good_file_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "train.jsonl", list(good_lines()))
    assert main(["tune", "validate", str(path), "--target-model", "gpt-4o-mini"]) == 0
    out = capsys.readouterr().out
    assert "10 examples, ok" in out
    assert "limit 65536: OpenAI training context of gpt-4o-mini" in out


def test_each_problem_is_named_with_its_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad: dict[int, str | bytes] = {
        11: "{not json",
        12: json.dumps(["a", "list"]),
        13: json.dumps({"prompt": "x", "completion": "y"}),
        14: json.dumps({"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "ok"}]}),
        15: json.dumps({"messages": [{"role": "user", "content": "only a question"}]}),
        16: json.dumps(example(99, answer="   ")),
        17: json.dumps({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "ok"}]}),
        18: json.dumps(example(3)),
        19: b'{"messages": "caf\xe9"}',
        20: "",
        21: json.dumps({"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "ok"}]}),
        22: json.dumps(example(100, answer="word " * 200)),
    }
    path = write(tmp_path / "train.jsonl", [*good_lines(), *bad.values()])
    assert main(["tune", "validate", str(path), "--max-tokens", "150"]) == 1
    err = capsys.readouterr().err
    expected = [
        "line 11: not valid JSON",
        "line 12: not a JSON object",
        "line 13: no `messages` list",
        "line 14: message 1 has unknown role 'robot' (allowed: system, user, assistant)",
        "line 15: no assistant message",
        "line 16: empty assistant answer",
        "line 17: message 1 (user) has no string `content`",
        "line 18: duplicate of line 4 (the same messages)",
        "line 19: not UTF-8 text (byte 0xe9",
        "line 20: empty line",
        "line 21: message 1 (user) has empty content",
        "line 22: 2",  # its token count, over the limit
    ]
    for text in expected:
        assert f"train.jsonl: {text}" in err, text
    assert "over the limit of 150 (--max-tokens)" in err
    assert err.count(": line ") == len(expected)


def test_too_few_examples(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "train.jsonl", list(good_lines(9)))
    assert main(["tune", "validate", str(path)]) == 1
    assert "9 valid example(s); at least 10 are needed" in capsys.readouterr().err


def test_missing_file_and_unloadable_local_model_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tune", "validate", str(tmp_path / "nope.jsonl")]) == 2
    assert "bothbot tune validate: " in capsys.readouterr().err
    path = write(tmp_path / "train.jsonl", list(good_lines()))
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    assert main(["tune", "validate", str(path), "--target-model", str(folder)]) == 2
    assert f"bothbot tune validate: cannot load the tokenizer of {folder}" in capsys.readouterr().err


async def test_openai_counts_are_exact_offline_and_unknown_models_are_labelled_estimates() -> None:
    pytest.importorskip("quicktok")  # ships the encoding files; tiktoken alone downloads them on first use
    counter = await token_counter("ft:gpt-4o-mini-2024-07-18:acme:support:abc")
    assert counter.exact and counter.name.startswith("o200k_base")
    assert counter.limit == 65_536
    messages = [{"role": "user", "content": "hello world"}]
    # OpenAI's chat format: 3 a message + role ("user": 1) + content ("hello world": 2) + 3 to prime the reply.
    assert counter.count_messages(messages) == 9
    assert (await token_counter("gpt-3.5-turbo-0125")).limit == 16_385
    guess = await token_counter("llama3.1:8b")
    assert not guess.exact and guess.name.startswith("estimate")
    assert guess.count_messages(messages) == estimate_count(messages)


async def test_a_local_gguf_model_counts_with_its_own_tokenizer_and_context() -> None:
    pytest.importorskip("transformers")
    gguf = smollm2_gguf()
    counter = await token_counter(str(gguf))
    assert counter.exact and "chat template" in counter.name
    assert counter.limit == 8192 and counter.limit_source.startswith("context length of")
    short = counter.count_messages([{"role": "user", "content": "hi"}])
    longer = counter.count_messages([{"role": "user", "content": "hi " * 50}])
    assert 0 < short < longer
    report = validate_lines(Path("x.jsonl"), [json.dumps(example(1)).encode()], counter, min_examples=1)
    assert report.ok and report.token_counts[0] > 10
