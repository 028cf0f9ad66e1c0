"""The deterministic scores of one answer."""

from __future__ import annotations

from typing import Any

import pytest

from bot.evaluation.records import AnswerRow, JudgeVerdict, ShownSource
from bot.evaluation.scoring import (
    contains_reference,
    exact_match,
    is_abstention,
    normalize_answer,
    parse_decision,
    score_row,
    token_f1,
)

YNM = ("yes", "no", "maybe")


def row(**fields: Any) -> AnswerRow:
    values: dict[str, Any] = {"index": 0, "id": "q", "profile": "base", "model": "m", "mode": "closed",
                              "question": "?"}
    values.update(fields)
    return AnswerRow(**values)


def test_squad_normalisation_and_citation_markers() -> None:
    assert normalize_answer("The  Eiffel-Tower, in PARIS! [2]") == "eiffeltower in paris"
    assert normalize_answer("an apple a day") == "apple day"


@pytest.mark.parametrize(
    ("answer", "reference", "em", "f1"),
    [
        ("Paris", "paris.", 1.0, 1.0),
        ("Paris [1]", "Paris", 1.0, 1.0),
        ("the city of Paris", "Paris", 0.0, 0.5),  # "city of paris" vs "paris": P 1/3, R 1
        ("Lyon", "Paris", 0.0, 0.0),
        ("", "", 1.0, 1.0),
        ("", "Paris", 0.0, 0.0),
        ("paris paris", "paris", 0.0, 2 * 0.5 * 1.0 / 1.5),  # shared tokens counted once each
    ],
)
def test_exact_match_and_token_f1(answer: str, reference: str, em: float, f1: float) -> None:
    assert exact_match(answer, reference) == em
    assert token_f1(answer, reference) == pytest.approx(f1)


def test_contains_is_word_aligned() -> None:
    assert contains_reference("It listens on port 7311 [1].", "7311") == 1.0
    assert contains_reference("It listens on port 73110.", "7311") == 0.0
    assert contains_reference("anything", "") == 0.0


@pytest.mark.parametrize(
    ("answer", "decision"),
    [
        ("Yes, the study shows it [1].", "yes"),
        ("MAYBE: the evidence is mixed; yes in mice.", "maybe"),
        ("The results do not settle it. No.", "no"),  # "not" is not "no": whole words only
        ("Reasoning... yes and no ... <ANSWER>: no", "no"),  # RAFT's answer marker wins
        ("Nothing of the sort, nobody knows", None),
        ("Yesterday", None),
    ],
)
def test_the_decision_is_the_first_choice_word(answer: str, decision: str | None) -> None:
    assert parse_decision(answer, YNM) == decision


def test_multi_word_choices() -> None:
    assert parse_decision("I'd pick the red one, not blue", ("blue", "red one")) == "red one"


@pytest.mark.parametrize(
    "text",
    [
        "I don't know.",
        "I do not know the answer.",
        "The sources do not contain the answer.",
        "The knowledge base doesn't cover this question.",
        "This is not covered by the documents.",
        "There is not enough information to answer.",
        "I cannot determine that from the passages.",
        "I'm not sure.",
    ],
)
def test_abstentions(text: str) -> None:
    assert is_abstention(text)


@pytest.mark.parametrize(
    "text",
    ["The drug does not contain gluten [1].", "No, it does not.", "Maybe: results were mixed.", "HELIOTROPE [1]"],
)
def test_answers_that_are_not_abstentions(text: str) -> None:
    assert not is_abstention(text)


def test_decision_rows() -> None:
    right = row(answer="Yes [1]", reference="yes", choices=YNM)
    assert score_row(right) == {"accuracy": 1.0, "abstention": 0.0}
    # an abstention has no decision, even if a choice word follows
    dodged = row(answer="I don't know; maybe yes.", reference="yes", choices=YNM, gold_given=False)
    assert score_row(dodged) == {"accuracy": 0.0, "abstention": 1.0, "correct_abstention": 1.0}
    # a reference outside the choices is scored as text
    assert "exact_match" in score_row(row(answer="blue", reference="teal", choices=YNM))


def test_citations_and_hits() -> None:
    sources = (ShownSource(n=1, chunk_id="c1", source="a.md", gold=False),
               ShownSource(n=2, chunk_id="c2", source="b.md", gold=True))
    retrieved = row(mode="retrieved", answer="It is 7311 [2][1][9].", reference="7311", gold_known=True,
                    gold_given=True, sources=sources)
    scores = score_row(retrieved)
    assert scores["citation_accuracy"] == pytest.approx(1 / 3)  # [2] gold, [1] not, [9] no such source
    assert scores["hit_at_k"] == 1.0 and "correct_abstention" not in scores
    missed = row(mode="retrieved", answer="7311", reference="7311", gold_known=True, gold_given=False,
                 sources=sources[:1])
    assert score_row(missed)["hit_at_k"] == 0.0
    assert "citation_accuracy" not in score_row(missed)  # cites nothing
    assert score_row(missed)["correct_abstention"] == 0.0  # answered without the gold
    unknown_gold = row(mode="retrieved", answer="7311 [1]", reference="7311", sources=sources[:1])
    assert "hit_at_k" not in score_row(unknown_gold) and "citation_accuracy" not in score_row(unknown_gold)


def test_errors_and_judge() -> None:
    assert score_row(row(error="model: boom", reference="x")) == {}
    judged = row(mode="oracle", answer="x [1]", reference="x",
                 sources=(ShownSource(n=1, chunk_id="c", source="s", gold=True),),
                 judge=JudgeVerdict(correct=True, claims=4, supported=3))
    assert score_row(judged)["judge_correct"] == 1.0 and score_row(judged)["judge_faithfulness"] == 0.75
    garbage = judged.model_copy(update={"judge": JudgeVerdict(error="no JSON object")})
    assert "judge_correct" not in score_row(garbage) and "judge_faithfulness" not in score_row(garbage)
    closed = row(answer="x", reference="x", judge=JudgeVerdict(correct=False, claims=1, supported=0))
    assert score_row(closed)["judge_correct"] == 0.0 and "judge_faithfulness" not in score_row(closed)
