"""Training jobs: one record per job in Redis, an event stream per job, and the backend protocol.

Any process can follow, resume or cancel a job because everything about it lives in Redis:

- ``{prefix}:tune:{<id>}:job``: the :class:`JobRecord` as JSON (status, progress, result, error), and
  ``{prefix}:tune:{<id>}:revision`` beside it: how many saves it has seen.
- ``{prefix}:tune:{<id>}:events``: a Redis stream of :class:`JobEvent` (steps, losses, provider
  messages); followers block on ``XREAD`` instead of polling, and resume from the last id they saw.
- ``{prefix}:tune:{<id>}:cancel``: a cancel request; ``{prefix}:tune:{<id>}:refresh``: a short claim, so that
  of several followers one asks the backend at a time (:meth:`JobStore.claim_refresh`).
- ``{prefix}:tune:jobs``: a sorted set of job ids by creation time (``tune list``).

The braces around ``<id>`` are literal, a Redis Cluster hash tag: one job's keys share a slot, so its transactions
(record + revision + events, WATCH on the revision) and its MGET work on a cluster. The jobs index is
written after the record, outside that transaction: a job is listed only once its record exists.
Records saved by versions before this layout (``{prefix}:tune:job:{id}``) are still read.

A backend saves a record and the events that go with it in one transaction (``save(job, *events)``), so
a refresh cut short by a lost connection repeats nothing and loses nothing. It reports a refusal or a
provider error as :class:`BackendError` (the provider's code, message and param in ``error``).

A backend is one module behind :class:`TrainingBackend`: ``openai`` (any OpenAI-compatible
fine-tuning API) and ``local`` (LoRA with TRL and PEFT) ship; a hosted provider with its own job API
is one more module and one line in :data:`BACKENDS`.
"""

from __future__ import annotations

import importlib
import time
import uuid
from collections.abc import Sequence
from typing import Any, ClassVar, Literal, Protocol, cast

from pydantic import BaseModel, ConfigDict, Field
from redis.exceptions import WatchError

from bot.settings import Settings
from bot.state import StateStore

JobStatus = Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
TERMINAL_STATUSES: frozenset[str] = frozenset({"succeeded", "failed", "cancelled"})

# name -> "module:Class"; imported only when used (the local backend pulls in torch)
BACKENDS: dict[str, str] = {
    "openai": "bot.tune.backends.openai:OpenAIBackend",
    "local": "bot.tune.backends.local:LocalBackend",
}


class JobNotFoundError(Exception):
    """No job with that id (message names it and how to list jobs)."""


class JobError(BaseModel):
    """The provider's error, kept as it was given."""

    model_config = ConfigDict(extra="ignore")

    code: str | None = None
    message: str = ""
    param: str | None = None

    def __str__(self) -> str:
        parts = [f"[{self.code}]" if self.code else "", self.message, f"(param: {self.param})" if self.param else ""]
        return " ".join(p for p in parts if p)


