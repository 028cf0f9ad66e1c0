"""An OpenAI-compatible files + fine-tuning jobs API on loopback, on top of :class:`FakeOpenAI`.

Speaks what the real ``openai`` SDK sends: ``POST /v1/files`` (multipart, ``purpose=fine-tune``),
``POST /v1/fine_tuning/jobs``, ``GET /v1/fine_tuning/jobs[/{id}]``, ``POST …/{id}/cancel``,
``GET …/{id}/events`` and ``GET …/{id}/checkpoints`` (newest first, ``after`` cursor, ``has_more``),
with OpenAI's error shape ``{"error": {"message", "type", "param", "code"}}``. Chat completions and
embeddings come from :class:`FakeOpenAI`, so one server plays a whole provider.

Jobs move ``validating_files → queued → running`` (one training step per epoch, a metrics event and a
checkpoint each) ``→ succeeded`` one stage at a time, never on a timer: with ``auto_advance`` each
``retrieve`` moves the job one stage on; without it the test calls :meth:`advance`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.openai_server import FakeOpenAI

TERMINAL = ("succeeded", "failed", "cancelled")


def _error(status: int, message: str, *, code: str | None = None, param: str | None = None,
           kind: str = "invalid_request_error") -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return web.json_response(body, status=status)


@dataclass
class FakeJob:
    id: str
    model: str
    training_file: str
    validation_file: str | None
    suffix: str | None
    seed: int
    n_epochs: int
    request: dict[str, Any]
    examples: int
    fail_with: dict[str, Any] | None = None
    status: str = "validating_files"
    created_at: int = field(default_factory=lambda: int(time.time()))
    step: int = 0
    fine_tuned_model: str | None = None
    trained_tokens: int | None = None
    error: dict[str, Any] | None = None
    finished_at: int | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    checkpoints: list[dict[str, Any]] = field(default_factory=list)  # oldest first

    def event(self, message: str, *, level: str = "info", data: dict[str, Any] | None = None) -> None:
        self.events.append({
            "object": "fine_tuning.job.event",
            "id": f"ftevent-{uuid.uuid4().hex[:20]}",
            "created_at": int(time.time()),
            "level": level,
            "message": message,
            "data": data or {},
            "type": "metrics" if data else "message",
        })

    def as_json(self) -> dict[str, Any]:
        hyper = self.request.get("method", {}).get("supervised", {}).get("hyperparameters", {})
        hyperparameters = {
            "n_epochs": self.n_epochs,
            "batch_size": hyper.get("batch_size", "auto"),
            "learning_rate_multiplier": hyper.get("learning_rate_multiplier", 1.8),
        }
        return {
            "object": "fine_tuning.job",
            "id": self.id,
            "model": self.model,
            "created_at": self.created_at,
            "finished_at": self.finished_at,
            "fine_tuned_model": self.fine_tuned_model,
            "organization_id": "org-fake",
            "result_files": ["file-result"] if self.status == "succeeded" else [],
            "status": self.status,
            "validation_file": self.validation_file,
            "training_file": self.training_file,
            "hyperparameters": hyperparameters,
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyperparameters}},
            "trained_tokens": self.trained_tokens,
            "error": self.error,
            "seed": self.seed,
            "estimated_finish": None,
            "integrations": [],
            "metadata": None,
        }


@dataclass
class FakeFineTuning(FakeOpenAI):
    """``api_key`` set: any other key gets OpenAI's 401. ``fail_jobs_with``: new jobs fail at their first step."""

    auto_advance: bool = True
    lists_events: bool = True  # False: events and checkpoints answer 404, as on providers without them
    api_key: str | None = None
    fail_jobs_with: dict[str, Any] | None = None
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    jobs: dict[str, FakeJob] = field(default_factory=dict)
    ft_requests: list[tuple[str, str]] = field(default_factory=list)  # (method, path) of every files/jobs call
    _ft_failures: list[int] = field(default_factory=list)

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        app.router.add_post("/v1/files", self._upload)
        app.router.add_post("/v1/fine_tuning/jobs", self._create)
        app.router.add_get("/v1/fine_tuning/jobs", self._list)
        app.router.add_get("/v1/fine_tuning/jobs/{id}", self._retrieve)
        app.router.add_post("/v1/fine_tuning/jobs/{id}/cancel", self._cancel)
        app.router.add_get("/v1/fine_tuning/jobs/{id}/events", self._events)
        app.router.add_get("/v1/fine_tuning/jobs/{id}/checkpoints", self._checkpoints)

    # --- test controls -------------------------------------------------------------------------

    def fail_next_ft(self, status: int, count: int = 1) -> None:
        """The next ``count`` files/fine-tuning requests answer ``status`` (500: OpenAI's server_error)."""
        self._ft_failures.extend([status] * count)

    @property
    def only_job(self) -> FakeJob:
        assert len(self.jobs) == 1, f"expected one job, the fake has {len(self.jobs)}"
        return next(iter(self.jobs.values()))

    async def advance(self, job_id: str | None = None, stages: int = 1) -> FakeJob:
        """Move a job (the only one by default) ``stages`` stages on."""
        job = self.jobs[job_id] if job_id else self.only_job
        for _ in range(stages):
            self._advance(job)
        await self._notify()
        return job

    async def finish(self, job_id: str | None = None) -> FakeJob:
        job = self.jobs[job_id] if job_id else self.only_job
        while job.status not in TERMINAL:
            self._advance(job)
        await self._notify()
        return job

    # --- the job's life ----------------------------------------------------------------------------

    def _advance(self, job: FakeJob) -> None:
        if job.status == "validating_files":
            if job.examples < 10:
                self._fail(job, {"code": "invalid_training_file", "param": "training_file",
                                 "message": f"Training file has {job.examples} example(s), but must have at least 10"})
                return
            job.status = "queued"
            job.event("Files validated, moving job to queued state")
        elif job.status == "queued":
            job.status = "running"
            job.event("Fine-tuning job started")
        elif job.status == "running" and job.step < job.n_epochs:
            if job.fail_with is not None:
                self._fail(job, job.fail_with)
                return
            job.step += 1
            loss = round(1.5 / job.step, 4)
            job.event(f"Step {job.step}/{job.n_epochs}: training loss={loss}",
                      data={"step": job.step, "train_loss": loss, "total_steps": job.n_epochs})
            job.checkpoints.append({
                "object": "fine_tuning.job.checkpoint",
                "id": f"ftckpt_{uuid.uuid4().hex[:16]}",
                "created_at": int(time.time()),
                "fine_tuned_model_checkpoint": f"{self._model_name(job)}:ckpt-step-{job.step}",
                "fine_tuning_job_id": job.id,
                "step_number": job.step,
                "metrics": {"step": job.step, "train_loss": loss, "valid_loss": round(loss * 1.1, 4)},
            })
        elif job.status == "running":
            job.status = "succeeded"
            job.fine_tuned_model = self._model_name(job)
            job.trained_tokens = 1000 * job.n_epochs
            job.finished_at = int(time.time())
            job.event(f"New fine-tuned model created: {job.fine_tuned_model}")
            job.event("The job has successfully completed")

    @staticmethod
    def _model_name(job: FakeJob) -> str:
        return f"ft:{job.model}:fake-org:{job.suffix or ''}:{job.id[-8:]}"

    @staticmethod
    def _fail(job: FakeJob, error: dict[str, Any]) -> None:
        job.status = "failed"
        job.error = {"code": error.get("code"), "message": error.get("message", ""), "param": error.get("param")}
        job.finished_at = int(time.time())
        job.event(f"Fine-tuning job failed: {job.error['message']}", level="error")

    # --- HTTP ----------------------------------------------------------------------------------------

    async def _guard(self, request: web.Request) -> web.Response | None:
        self.ft_requests.append((request.method, request.path))
        await self._notify()
        if self.api_key is not None and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            given = request.headers.get("Authorization", "").removeprefix("Bearer ")
            shown = f"{given[:3]}*****{given[-4:]}" if len(given) > 8 else "*****"
            return _error(401, f"Incorrect API key provided: {shown}. You can find your API key at "
                          "https://platform.openai.com/account/api-keys.", code="invalid_api_key")
        if self._ft_failures:
            status = self._ft_failures.pop(0)
            return _error(status, "The server had an error while processing your request. Sorry about that!",
                          kind="server_error")
        return None

    def _job(self, request: web.Request) -> FakeJob | web.Response:
        job = self.jobs.get(request.match_info["id"])
        if job is None:
            return _error(404, f"Could not find fine tune: {request.match_info['id']}",
                          code="fine_tune_not_found", param="id")
        return job

    async def _upload(self, request: web.Request) -> web.Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        form = await request.post()
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, web.FileField):
            return _error(400, "Missing file", param="file")
        if purpose != "fine-tune":
            return _error(400, f"Invalid purpose {purpose!r}", param="purpose")
        content = upload.file.read()
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        self.files[file_id] = {"filename": upload.filename, "content": content}
        return web.json_response({
            "object": "file", "id": file_id, "purpose": "fine-tune", "filename": upload.filename,
            "bytes": len(content), "created_at": int(time.time()), "status": "processed", "status_details": None,
        })

    async def _create(self, request: web.Request) -> web.Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        body = await request.json()
        training = self.files.get(body.get("training_file", ""))
        if training is None:
            return _error(400, f"invalid training_file: {body.get('training_file')}", param="training_file",
                          code="invalid_file")
        if body.get("validation_file") and body["validation_file"] not in self.files:
            return _error(400, f"invalid validation_file: {body['validation_file']}", param="validation_file",
                          code="invalid_file")
        if not body.get("model"):
            return _error(400, "model is required", param="model")
        hyper = body.get("method", {}).get("supervised", {}).get("hyperparameters", {})
        epochs = hyper.get("n_epochs", "auto")
        examples = sum(1 for line in training["content"].splitlines() if line.strip())
        job = FakeJob(
            id=f"ftjob-{uuid.uuid4().hex[:20]}", model=body["model"], training_file=body["training_file"],
            validation_file=body.get("validation_file"), suffix=body.get("suffix"), seed=body.get("seed") or 42,
            n_epochs=3 if epochs == "auto" else int(epochs), request=body, examples=examples,
            fail_with=self.fail_jobs_with,
        )
        job.event(f"Validating training file: {job.training_file}")
        self.jobs[job.id] = job
        await self._notify()
        return web.json_response(job.as_json())

    async def _list(self, request: web.Request) -> web.Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        data = [job.as_json() for job in reversed(self.jobs.values())]
        return web.json_response({"object": "list", "data": data, "has_more": False})

    async def _retrieve(self, request: web.Request) -> web.Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        if self.auto_advance:
            self._advance(job)
            await self._notify()
        return web.json_response(job.as_json())

    async def _cancel(self, request: web.Request) -> web.Response:
        if (refused := await self._guard(request)) is not None:
            return refused
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        if job.status in TERMINAL:
            return _error(400, f"Job has already completed: {job.id}", param="id")
        job.status = "cancelled"
        job.finished_at = int(time.time())
        job.event("Fine-tuning job cancelled")
        await self._notify()
        return web.json_response(job.as_json())

    async def _events(self, request: web.Request) -> web.Response:
        return await self._page(request, lambda job: job.events)

    async def _checkpoints(self, request: web.Request) -> web.Response:
        return await self._page(request, lambda job: job.checkpoints)

    async def _page(self, request: web.Request, items: Callable[[FakeJob], list[dict[str, Any]]]) -> web.Response:
        """Newest first; ``after=ID`` continues with the items older than ``ID``."""
        if (refused := await self._guard(request)) is not None:
            return refused
        if not self.lists_events:
            return _error(404, "Not found", code="not_found")
        job = self._job(request)
        if isinstance(job, web.Response):
            return job
        newest_first = list(reversed(items(job)))
        after = request.query.get("after")
        if after:
            ids = [item["id"] for item in newest_first]
            newest_first = newest_first[ids.index(after) + 1:] if after in ids else []
        limit = int(request.query.get("limit", "20"))
        page = newest_first[:limit]
        return web.json_response({
            "object": "list", "data": page, "has_more": len(newest_first) > limit,
            "first_id": page[0]["id"] if page else None, "last_id": page[-1]["id"] if page else None,
        })


def chat_examples(count: int = 12) -> str:
    """A valid small chat fine-tuning file (JSON Lines), ``count`` distinct examples."""
    rows = []
    for i in range(count):
        rows.append(json.dumps({"messages": [
            {"role": "system", "content": "Answer from the sources."},
            {"role": "user", "content": f"Question {i}: how many holiday days do employees get?"},
            {"role": "assistant", "content": f"28 days a year (example {i})."},
        ]}))
    return "\n".join(rows) + "\n"
