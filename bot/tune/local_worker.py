"""The ``local`` backend's training worker: ``python -m bot.tune.local_worker JOB_ID``.

The backend starts it as a detached process (its own session, output in ``train.log`` in the job's
output folder) with REDIS_URL, BOTHBOT_REDIS_PREFIX and BOTHBOT_DATA_DIR in its environment. It reads
the job from Redis, trains in a thread while this process's event loop writes progress and events to
the job's record and stream, and always leaves the job in a final state: succeeded, cancelled (a
cancel flag in Redis, or SIGTERM) or failed with a :class:`JobError`.

:func:`run_job` is also what the backend runs in-process when there is no Redis to share.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import threading
import traceback
from collections.abc import Awaitable, Callable
from concurrent.futures import TimeoutError as FutureTimeoutError
from pathlib import Path
from typing import Literal, TypeVar

from bot.tune.jobs import JobError, JobEvent, JobProgress, JobRecord, JobStore
from bot.tune.local_train import TrainingError, TrainOutcome, TrainSpec, train

log = logging.getLogger(__name__)
T = TypeVar("T")

LOG_FILE = "train.log"
WAIT_FOR_GO = "--wait-for-go"  # the backend's launch: wait for "go" on stdin (its record is saved) first
_STORE_TIMEOUT_S = 60.0


class StoreReporter:
    """Sends the training thread's reports to the job store on the event loop (thread-safe).

    ``stop_requested`` is checked on every step: a local event (SIGTERM, or cancel in-process) and,
    with Redis, the job's cancel flag.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        store: JobStore,
        job: JobRecord,
        stop_event: threading.Event,
        cancel_check: Callable[[], Awaitable[bool]] | None = None,
    ) -> None:
        self._loop = loop
        self._store = store
        self._job = job
        self._stop_event = stop_event
        self._cancel_check = cancel_check
        self._lock = threading.Lock()

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        async def run() -> T:
            return await make()

        future = asyncio.run_coroutine_threadsafe(run(), self._loop)
        try:
            return future.result(timeout=_STORE_TIMEOUT_S)
        except FutureTimeoutError:
            future.cancel()
            raise

    def message(self, text: str, level: Literal["info", "warning", "error"] = "info") -> None:
        self._call(lambda: self._store.add_event(self._job.id, JobEvent(message=text, level=level)))

    def progress(
        self,
        step: int,
        total_steps: int | None,
        epoch: float | None,
        loss: float | None = None,
        validation_loss: float | None = None,
    ) -> None:
        with self._lock:
            previous = self._job.progress
            self._job.progress = JobProgress(
                step=step,
                total_steps=total_steps,
                epoch=epoch,
                loss=previous.loss if loss is None else loss,
                validation_loss=previous.validation_loss if validation_loss is None else validation_loss,
            )
            job = self._job.model_copy(deep=True)
        parts = [f"step {step}/{total_steps}" if total_steps else f"step {step}"]
        if loss is not None:
            parts.append(f"loss {loss:.4f}")
        if validation_loss is not None:
            parts.append(f"validation loss {validation_loss:.4f}")
        if loss is None and validation_loss is None:
            parts.append("training started")
        event = JobEvent(message=", ".join(parts), step=step, loss=loss)

        self._call(lambda: self._store.save(job, event))

    def should_stop(self) -> bool:
        if self._stop_event.is_set():
            return True
        if self._cancel_check is not None and self._call(self._cancel_check):
            self._stop_event.set()
        return self._stop_event.is_set()


def output_dir_of(job: JobRecord, data_dir: Path) -> Path:
    return Path(job.output_dir) if job.output_dir else (data_dir / "tune" / job.id).resolve()


async def run_job(
    job_id: str,
    store: JobStore,
    data_dir: Path,
    stop_event: threading.Event,
    cancel_check: Callable[[], Awaitable[bool]] | None = None,
) -> JobRecord:
    """Train job ``job_id`` (in a thread) and leave its record in a final state; returns that record."""
    job = await store.get(job_id)
    if job.finished:
        return job
    output_dir = output_dir_of(job, data_dir)
    job.output_dir = str(output_dir)
    job.status = "running"
    job.error = None
    await store.save(job)
    reporter = StoreReporter(asyncio.get_running_loop(), store, job, stop_event, cancel_check)
    try:
        spec = TrainSpec.from_job(job, output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        outcome = await asyncio.to_thread(train, spec, reporter)
    except TrainingError as exc:
        return await _fail(store, job, JobError(code=exc.code, message=exc.message, param=exc.param))
    except Exception as exc:  # the worker's one boundary: the job must end failed, with the reason
        log.exception("training job %s failed", job.id)
        summary = "".join(traceback.format_exception_only(exc)).strip()
        message = f"training failed: {summary}; see {output_dir / LOG_FILE}"
        return await _fail(store, job, JobError(code="training_error", message=message))
    return await _succeed(store, job, outcome)


async def _fail(store: JobStore, job: JobRecord, error: JobError) -> JobRecord:
    job.status = "failed"
    job.error = error
    await store.save(job, JobEvent(level="error", message=f"failed: {error}"))
    return job


async def _succeed(store: JobStore, job: JobRecord, outcome: TrainOutcome) -> JobRecord:
    job.adapter_path = str(outcome.adapter_path) if outcome.adapter_path else None
    job.merged_path = str(outcome.merged_path) if outcome.merged_path else None
    job.trained_tokens = outcome.trained_tokens
    if outcome.adapter_path is not None:
        job.fine_tuned_model = job.suffix or job.id
    if outcome.cancelled:
        job.status = "cancelled"
        kept = f"; the adapter after {outcome.steps} steps is in {job.adapter_path}" if job.adapter_path else ""
        message = f"cancelled{kept}"
    else:
        job.status = "succeeded"
        message = f"succeeded after {outcome.steps} steps: adapter {job.fine_tuned_model} in {job.adapter_path}"
        if job.merged_path:
            message += f", merged model in {job.merged_path}"
    await store.save(job, JobEvent(message=message, step=outcome.steps, loss=outcome.loss))
    return job


async def _main(job_id: str) -> int:
    from bot.settings import load_settings
    from bot.state import StateStore, connect_redis

    settings = load_settings()
    if settings.redis_url is None:
        print("the training worker needs REDIS_URL (its job lives in Redis)", file=sys.stderr)
        return 2
    redis, _ = connect_redis(settings.redis_url, client_name=f"bothbot-tune-{job_id}")
    state = StateStore(redis, settings.redis_prefix)
    store = JobStore(state)

    async def cancel_requested() -> bool:
        return await store.cancel_requested(job_id)

    stop_event = threading.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop_event.set)
    try:
        job = await run_job(job_id, store, settings.data_dir, stop_event, cancel_requested)
    finally:
        await state.aclose()
    print(f"job {job_id}: {job.status}" + (f" ({job.error})" if job.error else ""))
    return 0 if job.status != "failed" else 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    wait = WAIT_FOR_GO in args
    args = [a for a in args if a != WAIT_FOR_GO]
    if len(args) != 1:
        print(f"usage: python -m bot.tune.local_worker JOB_ID [{WAIT_FOR_GO}]", file=sys.stderr)
        return 2
    if wait:
        sys.stdin.readline()  # EOF (the launcher died) also lets it go: refresh then sees what happens
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return asyncio.run(_main(args[0]))


if __name__ == "__main__":
    sys.exit(main())
