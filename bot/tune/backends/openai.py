"""The ``openai`` training backend: any OpenAI-compatible fine-tuning API, through the ``openai`` SDK.

``start`` uploads ``train.jsonl`` (and ``validation.jsonl`` when there is one) with
``purpose="fine-tune"`` and creates a supervised job; ``refresh`` reads the job, its new events and
new checkpoints and saves them with the record in one transaction (the provider cursors live in
``JobRecord.extra``), so a refresh cut short repeats nothing and loses nothing; ``cancel`` asks the
provider to stop. The provider's errors are kept as given: code, message, param.

OpenAI's dates: from 2027-01-06 api.openai.com accepts no new fine-tuning jobs, and fine-tunes of the
GPT-4o/4.1 families stop answering on 2027-01-14. A job for api.openai.com is refused on or after the
first date; another OpenAI-compatible endpoint (Together, Fireworks, a self-hosted server…) is not
bound by it, so there the date is only mentioned.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import openai
from openai.types.fine_tuning.supervised_hyperparameters_param import SupervisedHyperparametersParam

from bot.profiles import OPENAI_FINE_TUNE_RETIREMENT
from bot.settings import Settings
from bot.tune.jobs import BackendError, JobError, JobEvent, JobRecord, JobStatus, JobStore

log = logging.getLogger(__name__)

OPENAI_BASE_URL = "https://api.openai.com/v1"
OPENAI_HOST = "api.openai.com"
OPENAI_NO_NEW_JOBS = date(2027, 1, 6)
UPLOAD_TIMEOUT_SECONDS = 600.0
_PAGE = 100

# JobRecord.hyperparameters keys this backend cannot send, and the flag that set them.
_LOCAL_ONLY = {
    "learning_rate": "--learning-rate (OpenAI-style APIs take --learning-rate-multiplier)",
    "max_steps": "--max-steps",
    "lora_r": "--lora-r",
    "max_length": "--max-length",
    "merge": "--merge",
}
_STATUSES: dict[str, JobStatus] = {
    "validating_files": "validating_files", "queued": "queued", "running": "running",
    "succeeded": "succeeded", "failed": "failed", "cancelled": "cancelled",
}


def is_openai_endpoint(base_url: str | None) -> bool:
    """True for OpenAI's own API (also when no base URL is set: the SDK's default)."""
    return base_url is None or urlsplit(base_url).hostname == OPENAI_HOST


def date_notice(base_url: str | None, today: date) -> tuple[bool, str]:
    """(refused, what to tell the user) about OpenAI's end of fine-tuning, for a job on ``base_url``."""
    dates = (
        f"OpenAI stops accepting new fine-tuning jobs on {OPENAI_NO_NEW_JOBS.isoformat()}; fine-tunes of "
        f"GPT-4o/4.1-family models stop answering on {OPENAI_FINE_TUNE_RETIREMENT.isoformat()}"
    )
    if is_openai_endpoint(base_url):
        if today >= OPENAI_NO_NEW_JOBS:
            return True, (
                f"OpenAI stopped accepting new fine-tuning jobs on {OPENAI_NO_NEW_JOBS.isoformat()} "
                f"(today is {today.isoformat()}). Train with `--backend local`, or point OPENAI_BASE_URL at "
                "another OpenAI-compatible fine-tuning provider."
            )
        return False, dates + "."
    host = urlsplit(base_url or "").hostname or base_url
    return False, f"{dates} (that applies to api.openai.com; this job goes to {host})."


def host_of(base_url: str | None) -> str:
    return urlsplit(base_url or OPENAI_BASE_URL).hostname or (base_url or OPENAI_HOST)


