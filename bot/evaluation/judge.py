"""The optional LLM judge of ``eval answers --judge PROFILE``: one fixed rubric, one JSON verdict per answer.

It grades two things: whether the answer agrees with the reference answer (``correct``), and how
many of the answer's factual claims the given sources support (``supported`` of ``claims``; the
faithfulness score is their ratio). The prompts below are recorded in the report with the judge's
model. A reply that is not the asked-for JSON leaves that row's judge scores missing, with the
reason, and the run goes on.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import TypeGuard

from bot.evaluation.records import JudgeVerdict
from bot.model_client import ModelClient, ModelError
from bot.prompts import sources_block
from retrieval.api import Passage

JUDGE_SYSTEM_PROMPT = (
    "You grade one answer of an assistant, strictly and consistently. Reply with one JSON object and "
    'nothing else: {"correct": true | false | null, "claims": <integer>, "supported": <integer>, '
    '"reason": "<one short sentence>"}.\n'
    "- correct: does the answer agree with the reference answer? The same decision or fact counts; "
    "extra detail is fine; an answer that declines to answer is not correct. null when no reference "
    "answer is given.\n"
    "- claims: how many factual claims the answer makes (0 when it declines to answer).\n"
    "- supported: how many of those claims the numbered sources state or directly imply; 0 when no "
    "sources are given."
)
JUDGE_USER_TEMPLATE = (
    "Question:\n{question}\n\nReference answer:\n{reference}\n\n{sources}\n\nAnswer to grade:\n{answer}"
)
NO_REFERENCE = "(none given)"
NO_SOURCES = "Sources: (none given)"

_OBJECT_RE = re.compile(r"\{.*\}", re.DOTALL)


class JudgeReplyError(ValueError):
    """The judge's reply is not the verdict the rubric asks for; ``str()`` says why."""


def judge_messages(
    question: str, reference: str | None, passages: Sequence[Passage], answer: str
) -> list[dict[str, str]]:
    user = JUDGE_USER_TEMPLATE.format(
        question=question,
        reference=reference or NO_REFERENCE,
        sources=sources_block(passages) if passages else NO_SOURCES,
        answer=answer,
    )
    return [{"role": "system", "content": JUDGE_SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_verdict(reply: str) -> JudgeVerdict:
    """The verdict in a judge reply (a JSON object, possibly inside a code fence or prose)."""
    found = _OBJECT_RE.search(reply)
    if found is None:
        raise JudgeReplyError(f"no JSON object in the judge's reply: {_clip(reply)!r}")
    try:
        data = json.loads(found.group(0))
    except json.JSONDecodeError as exc:
        raise JudgeReplyError(f"the judge's reply is not valid JSON ({exc.msg}): {_clip(reply)!r}") from None
    if not isinstance(data, dict):
        raise JudgeReplyError("the judge's reply is not a JSON object")
    correct, claims, supported = data.get("correct"), data.get("claims"), data.get("supported")
    if correct is not None and not isinstance(correct, bool):
        raise JudgeReplyError(f"`correct` must be true, false or null, not {correct!r}")
    if not _is_count(claims):
        raise JudgeReplyError(f"`claims` must be a whole number ≥ 0, not {claims!r}")
    if not _is_count(supported):
        raise JudgeReplyError(f"`supported` must be a whole number ≥ 0, not {supported!r}")
    if supported > claims:
        raise JudgeReplyError(f"`supported` ({supported}) is more than `claims` ({claims})")
    reason = data.get("reason")
    return JudgeVerdict(correct=correct, claims=claims, supported=supported, reason=str(reason or "")[:500])


async def judge_answer(
    client: ModelClient, question: str, reference: str | None, passages: Sequence[Passage], answer: str
) -> JudgeVerdict:
    """Ask the judge once; a failed call or a garbage reply is a verdict with ``error`` set."""
    try:
        text, _usage = await client.complete(judge_messages(question, reference, passages, answer))
        return parse_verdict(text)
    except ModelError as exc:
        return JudgeVerdict(error=f"judge model: {exc}")
    except JudgeReplyError as exc:
        return JudgeVerdict(error=str(exc))


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _clip(text: str, size: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= size else text[: size - 1] + "…"
