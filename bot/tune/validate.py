"""Checks of a chat fine-tuning file before anything is uploaded or trained.

The rules are OpenAI's (JSON Lines of ``{"messages": [...]}``; roles system, user, assistant; at least
one assistant message an example; at least 10 examples; examples longer than the model's training
context are truncated, so they are reported), plus two of our own: no duplicate examples and no empty
answers. Every problem names its line.
"""

from __future__ import annotations

import asyncio
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.tune.tokens import TokenCounter

MIN_EXAMPLES = 10
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True, slots=True)
class Problem:
    line: int | None  # None: about the whole file
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}" if self.line is not None else self.message


@dataclass(frozen=True)
class ValidationReport:
    path: Path
    examples: int
    problems: tuple[Problem, ...]
    token_counts: tuple[int, ...]
    tokenizer: str
    limit: int
    limit_source: str

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def tokens_p50(self) -> int:
        return int(statistics.median(self.token_counts)) if self.token_counts else 0

    @property
    def tokens_max(self) -> int:
        return max(self.token_counts, default=0)

    def summary(self) -> str:
        verdict = "ok" if self.ok else f"{len(self.problems)} problem(s)"
        return (
            f"{self.path}: {self.examples} examples, {verdict}; tokens per example p50 {self.tokens_p50}, "
            f"max {self.tokens_max} (limit {self.limit}: {self.limit_source}; tokenizer {self.tokenizer})"
        )


async def validate_file(path: Path, counter: TokenCounter, *, min_examples: int = MIN_EXAMPLES) -> ValidationReport:
    """Read and check ``path``; raises ``OSError`` only when the file cannot be read at all."""
    data = await asyncio.to_thread(path.read_bytes)
    return await asyncio.to_thread(validate_lines, path, data.splitlines(), counter, min_examples)


def validate_lines(
    path: Path, lines: Sequence[bytes], counter: TokenCounter, min_examples: int = MIN_EXAMPLES
) -> ValidationReport:
    problems: list[Problem] = []
    counts: list[int] = []
    seen: dict[str, int] = {}
    examples = 0
    last = len(lines)
    while last > 0 and not lines[last - 1].strip():
        last -= 1  # trailing blank lines are harmless
    for number, raw in enumerate(lines[:last], start=1):
        messages = _parse_line(number, raw, problems)
        if messages is None:
            continue
        examples += 1
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        if key in seen:
            problems.append(Problem(number, f"duplicate of line {seen[key]} (the same messages)"))
        else:
            seen[key] = number
        tokens = counter.count_messages(messages)
        counts.append(tokens)
        if tokens > counter.limit:
            problems.append(
                Problem(number, f"{tokens} tokens, over the limit of {counter.limit} ({counter.limit_source}); "
                        "the example would be truncated")
            )
    if examples < min_examples:
        problems.append(Problem(None, f"{examples} valid example(s); at least {min_examples} are needed"))
    return ValidationReport(
        path=path, examples=examples, problems=tuple(problems), token_counts=tuple(counts),
        tokenizer=counter.name, limit=counter.limit, limit_source=counter.limit_source,
    )


def _parse_line(number: int, raw: bytes, problems: list[Problem]) -> list[dict[str, str]] | None:
    """The example's messages when the line is a usable example; otherwise its problems are added."""
    if not raw.strip():
        problems.append(Problem(number, "empty line"))
        return None
    try:
        row: Any = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        problems.append(Problem(number, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"))
        return None
    except json.JSONDecodeError as exc:
        problems.append(Problem(number, f"not valid JSON ({exc.msg} at column {exc.colno})"))
        return None
    if not isinstance(row, dict):
        problems.append(Problem(number, "not a JSON object"))
        return None
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        problems.append(Problem(number, "no `messages` list"))
        return None
    found: list[Problem] = []
    clean: list[dict[str, str]] = []
    for index, message in enumerate(messages, start=1):
        if not isinstance(message, dict):
            found.append(Problem(number, f"message {index} is not a JSON object"))
            continue
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            found.append(Problem(number, f"message {index} has unknown role {role!r} (allowed: {', '.join(ROLES)})"))
        if not isinstance(content, str):
            found.append(Problem(number, f"message {index} ({role}) has no string `content`"))
        elif not content.strip():
            what = "empty assistant answer" if role == "assistant" else f"message {index} ({role}) has empty content"
            found.append(Problem(number, what))
        clean.append({"role": str(role), "content": content if isinstance(content, str) else ""})
    if not any(m["role"] == "assistant" for m in clean):
        found.append(Problem(number, "no assistant message"))
    problems.extend(found)
    return None if found else clean
