"""Question sets: the one reader of Q&A files for training data (``tune dataset --qa``) and evaluation.

Accepted files:

- JSON Lines, one object a line, or CSV with a header row. Columns: ``question`` (required),
  ``answer``, ``choices`` (a JSON list, or ``a|b|c`` in CSV), ``source`` (a document path as
  ``bothbot ingest`` names it; several separated by ``|``), ``chunk_id`` (likewise), ``id``.
- A chat fine-tuning file (``{"messages": [...]}`` a line), such as the ``validation.jsonl`` that
  ``bothbot tune dataset`` writes: when its sidecar ``<name>.questions.jsonl`` (written beside it)
  exists, that is read instead (it keeps the gold passages); otherwise the question is the last user
  message and the answer the last assistant message.

Every problem is named with its line number and the rest of the file is still read.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QUESTION_SIDECAR_SUFFIX = ".questions.jsonl"


class QuestionFileError(Exception):
    """The file cannot be read at all (missing, not text, no ``question`` column)."""


@dataclass(frozen=True, slots=True)
class QuestionItem:
    id: str
    question: str
    line: int
    answer: str | None = None
    choices: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()
    chunk_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The row as this module reads it back (the sidecar format)."""
        row: dict[str, Any] = {"id": self.id, "question": self.question}
        if self.answer is not None:
            row["answer"] = self.answer
        if self.choices:
            row["choices"] = list(self.choices)
        if self.sources:
            row["source"] = "|".join(self.sources)
        if self.chunk_ids:
            row["chunk_id"] = "|".join(self.chunk_ids)
        return row


@dataclass(frozen=True, slots=True)
class LineProblem:
    line: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass(frozen=True, slots=True)
class QuestionSet:
    path: Path
    items: tuple[QuestionItem, ...]
    problems: tuple[LineProblem, ...] = field(default=())


def prompt_question(item: QuestionItem) -> str:
    """The user message for an item: the question, and the allowed answers when the set has choices.

    Training data and evaluation both call this, so a model is trained on the message it is judged on.
    """
    if not item.choices:
        return item.question
    return f"{item.question}\n\nAnswer with one of: {', '.join(item.choices)}; then explain briefly."


def question_id(question: str) -> str:
    """A stable id for a question without one: the first 12 hex digits of its SHA-1."""
    return hashlib.sha1(question.strip().encode("utf-8")).hexdigest()[:12]


def sidecar_path(dataset_file: Path) -> Path:
    """``validation.jsonl`` → ``validation.questions.jsonl``."""
    return dataset_file.with_name(dataset_file.stem + QUESTION_SIDECAR_SUFFIX)


def load_questions(path: Path, *, require_answer: bool = False) -> QuestionSet:
    """Read a question set; raises :class:`QuestionFileError` only when nothing can be read."""
    if not path.is_file():
        raise QuestionFileError(f"{path}: no such file")
    data = path.read_bytes()
    if _looks_like_chat_file(data):
        sidecar = sidecar_path(path)
        if sidecar.is_file():
            return load_questions(sidecar, require_answer=require_answer)
        items, problems = _from_records(_jsonl_records(data), require_answer, chat=True)
    elif path.suffix.lower() == ".csv":
        items, problems = _from_records(_csv_records(path, data), require_answer, chat=False)
    else:
        items, problems = _from_records(_jsonl_records(data), require_answer, chat=False)
    return QuestionSet(path, tuple(items), tuple(problems))


def _looks_like_chat_file(data: bytes) -> bool:
    for raw in data.splitlines():
        if raw.strip():
            try:
                first = json.loads(raw)
            except ValueError:
                return False
            return isinstance(first, dict) and "messages" in first
    return False


Record = tuple[int, Mapping[str, Any] | None, str | None]  # line, row or None, problem


def _jsonl_records(data: bytes) -> Iterable[Record]:
    for number, raw in enumerate(data.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            yield number, None, f"not UTF-8 text (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            continue
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            yield number, None, f"not valid JSON ({exc.msg} at column {exc.colno})"
            continue
        if not isinstance(row, dict):
            yield number, None, "not a JSON object"
            continue
        yield number, row, None


def _csv_records(path: Path, data: bytes) -> Iterable[Record]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise QuestionFileError(
            f"{path}: line {line} is not UTF-8 text (byte 0x{data[exc.start]:02x}); save the file as UTF-8"
        ) from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames or "question" not in [f.strip() for f in reader.fieldnames]:
        found = ", ".join(f.strip() for f in reader.fieldnames or []) or "none"
        raise QuestionFileError(f"{path}: line 1: the header has no `question` column (columns: {found})")
    for row in reader:
        yield reader.line_num, {k.strip(): v for k, v in row.items() if k is not None}, None


def _split(value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, list):
        return tuple(str(v).strip() for v in value if str(v).strip())
    return tuple(part.strip() for part in str(value).split("|") if part.strip())


def _choices(value: Any) -> tuple[str, ...]:
    if isinstance(value, str) and value.strip().startswith("["):
        with contextlib.suppress(ValueError):
            value = json.loads(value)
    return _split(value)


def _from_records(
    records: Iterable[Record], require_answer: bool, *, chat: bool
) -> tuple[list[QuestionItem], list[LineProblem]]:
    items: list[QuestionItem] = []
    problems: list[LineProblem] = []
    for line, row, problem in records:
        if row is None:
            problems.append(LineProblem(line, problem or "unreadable"))
            continue
        if chat:
            row = _from_messages(row)
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            what = "no user message" if chat else "missing or empty `question`"
            problems.append(LineProblem(line, what))
            continue
        answer = row.get("answer")
        if answer is not None and not isinstance(answer, str):
            answer = json.dumps(answer) if isinstance(answer, (list, dict)) else str(answer)
        if require_answer and (answer is None or not answer.strip()):
            problems.append(LineProblem(line, "missing or empty `answer`"))
            continue
        items.append(
            QuestionItem(
                id=str(row.get("id") or question_id(question)),
                question=question.strip(),
                line=line,
                answer=answer.strip() if isinstance(answer, str) else None,
                choices=_choices(row.get("choices")),
                sources=_split(row.get("source")),
                chunk_ids=_split(row.get("chunk_id")),
            )
        )
    return items, problems


def _from_messages(row: Mapping[str, Any]) -> dict[str, Any]:
    messages = row.get("messages")
    if not isinstance(messages, list):
        return {}
    question = answer = None
    for message in messages:
        if isinstance(message, dict) and isinstance(message.get("content"), str):
            if message.get("role") == "user":
                question = message["content"]
            elif message.get("role") == "assistant":
                answer = message["content"]
    return {"question": question, "answer": answer}