class BackendError(Exception):
    """A backend or its provider refused or failed; ``str()`` is safe to show a user.

    ``error`` is the provider's own (code, message, param) when it gave one, kept as it was given.
    ``retryable`` is True for trouble that may pass (a 5xx, a timeout, a lost connection): a follower
    says so and tries again; anything else (401, 400, a refused date) stops the command.
    """

    def __init__(self, message: str, *, error: JobError | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.error = error
        self.retryable = retryable


class JobProgress(BaseModel):
    model_config = ConfigDict(extra="ignore")

    step: int = 0
    total_steps: int | None = None
    epoch: float | None = None
    loss: float | None = None
    validation_loss: float | None = None


class JobRecord(BaseModel):
    """Everything known about one training job; saved whole on every change."""

    model_config = ConfigDict(extra="ignore")

    id: str
    backend: str
    base_model: str
    data_dir: str
    status: JobStatus = "validating_files"
    created_at: float = Field(default_factory=time.time)
    updated_at: float = Field(default_factory=time.time)
    suffix: str | None = None
    epochs: int | None = None
    register_as: str | None = None
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    provider_job_id: str | None = None  # the id the provider gave (openai); the worker pid is in `extra` (local)
    provider_base_url: str | None = None
    fine_tuned_model: str | None = None  # what a profile calls: an ``ft:`` id, or an adapter name
    output_dir: str | None = None  # local: where the adapter (and merged model) are written
    adapter_path: str | None = None
    merged_path: str | None = None
    trained_tokens: int | None = None
    progress: JobProgress = Field(default_factory=JobProgress)
    error: JobError | None = None
    extra: dict[str, Any] = Field(default_factory=dict)
    revision: int = Field(default=0, exclude=True)  # how many saves the stored record has seen (kept beside it)

    @property
    def finished(self) -> bool:
        return self.status in TERMINAL_STATUSES


class JobEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    at: float = Field(default_factory=time.time)
    level: Literal["info", "warning", "error"] = "info"
    message: str
    step: int | None = None
    loss: float | None = None


def new_job_id() -> str:
    return f"tj_{uuid.uuid4().hex[:16]}"


class JobStore:
    """Job records and their event streams in Redis."""

    def __init__(self, state: StateStore) -> None:
        self._state = state
        self._redis = state.redis

    def _job_key(self, job_id: str) -> str:
        return self._state.tagged_key("tune", job_id, "job")

    def _events_key(self, job_id: str) -> str:
        return self._state.tagged_key("tune", job_id, "events")

    def _revision_key(self, job_id: str) -> str:
        return self._state.tagged_key("tune", job_id, "revision")

    def _cancel_key(self, job_id: str) -> str:
        return self._state.tagged_key("tune", job_id, "cancel")

    async def request_cancel(self, job_id: str, ttl_seconds: int = 7 * 24 * 3600) -> None:
        """Ask whoever runs the job (a worker checking between steps) to stop it."""
        await self._redis.set(self._cancel_key(job_id), "1", ex=ttl_seconds)

    async def cancel_requested(self, job_id: str) -> bool:
        return bool(await self._redis.exists(self._cancel_key(job_id)))

    async def clear_cancel(self, job_id: str) -> None:
        await self._redis.delete(self._cancel_key(job_id))

    async def create(self, job: JobRecord) -> JobRecord:
        # The record first, then the index (another slot on a cluster): a listed job always has a record.
        await self._redis.set(self._job_key(job.id), job.model_dump_json(), nx=True)
        await self._redis.zadd(self._state.key("tune", "jobs"), {job.id: job.created_at})
        return job

    async def save(self, job: JobRecord, *events: JobEvent) -> JobRecord:
        """Save the record, and append ``events`` to its stream in the same transaction.

        Saving a provider cursor (in ``extra``) together with the events it covers means a refresh
        cut short by a lost connection repeats nothing and loses nothing.
        """
        job.updated_at = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            self._queue_save(pipe, job, events)
            results = await pipe.execute()
        job.revision = int(results[-1])
        return job

    async def save_if_unchanged(self, job: JobRecord, *events: JobEvent) -> bool:
        """:meth:`save`, but only if nobody saved the job since it was read (``job.revision``).

        Two followers refreshing from a provider at once would otherwise both append the same new
        events: the second one's save is dropped, and it reads the first one's record instead.
        """
        job.updated_at = time.time()
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.watch(self._revision_key(job.id))
            if int(await pipe.get(self._revision_key(job.id)) or 0) != job.revision:
                return False
            pipe.multi()  # type: ignore[no-untyped-call]
            self._queue_save(pipe, job, events)
            try:
                results = await pipe.execute()
            except WatchError:
                return False
        job.revision = int(results[-1])
        return True

    def _queue_save(self, pipe: Any, job: JobRecord, events: Sequence[JobEvent]) -> None:
        for event in events:
            pipe.xadd(self._events_key(job.id), {"event": event.model_dump_json()})
        pipe.set(self._job_key(job.id), job.model_dump_json())
        pipe.incr(self._revision_key(job.id))  # last: its result is the new revision

    async def claim_refresh(self, job_id: str, ttl_ms: int) -> bool:
        """True for the one caller (across all processes) that may refresh the job in the next ``ttl_ms``.

        Followers of the same job take turns instead of asking the provider at once and appending the
        same events twice; the others just read the stream.
        """
        key = self._state.tagged_key("tune", job_id, "refresh")
        claimed = await self._redis.set(key, "1", nx=True, px=max(1, ttl_ms))
        return bool(claimed)

    async def get(self, job_id: str) -> JobRecord:
        raw, revision = await self._redis.mget(self._job_key(job_id), self._revision_key(job_id))
        if raw is None:  # saved before the hash-tagged layout: read where that version wrote it
            raw = await self._redis.get(self._state.key("tune", "job", job_id))
        if raw is None:
            raise JobNotFoundError(f"no training job `{job_id[:80]}`; `bothbot tune list` shows the known jobs")
        job = JobRecord.model_validate_json(raw)
        job.revision = int(revision or 0)
        return job

    async def recent(self, limit: int = 50) -> list[JobRecord]:
        ids = cast(list[str], await self._redis.zrevrange(self._state.key("tune", "jobs"), 0, limit - 1))
        jobs = []
        for job_id in ids:
            try:
                jobs.append(await self.get(job_id))
            except JobNotFoundError:
                continue
        return jobs

    async def add_event(self, job_id: str, event: JobEvent) -> str:
        entry_id = await self._redis.xadd(self._events_key(job_id), {"event": event.model_dump_json()})
        return str(entry_id)

    async def events(
        self, job_id: str, after: str = "0-0", *, block_ms: int | None = None, count: int = 500
    ) -> list[tuple[str, JobEvent]]:
        """Events after stream id ``after``; with ``block_ms``, wait up to that long for a new one."""
        reply = await self._redis.xread({self._events_key(job_id): after}, count=count, block=block_ms)
        out: list[tuple[str, JobEvent]] = []
        for _stream, entries in cast(list[tuple[str, list[tuple[str, dict[str, str]]]]], reply or []):
            for entry_id, fields in entries:
                out.append((entry_id, JobEvent.model_validate_json(fields["event"])))
        return out


class TrainingBackend(Protocol):
    """What ``bothbot tune`` needs from a training backend.

    ``start`` begins the job (upload, create, or launch a worker) and returns the record with its
    status; ``refresh`` brings the record up to date (poll a provider, notice a dead worker) and
    appends any new events to the store; ``cancel`` asks the job to stop. Progress belongs in the
    record and in events, so any process can follow. All three raise :class:`BackendError` when the
    backend or its provider refuses (``retryable`` for trouble that may pass); ``start`` may be given a
    record the caller has already created.
    """

    name: ClassVar[str]

    async def start(self, job: JobRecord, store: JobStore) -> JobRecord: ...

    async def refresh(self, job: JobRecord, store: JobStore) -> JobRecord: ...

    async def cancel(self, job: JobRecord, store: JobStore) -> JobRecord: ...

    async def aclose(self) -> None: ...


def backend_names() -> Sequence[str]:
    return tuple(BACKENDS)


def load_backend(name: str, settings: Settings) -> TrainingBackend:
    """The backend called ``name``, imported on first use; ``ValueError`` names the known ones."""
    target = BACKENDS.get(name)
    if target is None:
        raise ValueError(f"unknown training backend {name!r}; known: {', '.join(BACKENDS)}")
    module_name, class_name = target.split(":")
    module = importlib.import_module(module_name)
    backend_cls = getattr(module, class_name)
    return cast(TrainingBackend, backend_cls(settings))
