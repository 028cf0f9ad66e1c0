"""Rated answers and 👍/👎 tallies from the traces: what ``feedback export``, ``eval feedback``,
``/bothbot experiment`` and ``tune dataset --from-feedback`` read.

Traces are found through the time indexes :class:`bot.state.StateStore` keeps per channel and for
all channels (trimmed to the trace TTL), so these cover the traces still kept. An answer's rating is
the majority of its votes (one vote per user; "up" on a tie), and tallies count answers, not votes:
a rate's trials are answers, which is what the Wilson interval assumes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from bot.evaluation.stats import wilson_interval
from bot.experiments import Experiment
from bot.state import StateStore

Rating = Literal["up", "down"]

TALLY_FIELDS = ("channel", "profile", "experiment", "arm", "votes_up", "votes_down")


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
        return {
            "id": self.trace_id,
            "question": self.question,
            "answer": self.answer,
            "chunk_id": "|".join(self.chunk_ids),
            "source": "|".join(self.sources),
            "rating": self.rating,
            "ups": self.ups,
            "downs": self.downs,
            "profile": self.profile,
            "model": self.model,
            "arm": self.arm,
            "channel": self.channel,
            "trace_id": self.trace_id,
            "created_at": datetime.fromtimestamp(self.created_at, UTC).isoformat(timespec="seconds"),
            "context": list(self.context),
        }


def rating_of(ups: int, downs: int) -> Rating | None:
    """An answer's rating from its votes: the majority, "up" on a tie, None without votes."""
    if ups <= 0 and downs <= 0:
        return None
    return "up" if ups >= downs else "down"


async def rated_answers(
    state: StateStore,
    *,
    rating: Rating | None = None,
    since: datetime | None = None,
    channel: str | None = None,
) -> list[RatedAnswer]:
    """Rated answers, oldest first, filtered by rating, time and channel."""
    ids = await state.trace_ids(channel=channel, since=_timestamp(since))
    traces = await state.load_traces(ids)
    found: list[RatedAnswer] = []
    for trace_id, trace in zip(ids, traces, strict=True):
        answer = _rated(trace_id, trace) if trace else None
        if answer is not None and (rating is None or answer.rating == rating):
            found.append(answer)
    return found


def _rated(trace_id: str, trace: Mapping[str, Any]) -> RatedAnswer | None:
    ups, downs = _count(trace.get("votes_up")), _count(trace.get("votes_down"))
    rating = rating_of(ups, downs)
    question, answer = trace.get("question"), trace.get("answer")
    if rating is None or not isinstance(question, str) or not isinstance(answer, str):
        return None  # unrated, or written before traces kept the answer text
    citations = [c for c in trace.get("citations") or () if isinstance(c, dict)]
    context = tuple(p for p in trace.get("context") or () if isinstance(p, dict))
    return RatedAnswer(
        trace_id=trace_id,
        question=question,
        answer=answer,
        rating=rating,
        ups=ups,
        downs=downs,
        channel=str(trace.get("channel") or ""),
        profile=trace.get("profile"),
        model=trace.get("model"),
        created_at=float(trace.get("created_at") or 0.0),
        arm=trace.get("arm"),
        chunk_ids=tuple(dict.fromkeys(str(c["chunk_id"]) for c in citations if c.get("chunk_id"))),
        sources=tuple(dict.fromkeys(str(c["source"]) for c in citations if c.get("source"))),
        context=context,
    )


# --- tallies ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Tally:
    """Answers and their ratings for one group: an experiment arm, or a profile outside experiments."""

    group: str  # "arm tuned" or "profile base"
    answers: int = 0
    ups: int = 0
    downs: int = 0

    @property
    def rated(self) -> int:
        return self.ups + self.downs

    @property
    def up_rate(self) -> float | None:
        return self.ups / self.rated if self.rated else None

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.ups, self.rated)

    def summary(self) -> str:
        """One line: ``12 answers, 5 rated: 👍 4, 👎 1, 👍 rate 80 % (95 % CI 38–96 %)``."""
        head = f"{self.answers} answer{'' if self.answers == 1 else 's'}, {self.rated} rated"
        if not self.rated:
            return f"{head}: no ratings yet"
        low, high = self.interval
        return (
            f"{head}: 👍 {self.ups}, 👎 {self.downs}, 👍 rate {_pct(self.up_rate or 0.0)} "
            f"(95 % CI {_pct(low, sign=False)}–{_pct(high)})"
        )


async def tally_feedback(
    state: StateStore,
    *,
    channel: str | None = None,
    since: datetime | None = None,
    experiment: Experiment | None = None,
) -> list[Tally]:
    """Answers, 👍 and 👎 per arm (answers in an experiment) and per profile (answers outside one).

    With ``experiment``: only its answers, one row per arm in the experiment's order (also arms with
    no answers yet), over the experiment's time. The one computation behind ``/bothbot experiment``
    and ``bothbot eval feedback``.
    """
    since_ts = _timestamp(since)
    until_ts = None
    if experiment is not None:
        channel = experiment.channel
        since_ts = max(since_ts or experiment.started_at, experiment.started_at)
        until_ts = experiment.stopped_at
    ids = await state.trace_ids(channel=channel, since=since_ts, until=until_ts)
    rows = [t for t in await state.load_traces(ids, TALLY_FIELDS) if t is not None]
    if experiment is not None:
        rows = [t for t in rows if t.get("experiment") == experiment.id]
        order = [f"arm {arm.label}" for arm in experiment.arms]
    else:
        order = []
    return _tally(rows, order, label_experiments=experiment is None)


def _tally(rows: Iterable[Mapping[str, Any]], order: Sequence[str], *, label_experiments: bool) -> list[Tally]:
    counts: dict[str, list[int]] = {group: [0, 0, 0] for group in order}
    for row in rows:
        if row.get("arm"):
            group = f"arm {row['arm']}"
            if label_experiments:
                group += f" (experiment {row.get('experiment')})"
        else:
            group = f"profile {row.get('profile') or '(none: retrieval-only)'}"
        count = counts.setdefault(group, [0, 0, 0])
        count[0] += 1
        rating = rating_of(_count(row.get("votes_up")), _count(row.get("votes_down")))
        if rating == "up":
            count[1] += 1
        elif rating == "down":
            count[2] += 1
    return [Tally(group, answers, ups, downs) for group, (answers, ups, downs) in counts.items()]


def format_tallies(tallies: Sequence[Tally]) -> str:
    """A table of tallies for the terminal; the same numbers as :meth:`Tally.summary`."""
    if not tallies:
        return "No answers recorded for this selection (traces are kept for BOTHBOT_TRACE_TTL_SECONDS)."
    width = max(len("group"), *(len(t.group) for t in tallies))
    lines = [f"{'group':<{width}}  answers  rated    👍    👎  👍 rate  95 % CI"]
    for t in tallies:
        if t.rated:
            low, high = t.interval
            rate, ci = _pct(t.up_rate or 0.0), f"{_pct(low, sign=False)}–{_pct(high)}"
        else:
            rate, ci = "-", "-"
        lines.append(f"{t.group:<{width}}  {t.answers:>7}  {t.rated:>5}  {t.ups:>4}  {t.downs:>4}  {rate:>7}  {ci}")
    return "\n".join(lines)


def _pct(value: float, *, sign: bool = True) -> str:
    return f"{round(value * 100)}{' %' if sign else ''}"


def _count(value: Any) -> int:
    return int(value) if isinstance(value, int | float) else 0


def _timestamp(moment: datetime | None) -> float | None:
    if moment is None:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
