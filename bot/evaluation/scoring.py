"""Deterministic scores of one answer: no network, no model, the same number every time.

Per row, a metric is a number in [0, 1] or absent (not defined for that row); a cell's score is the
mean over the rows where it is defined.

- ``accuracy`` (question sets with ``choices`` whose answer is one of them, e.g. PubMedQA's
  yes/no/maybe): the decision is parsed as RAFT scores PubMedQA — the first of the choices that
  appears as a whole word (case-insensitive) in the answer, read after the last ``<ANSWER>:`` marker
  when there is one. An abstaining answer has no decision (it scores 0).
- ``exact_match``, ``f1`` and ``contains`` (a free-text reference answer): citation markers ``[n]``
  dropped, then SQuAD normalisation (lower case, punctuation and the articles a/an/the removed,
  whitespace collapsed); token F1 over the normalised words; ``contains`` = the normalised
  reference occurs in the normalised answer.
- ``abstention``: the answer matches one of :data:`ABSTENTION_PATTERNS` ("I don't know", "the
  sources do not cover …", "not enough information" …).
- ``correct_abstention``: over the rows where the model was *not* given a gold passage (closed mode;
  retrieved mode when retrieval missed it), the share where it abstained instead of answering anyway.
- ``citation_accuracy``: over the answers that cite ``[n]`` with a gold passage known, the share of
  cited numbers that point at a gold passage (a number beyond the sources counts as wrong).
- ``hit_at_k`` (retrieved mode): a gold passage was among the passages the model was shown (the
  chat's top k after its weak-match filter).
- ``judge_correct`` and ``judge_faithfulness`` (with ``--judge``): the judge's verdict that the answer
  agrees with the reference, and its supported claims / claims when sources were given.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from bot.evaluation.records import AnswerRow
from bot.prompts import cited_numbers

METRICS: tuple[str, ...] = (
    "accuracy",
    "exact_match",
    "f1",
    "contains",
    "abstention",
    "correct_abstention",
    "citation_accuracy",
    "hit_at_k",
    "judge_correct",
    "judge_faithfulness",
)
"""Every metric, in report order."""

ABSTENTION_PATTERNS: tuple[str, ...] = (
    r"\bi (?:do not|don't|dont|really don't) know\b",
    r"\bi(?:'m| am) not (?:sure|certain)\b",
    r"\b(?:cannot|can't|can not|unable to|not able to) (?:answer|determine|tell|say|find|know)\b",
    r"\b(?:is|are|was|were) not (?:covered|mentioned|addressed|stated|specified|answered)\b",
    r"\bnot covered\b",
    r"\b(?:no|not enough|insufficient) (?:relevant )?information\b",
    r"\b(?:sources?|documents?|passages?|context|knowledge base|provided (?:text|material))\b[^.\n]{0,40}?"
    r"\b(?:does not|doesn't|do not|don't|did not|didn't)\b[^.\n]{0,20}?"
    r"\b(?:cover|mention|address|contain|include|provide|say|specify|answer|discuss)",
    r"\bno (?:source|document|passage)s? (?:in the knowledge base )?(?:match|cover|mention|answer)",
)
"""What counts as declining to answer (case-insensitive regular expressions)."""

_ABSTENTION_RE = re.compile("|".join(f"(?:{p})" for p in ABSTENTION_PATTERNS), re.IGNORECASE)
_ANSWER_MARKER_RE = re.compile(r"<ANSWER>\s*:", re.IGNORECASE)
_CITATION_RE = re.compile(r"\[\d{1,2}\]")
_ARTICLES_RE = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation (lower case, no punctuation, no articles, single spaces), after dropping the
    ``[n]`` citation markers the chat's prompt asks for."""
    text = _CITATION_RE.sub(" ", text).lower().translate(_PUNCTUATION)
    return " ".join(_ARTICLES_RE.sub(" ", text).split())


def exact_match(answer: str, reference: str) -> float:
    return float(normalize_answer(answer) == normalize_answer(reference))


def token_f1(answer: str, reference: str) -> float:
    """SQuAD token F1; two empty texts agree (1.0), one empty text does not (0.0)."""
    predicted = normalize_answer(answer).split()
    gold = normalize_answer(reference).split()
    if not predicted or not gold:
        return float(predicted == gold)
    common = sum((Counter(predicted) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def contains_reference(answer: str, reference: str) -> float:
    """1.0 when the normalised reference occurs in the normalised answer, word-aligned."""
    ref = normalize_answer(reference)
    return float(bool(ref) and f" {ref} " in f" {normalize_answer(answer)} ")


def is_abstention(answer: str) -> bool:
    return _ABSTENTION_RE.search(answer) is not None


def parse_decision(answer: str, choices: Sequence[str]) -> str | None:
    """The first of ``choices`` in the answer as a whole word (after the last ``<ANSWER>:``), lower-cased."""
    if not choices:
        return None
    markers = list(_ANSWER_MARKER_RE.finditer(answer))
    text = answer[markers[-1].end():] if markers else answer
    options = sorted({c.strip().lower() for c in choices if c.strip()}, key=len, reverse=True)
    pattern = r"(?<!\w)(" + "|".join(re.escape(o) for o in options) + r")(?!\w)"
    found = re.search(pattern, text.lower())
    return found.group(1) if found else None


def is_decision_set(choices: Sequence[str], reference: str | None) -> bool:
    """Scored by decision accuracy: the set has choices and the reference is one of them."""
    return bool(choices) and reference is not None and reference.strip().lower() in {c.lower() for c in choices}


def score_row(row: AnswerRow) -> dict[str, float]:
    """The metrics defined for this row (none for a row that ended in an error)."""
    if row.error is not None:
        return {}
    scores: dict[str, float] = {}
    abstained = is_abstention(row.answer)
    scores["abstention"] = float(abstained)
    if row.reference is not None:
        if is_decision_set(row.choices, row.reference):
            decision = None if abstained else parse_decision(row.answer, row.choices)
            scores["accuracy"] = float(decision == row.reference.strip().lower())
        else:
            scores["exact_match"] = exact_match(row.answer, row.reference)
            scores["f1"] = token_f1(row.answer, row.reference)
            scores["contains"] = contains_reference(row.answer, row.reference)
    if row.gold_given is False:
        scores["correct_abstention"] = float(abstained)
    if row.gold_known and row.sources:
        numbers = cited_numbers(row.answer)
        if numbers:
            gold = {s.n for s in row.sources if s.gold}
            scores["citation_accuracy"] = len(numbers & gold) / len(numbers)
    if row.mode == "retrieved" and row.gold_known:
        scores["hit_at_k"] = float(bool(row.gold_given))
    verdict = row.judge
    if verdict is not None and verdict.error is None:
        if verdict.correct is not None:
            scores["judge_correct"] = float(verdict.correct)
        if row.sources and verdict.claims and verdict.supported is not None:
            scores["judge_faithfulness"] = min(verdict.supported, verdict.claims) / verdict.claims
    return {name: scores[name] for name in METRICS if name in scores}
