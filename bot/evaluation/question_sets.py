"""Question sets for ``eval answers``: a question file (through :func:`bot.questions.load_questions`) or
PubMedQA's official test split.

``--limit N`` takes a seeded random sample of N questions (``--seed``), kept in file order: the first N
would be no sample at all where a file is sorted (PubMedQA's test file lists its 276 "yes" questions
first).

PubMedQA: the 500 ids of ``test_ground_truth.json``, each with its ``QUESTION`` from ``ori_pqal.json``,
the choices yes/no/maybe, its decision as the reference, its own abstract as the gold source and its
conclusion (``LONG_ANSWER``) as extra reference text for the judge. The corpus: all 1,000 abstracts
of ``ori_pqal.json``.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bot.evaluation.records import AnswersError
from bot.questions import QuestionFileError, QuestionItem, load_questions

PUBMEDQA_TEST = "test_ground_truth.json"
Q = TypeVar("Q")
PUBMEDQA_CHOICES = ("yes", "no", "maybe")


@dataclass(frozen=True, slots=True)
class EvalQuestion:
    item: QuestionItem
    explanation: str | None = None  # a longer reference for the judge (PubMedQA's conclusion)

    @property
    def judge_reference(self) -> str | None:
        parts = [p for p in (self.item.answer, self.explanation) if p]
        return "\n".join(parts) or None


@dataclass(frozen=True, slots=True)
class QuestionSource:
    label: str
    sha256: str
    questions: tuple[EvalQuestion, ...]
    problems: tuple[str, ...]
    pubmedqa: Path | None = None  # ingest this PubMedQA corpus into a temporary knowledge base


def read_question_file(path: Path) -> QuestionSource:
    """A JSONL/CSV/chat question file; bad lines become problems, duplicate ids too."""
    try:
        found = load_questions(path)
    except QuestionFileError as exc:
        raise AnswersError(str(exc)) from None
    problems = [f"{path.name} {p}" for p in found.problems]
    seen: dict[str, int] = {}
    questions: list[EvalQuestion] = []
    for item in found.items:
        if item.id in seen:
            problems.append(f"{path.name} line {item.line}: id {item.id!r} repeats line {seen[item.id]}; left out")
            continue
        seen[item.id] = item.line
        questions.append(EvalQuestion(item))
    digest = hashlib.sha256(found.path.read_bytes()).hexdigest()
    return QuestionSource(str(path.resolve()), digest, tuple(questions), tuple(problems))


def read_pubmedqa(root: Path) -> QuestionSource:
    """PubMedQA's official test split (``test_ground_truth.json``, 500 ids, in that file's order)."""
    truth_path, data_path = root / PUBMEDQA_TEST, root / "ori_pqal.json"
    for needed in (truth_path, data_path):
        if not needed.is_file():
            raise AnswersError(
                f"{needed} not found (--pubmedqa wants the folder holding ori_pqal.json and {PUBMEDQA_TEST})"
            )
    try:
        truth = json.loads(truth_path.read_text(encoding="utf-8"))
        data = json.loads(data_path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise AnswersError(f"{root}: not PubMedQA's JSON files ({exc})") from None
    questions: list[EvalQuestion] = []
    problems: list[str] = []
    for number, (pmid, decision) in enumerate(truth.items(), start=1):
        entry = data.get(pmid)
        if not isinstance(entry, dict) or decision not in PUBMEDQA_CHOICES:
            problems.append(f"{PUBMEDQA_TEST} entry {number} ({pmid}): not in ori_pqal.json or not yes/no/maybe")
            continue
        item = QuestionItem(id=pmid, question=str(entry["QUESTION"]), line=number, answer=decision,
                            choices=PUBMEDQA_CHOICES, sources=(pmid,))
        questions.append(EvalQuestion(item, explanation=str(entry.get("LONG_ANSWER") or "") or None))
    digest = hashlib.sha256(truth_path.read_bytes() + data_path.read_bytes()).hexdigest()
    return QuestionSource(f"pubmedqa:{root.resolve()}", digest, tuple(questions), tuple(problems), pubmedqa=root)


def sample_questions(questions: Sequence[Q], limit: int | None, seed: int) -> list[Q]:
    """``limit`` questions drawn at random with ``seed`` (all of them without a limit), in file order."""
    if limit is None or limit >= len(questions):
        return list(questions)
    picked = sorted(random.Random(seed).sample(range(len(questions)), limit))
    return [questions[i] for i in picked]
