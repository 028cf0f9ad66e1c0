"""The ``local`` training backend: LoRA fine-tuning with TRL and PEFT on this machine.

``start`` checks what can be checked at once (libraries installed, data present, base model found),
then launches ``python -m bot.tune.local_worker JOB_ID`` as a detached process: its own session, so
it outlives the command that started it and a follower's Ctrl-C; its output goes to ``train.log`` in
the job's output folder. The worker writes progress and events to Redis, where any process follows.

With in-process state (no REDIS_URL) no other process can see the job, so the training runs in this
process, in a thread (the event loop stays free); :meth:`LocalBackend.aclose` waits for it.

``cancel`` sets a flag in Redis that the worker checks after every step; the job then ends
``cancelled`` with the adapter trained so far. ``refresh`` marks a job whose worker is gone without
having finished it as failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import ClassVar

from bot.settings import Settings
from bot.tune.jobs import BackendError, JobError, JobEvent, JobRecord, JobStore
from bot.tune.local_train import TrainingError, read_chat_file, require_dependencies, resolve_base_model
from bot.tune.local_worker import (
    LOG_FILE,
    WAIT_FOR_GO,
    output_dir_of,
    run_job,
)


class LocalBackend:
    name: ClassVar[str] = "local"

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._workers: dict[str, subprocess.Popen[bytes]] = {}
        self._in_process: dict[str, tuple[asyncio.Task[JobRecord], threading.Event]] = {}

    @property
    def detached(self) -> bool:
        """True when jobs run in a worker process (Redis shared); False when they run in this process."""
        return self._settings.redis_url is not None

    # --- start ------------------------------------------------------------------------------

    async def start(self, job: JobRecord, store: JobStore) -> JobRecord:
        output_dir = output_dir_of(job, self._settings.data_dir)
        job.output_dir = str(output_dir)
        job.status = "validating_files"
        await store.create(job)
        try:
            await asyncio.to_thread(self._check, job)
        except TrainingError as exc:
            job.status = "failed"
            job.error = JobError(code=exc.code, message=exc.message, param=exc.param)
            await store.save(job, JobEvent(level="error", message=f"failed: {job.error}"))
            raise BackendError(f"the local backend cannot start this job: {exc.message}", error=job.error) from None
        job.status = "queued"
        job.error = None
        await store.save(job)
        if not self.detached:
            return await self._start_in_process(job, store)
        return await self._start_worker(job, store, output_dir)

    @staticmethod
    def _check(job: JobRecord) -> None:
        require_dependencies()
        resolve_base_model(job.base_model)
        data = Path(job.data_dir)
        read_chat_file(data / "train.jsonl")
        if (data / "validation.jsonl").is_file():
            read_chat_file(data / "validation.jsonl")

    async def _start_worker(self, job: JobRecord, store: JobStore, output_dir: Path) -> JobRecord:
        env = dict(os.environ)
        env.update(
            REDIS_URL=str(self._settings.redis_url),
            BOTHBOT_REDIS_PREFIX=self._settings.redis_prefix,
            BOTHBOT_DATA_DIR=str(self._settings.data_dir.resolve()),
            PYTHONUNBUFFERED="1",
            TOKENIZERS_PARALLELISM="false",
        )
        await store.clear_cancel(job.id)
        log_path = output_dir / LOG_FILE
        worker = await asyncio.to_thread(_spawn_worker, job.id, env, log_path)
        self._workers[job.id] = worker
        job.extra.update(pid=worker.pid, host=socket.gethostname(), pid_started=_process_start_time(worker.pid))
        job.extra["log"] = str(log_path)
        try:
            await store.save(job, JobEvent(message=f"training worker started (pid {worker.pid}); log: {log_path}"))
        finally:
            await asyncio.to_thread(_release_worker, worker)  # only now may it write to the record
        return job

    async def _start_in_process(self, job: JobRecord, store: JobStore) -> JobRecord:
        job.extra["in_process"] = True
        await store.save(
            job,
            JobEvent(
                level="warning",
                message="no REDIS_URL: training in this process (in-process state cannot be shared with a worker); "
                "it stops when this process exits. Set REDIS_URL to train in the background.",
            ),
        )
        stop = threading.Event()
        task = asyncio.create_task(run_job(job.id, store, self._settings.data_dir, stop), name=f"tune-{job.id}")
        self._in_process[job.id] = (task, stop)
        return job

    # --- follow -----------------------------------------------------------------------------

    async def refresh(self, job: JobRecord, store: JobStore) -> JobRecord:
        current = await store.get(job.id)
        if current.finished or self._worker_alive(current) is not False:
            return current
        current = await store.get(job.id)  # the worker may have finished just before it exited
        if current.finished:
            return current
        log_path = current.extra.get("log") or str(Path(current.output_dir or ".") / LOG_FILE)
        current.status = "failed"
        current.error = JobError(code="worker_exited", message=f"the training process exited; see {log_path}")
        await store.save(current, JobEvent(level="error", message=f"failed: {current.error}"))
        return current

    def _worker_alive(self, job: JobRecord) -> bool | None:
        """Whether the job's worker runs; None when this process cannot tell (another host, in-process job)."""
        if job.id in self._in_process:
            return not self._in_process[job.id][0].done()
        worker = self._workers.get(job.id)
        if worker is not None:
            return worker.poll() is None
        pid = job.extra.get("pid")
        if not isinstance(pid, int) or job.extra.get("host") != socket.gethostname():
            return None
        started = job.extra.get("pid_started")
        if not _process_running(pid):
            return False
        return started is None or _process_start_time(pid) in (None, started)

    # --- cancel -----------------------------------------------------------------------------

    async def cancel(self, job: JobRecord, store: JobStore) -> JobRecord:
        current = await self.refresh(job, store)
        if current.finished:
            return current
        if job.id in self._in_process:
            self._in_process[job.id][1].set()
        elif self.detached:
            await store.request_cancel(job.id)
        await store.add_event(job.id, JobEvent(level="warning", message="cancel requested; stopping after this step"))
        return current

    async def wait(self, job_id: str) -> None:
        """Wait for a job trained in this process (no-op for a worker's job)."""
        entry = self._in_process.get(job_id)
        if entry is not None:
            await asyncio.shield(entry[0])

    async def aclose(self) -> None:
        """Wait for in-process trainings (cancelling them if this wait is cancelled); workers keep running."""
        try:
            for task, _stop in list(self._in_process.values()):
                await asyncio.shield(task)
        except asyncio.CancelledError:
            for task, stop in self._in_process.values():
                stop.set()
                with contextlib.suppress(Exception):
                    await task
            raise


def _spawn_worker(job_id: str, env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start the worker in its own session (it outlives this process and its Ctrl-C), output to the log."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log_file:
        return subprocess.Popen(
            [sys.executable, "-m", "bot.tune.local_worker", job_id, WAIT_FOR_GO],
            stdin=subprocess.PIPE,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )


def _release_worker(worker: subprocess.Popen[bytes]) -> None:
    """Tell the worker its record is saved (it waits for this before touching it), then close its stdin."""
    stdin = worker.stdin
    if stdin is None:
        return
    with contextlib.suppress(OSError):  # a worker that died already is noticed by refresh
        stdin.write(b"go\n")
        stdin.flush()
    with contextlib.suppress(OSError):
        stdin.close()


def _process_running(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (a finished child nobody has reaped yet)."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.is_dir() and Path("/proc/self").exists():
        try:
            state = stat.read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state not in ("Z", "X")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _process_start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid from ours."""
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None
