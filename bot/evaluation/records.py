"""What ``eval answers`` writes and reads back: one row per (question, profile, mode), and the run's settings.

``rows.jsonl`` is an append-only log of :class:`AnswerRow`; the last row written for a key wins (a rerun
retries rows that ended in an error). ``settings.json`` is :class:`RunSettings`. Rows hold what the
model was given and said, never a score: :func:`bot.evaluation.report.build_report` scores them, so a
report can always be recomputed from the rows.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

Mode = Literal["closed", "oracle", "retrieved"]
MODES: tuple[Mode, ...] = ("closed", "oracle", "retrieved")
RowKey = tuple[str, str, str]  # question id, profile, mode


class AnswersError(Exception):
    """Bad input or configuration: the run cannot start (exit 2)."""


class ShownSource(BaseModel):
    """A passage the model was shown as source ``[n]``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    n: int
    chunk_id: str
    source: str
    gold: bool


class JudgeVerdict(BaseModel):
    """The judge's verdict on one answer; ``error`` says why there is none."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    correct: bool | None = None
    claims: int | None = None
    supported: int | None = None
    reason: str = ""
    error: str | None = None


class AnswerRow(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    index: int = Field(ge=0, description="Position of the question in the question set.")
    id: str
    profile: str
    model: str
    mode: Mode
    question: str
    reference: str | None = None
    choices: tuple[str, ...] = ()
    gold_known: bool = False  # the question names its gold passage(s)
    gold_given: bool | None = None  # a gold passage was in the prompt (None: unknown, no gold named)
    sources: tuple[ShownSource, ...] = ()
    answer: str = ""
    error: str | None = None  # the row was not answered: the model failed, or the mode cannot run here
    latency_ms: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    judge: JudgeVerdict | None = None

    @property
    def key(self) -> RowKey:
        return (self.id, self.profile, self.mode)


class ProfileInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    name: str
    model: str
    system_prompt: str | None = None
    price_input_per_mtok: float | None = None
    price_output_per_mtok: float | None = None


class JudgeInfo(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    profile: str
    model: str
    system_prompt: str
    user_template: str


class RunSettings(BaseModel):
    """The arguments a run's rows depend on (``settings.json``); a rerun must match them to resume."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    questions: str  # the question file, or "pubmedqa:<dir>"
    questions_sha256: str
    count: int = Field(ge=0, description="Questions in the run, after --limit.")
    limit: int | None = None
    profiles: tuple[ProfileInfo, ...]
    modes: tuple[Mode, ...]
    kbs: tuple[str, ...]
    top_k: int
    temperature: float = 0.0
    judge: JudgeInfo | None = None
    seed: int = 0
    resamples: int = 2000

    def resume_conflicts(self, earlier: RunSettings) -> list[str]:
        """What differs from an earlier run's settings in a way that would mix incomparable rows.

        ``--limit``, ``--seed``, ``--concurrency`` and the profiles' prices may change: rows are keyed by
        question id, the seed only drives the bootstrap, and cost is computed when the report is.
        """
        ignored: dict[str, Any] = {
            "count": True, "limit": True, "seed": True, "resamples": True,
            "profiles": {"__all__": {"price_input_per_mtok", "price_output_per_mtok"}},
        }
        mine, theirs = self.model_dump(exclude=ignored), earlier.model_dump(exclude=ignored)
        return [f"{name}: {theirs[name]!r} then, {mine[name]!r} now" for name in mine if mine[name] != theirs[name]]