class OpenAIBackend:
    """Fine-tuning jobs on ``OPENAI_BASE_URL`` (default api.openai.com) with ``OPENAI_API_KEY``.

    ``today`` fixes the date the OpenAI cut-off is checked against (tests); default: the UTC date.
    """

    name: ClassVar[str] = "openai"

    def __init__(self, settings: Settings, *, today: date | None = None) -> None:
        self._settings = settings
        self._today = today
        self._clients: dict[str, openai.AsyncOpenAI] = {}
        self._secrets = sorted((s for s in settings.secret_values() if len(s) >= 4), key=len, reverse=True)

    # --- the protocol -------------------------------------------------------------------------

    async def start(self, job: JobRecord, store: JobStore) -> JobRecord:
        base_url = self._settings.openai_base_url
        _check_hyperparameters(job)
        refused, notice = date_notice(base_url, self._today or datetime.now(UTC).date())
        if refused:
            raise BackendError(notice)
        if is_openai_endpoint(base_url) and self._settings.openai_api_key is None:
            raise BackendError("OPENAI_API_KEY is not set: api.openai.com needs a key to fine-tune.")
        client = self._client(base_url)
        host = host_of(base_url)
        data = Path(job.data_dir)
        events = [JobEvent(level="warning", message=notice)]
        training = await self._upload(client, data / "train.jsonl", host)
        events.append(JobEvent(message=f"uploaded train.jsonl to {host} as {training.id} ({training.bytes} bytes)"))
        job.extra["training_file"] = training.id
        validation_id: str | None = None
        if await asyncio.to_thread((data / "validation.jsonl").is_file):
            validation = await self._upload(client, data / "validation.jsonl", host)
            validation_id = validation.id
            job.extra["validation_file"] = validation_id
            events.append(
                JobEvent(message=f"uploaded validation.jsonl as {validation.id} ({validation.bytes} bytes)")
            )
        await store.save(job, *events)  # the uploads are on record even if creating the job fails
        events = []
        hyper: SupervisedHyperparametersParam = {"n_epochs": job.epochs if job.epochs is not None else "auto"}
        if job.hyperparameters.get("batch_size") is not None:
            hyper["batch_size"] = int(job.hyperparameters["batch_size"])
        if job.hyperparameters.get("learning_rate_multiplier") is not None:
            hyper["learning_rate_multiplier"] = float(job.hyperparameters["learning_rate_multiplier"])
        options: dict[str, Any] = {}
        if validation_id:
            options["validation_file"] = validation_id
        if job.suffix:
            options["suffix"] = job.suffix
        if job.hyperparameters.get("seed") is not None:
            options["seed"] = int(job.hyperparameters["seed"])
        try:
            created = await client.fine_tuning.jobs.create(
                model=job.base_model,
                training_file=training.id,
                method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
                **options,
            )
        except openai.OpenAIError as exc:
            raise self._error(exc, host, "creating the fine-tuning job") from None
        job.provider_job_id = created.id
        job.provider_base_url = base_url or OPENAI_BASE_URL
        events.append(JobEvent(message=f"created fine-tuning job {created.id} on {host}"))
        self._apply(job, created, events)
        await store.save(job, *events)
        return job

    async def refresh(self, job: JobRecord, store: JobStore) -> JobRecord:
        if job.finished or job.provider_job_id is None:
            return job
        client = self._client(job.provider_base_url)
        host = host_of(job.provider_base_url)
        try:
            remote = await client.fine_tuning.jobs.retrieve(job.provider_job_id)
            new_events = await self._optional_list(
                job, "events", client.fine_tuning.jobs.list_events(job.provider_job_id, limit=_PAGE), "last_event"
            )
            new_checkpoints = await self._optional_list(
                job,
                "checkpoints",
                client.fine_tuning.jobs.checkpoints.list(job.provider_job_id, limit=_PAGE),
                "last_checkpoint",
            )
        except openai.OpenAIError as exc:
            raise self._error(exc, host, f"reading job {job.provider_job_id}") from None
        events: list[JobEvent] = []
        for item in new_events:
            events.append(self._event(job, item))
            job.extra["last_event"] = item.id
        for checkpoint in new_checkpoints:
            metrics = checkpoint.metrics
            losses = ", ".join(
                f"{label} {value:.4f}"
                for label, value in (("train loss", metrics.train_loss), ("valid loss", metrics.valid_loss))
                if value is not None
            )
            events.append(JobEvent(
                message=f"checkpoint {checkpoint.fine_tuned_model_checkpoint} at step {checkpoint.step_number}"
                + (f" ({losses})" if losses else ""),
                step=checkpoint.step_number, loss=metrics.train_loss,
            ))
            job.extra.setdefault("checkpoints", []).append(checkpoint.fine_tuned_model_checkpoint)
            job.extra["last_checkpoint"] = checkpoint.id
        self._apply(job, remote, events)
        if not await store.save_if_unchanged(job, *events):
            return await store.get(job.id)  # another follower refreshed it meanwhile: its events stand
        return job

    async def cancel(self, job: JobRecord, store: JobStore) -> JobRecord:
        if job.finished or job.provider_job_id is None:
            return job
        host = host_of(job.provider_base_url)
        try:
            remote = await self._client(job.provider_base_url).fine_tuning.jobs.cancel(job.provider_job_id)
        except openai.OpenAIError as exc:
            raise self._error(exc, host, f"cancelling job {job.provider_job_id}") from None
        events = [JobEvent(level="warning", message=f"cancel requested; {host} says the job is {remote.status}")]
        self._apply(job, remote, events)
        await store.save(job, *events)
        return job

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    # --- helpers -----------------------------------------------------------------------------------

    def _client(self, base_url: str | None) -> openai.AsyncOpenAI:
        key = base_url or OPENAI_BASE_URL
        client = self._clients.get(key)
        if client is None:
            api_key = self._settings.openai_api_key
            client = openai.AsyncOpenAI(
                api_key=api_key.get_secret_value() if api_key else "not-needed",
                base_url=key,
                timeout=self._settings.model_timeout_seconds,
                max_retries=self._settings.model_max_retries,
            )
            self._clients[key] = client
        return client

    async def _upload(self, client: openai.AsyncOpenAI, path: Path, host: str) -> Any:
        try:
            return await client.files.create(file=path, purpose="fine-tune", timeout=UPLOAD_TIMEOUT_SECONDS)
        except openai.OpenAIError as exc:
            raise self._error(exc, host, f"uploading {path.name}") from None

    async def _optional_list(self, job: JobRecord, what: str, pages: Any, cursor: str) -> list[Any]:
        """New events or checkpoints; a provider without that endpoint (404) is remembered and skipped."""
        unsupported: list[str] = job.extra.setdefault("unsupported", [])
        if what in unsupported:
            return []
        try:
            return await self._new_items(pages, job.extra.get(cursor))
        except openai.NotFoundError:
            unsupported.append(what)
            log.info("%s lists no fine-tuning %s; following the job's status only", job.provider_base_url, what)
            return []

    @staticmethod
    async def _new_items(pages: Any, seen: str | None) -> list[Any]:
        """Items newer than ``seen`` from a newest-first paginated list, oldest first."""
        fresh: list[Any] = []
        async for item in pages:
            if item.id == seen:
                break
            fresh.append(item)
        return fresh[::-1]

    def _event(self, job: JobRecord, item: Any) -> JobEvent:
        data = item.data if isinstance(item.data, dict) else {}
        level: Literal["info", "warning", "error"] = (
            "warning" if item.level == "warn" else "error" if item.level == "error" else "info"
        )
        step = data.get("step")
        loss = data.get("train_loss")
        if isinstance(step, int):
            job.progress.step = step
            if isinstance(data.get("total_steps"), int):
                job.progress.total_steps = data["total_steps"]
            if isinstance(loss, int | float):
                job.progress.loss = float(loss)
            valid = data.get("valid_loss")
            if isinstance(valid, int | float):
                job.progress.validation_loss = float(valid)
        return JobEvent(
            at=float(item.created_at), level=level, message=self._redact(item.message),
            step=step if isinstance(step, int) else None,
            loss=float(loss) if isinstance(loss, int | float) else None,
        )

    def _apply(self, job: JobRecord, remote: Any, events: list[JobEvent]) -> None:
        """Copy the provider's view of the job into the record; a terminal change adds its event."""
        before = job.status
        job.status = _STATUSES.get(remote.status, job.status)
        job.fine_tuned_model = remote.fine_tuned_model or job.fine_tuned_model
        job.trained_tokens = remote.trained_tokens or job.trained_tokens
        epochs = getattr(remote.hyperparameters, "n_epochs", None)
        if isinstance(epochs, int):
            job.extra["n_epochs"] = epochs
        if remote.error is not None and (remote.error.message or remote.error.code):
            job.error = JobError(
                code=remote.error.code, message=self._redact(remote.error.message or ""), param=remote.error.param
            )
        if job.status == before:
            return
        if job.status == "succeeded":
            tokens = f" ({job.trained_tokens} trained tokens)" if job.trained_tokens else ""
            events.append(JobEvent(message=f"succeeded: {job.fine_tuned_model}{tokens}"))
        elif job.status == "failed":
            events.append(JobEvent(level="error", message=f"failed: {job.error or 'no reason given'}"))
        elif job.status == "cancelled":
            events.append(JobEvent(level="warning", message="cancelled"))

    def _redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _error(self, exc: openai.OpenAIError, host: str, doing: str) -> BackendError:
        """The provider's answer as a :class:`BackendError`: its code, message and param as given."""
        if isinstance(exc, openai.APIStatusError):
            body = exc.body if isinstance(exc.body, dict) else {}
            error = JobError(
                code=exc.code, message=self._redact(str(body.get("message") or exc.message)), param=exc.param
            )
            status = exc.status_code
            retryable = status >= 500 or status in (408, 409, 429)
            return BackendError(f"{host} answered {status} while {doing}: {error}", error=error, retryable=retryable)
        if isinstance(exc, openai.APIConnectionError):  # also timeouts
            return BackendError(f"cannot reach {host} while {doing}: {self._redact(str(exc))}", retryable=True)
        return BackendError(f"{doing} on {host} failed: {self._redact(str(exc))}")


def _check_hyperparameters(job: JobRecord) -> None:
    unsupported = [flag for key, flag in _LOCAL_ONLY.items() if job.hyperparameters.get(key) not in (None, False)]
    if job.output_dir:
        unsupported.append("--output")
    if unsupported:
        raise BackendError(
            f"{', '.join(unsupported)} only {'apply' if len(unsupported) > 1 else 'applies'} to --backend local; "
            "the openai backend takes --epochs, --batch-size, --learning-rate-multiplier, --suffix and --seed."
        )
