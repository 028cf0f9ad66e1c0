"""Rated answers from the traces: what ``feedback export``, ``eval feedback`` and ``tune dataset
--from-feedback`` read. (Interface fixed here; the trace index behind it is being built.)"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from bot.state import StateStore

Rating = Literal["up", "down"]


@dataclass(frozen=True, slots=True)
class RatedAnswer:
    """One answer that users rated, with what the model was given."""

    trace_id: str
    question: str
    answer: str
    rating: Rating  # the majority of the ratings on the answer; "up" on a tie
    ups: int
    downs: int
    channel: str
    profile: str | None
    model: str | None
    created_at: float
    arm: str | None = None
    chunk_ids: tuple[str, ...] = ()  # the passages the answer cites (all shown passages when it cites none)
    sources: tuple[str, ...] = ()
    context: tuple[dict[str, Any], ...] = field(default=())  # shown passages: chunk_id, source, title, heading, text

    def to_json(self) -> dict[str, Any]:
        """A JSON Lines row that ``bot.questions.load_questions`` reads (question, answer, chunk_id, source)."""
        raise NotImplementedError


async def rated_answers(
    state: StateStore,
    *,
    rating: Rating | None = None,
    since: datetime | None = None,
    channel: str | None = None,
) -> list[RatedAnswer]:
    """Rated answers, oldest first, filtered by rating, time and channel."""
    raise NotImplementedError
