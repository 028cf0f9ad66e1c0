"""Following a training job: ``refresh → new events (XREAD, blocking) → print → until terminal``.

Everything shown comes from Redis (the record and its event stream), so any process can follow any
job, and a follower that stops (Ctrl-C, a lost terminal) loses nothing: ``bothbot tune follow JOB``
shows the whole history again and carries on. A lost Redis connection or a provider hiccup (5xx,
timeout) is said once and retried; the follower resumes after the last event it printed.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime
from typing import Never, TextIO

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from tqdm import tqdm

from bot.tune.jobs import BackendError, JobEvent, JobRecord, JobStore, TrainingBackend

GIVE_UP_SECONDS = 300.0  # Redis or the provider unreachable this long: stop following (the job goes on)
_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)


class FollowError(Exception):
    """Following had to stop (not the job); the message says how to follow again."""


class Display:
    """Where a follower writes: plain lines, or a progress bar (tqdm) with the lines above it on a terminal."""

    def __init__(self, out: TextIO, *, tty: bool) -> None:
        self._out = out
        self._tty = tty
        self._bar: tqdm[Never] | None = None

    def line(self, text: str) -> None:
        if self._bar is not None:
            self._bar.write(text, file=self._out)
        else:
            print(text, file=self._out, flush=True)

    def event(self, event: JobEvent) -> None:
        stamp = datetime.fromtimestamp(event.at).strftime("%H:%M:%S")
        mark = {"warning": "! ", "error": "✗ "}.get(event.level, "")
        self.line(f"{stamp}  {mark}{event.message}")

    def status(self, job: JobRecord) -> None:
        self.line(f"status: {job.status}")

    def progress(self, job: JobRecord) -> None:
        if not self._tty:
            return
        total = job.progress.total_steps
        if self._bar is None:
            if not total or job.finished:
                return
            self._bar = tqdm(total=total, file=self._out, unit="step", dynamic_ncols=True, leave=True)
        bar = self._bar
        if total and bar.total != total:
            bar.total = total
        bar.n = min(job.progress.step, bar.total or job.progress.step)
        postfix = {"loss": f"{job.progress.loss:.4f}"} if job.progress.loss is not None else {}
        if job.progress.validation_loss is not None:
            postfix["val"] = f"{job.progress.validation_loss:.4f}"
        bar.set_description(job.status)
        bar.set_postfix(postfix, refresh=False)
        bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


async def follow(
    store: JobStore,
    backend: TrainingBackend,
    job_id: str,
    display: Display,
    *,
    poll_seconds: float,
    after: str = "0-0",
    give_up_seconds: float = GIVE_UP_SECONDS,
) -> JobRecord:
    """Show the job's events after stream id ``after`` and its progress until it finishes; return the record.

    Between refreshes the follower blocks on the event stream for up to ``poll_seconds``, so a backend
    that writes events itself (the local worker) is shown at once, and a hosted API is asked every
    ``poll_seconds``.
    """
    last = after
    shown_status: str | None = None
    trouble_since: float | None = None
    attempts = 0
    try:
        while True:
            _stop_if_cancelled()
            try:
                job = await refreshed(store, backend, job_id, poll_seconds)
                block = None if job.finished else max(1, int(poll_seconds * 1000))
                events = await store.events(job_id, after=last, block_ms=block)
            except (RedisConnectionError, RedisTimeoutError) as exc:
                _stop_if_cancelled()
                trouble_since = _trouble(display, trouble_since, give_up_seconds, job_id,
                                         f"lost the connection to Redis ({exc})")
                attempts += 1
                await asyncio.sleep(_BACKOFF[min(attempts, len(_BACKOFF)) - 1])
                continue
            except BackendError as exc:
                _stop_if_cancelled()
                if not exc.retryable:
                    raise
                trouble_since = _trouble(display, trouble_since, give_up_seconds, job_id, str(exc))
                attempts += 1
                await asyncio.sleep(_BACKOFF[min(attempts, len(_BACKOFF)) - 1])
                continue
            if trouble_since is not None:
                display.line(f"… connection back; carrying on after event {last}.")
                trouble_since, attempts = None, 0
            for entry_id, event in events:
                display.event(event)
                last = entry_id
            if job.status != shown_status:
                display.status(job)
                shown_status = job.status
            display.progress(job)
            if job.finished and not events:
                return job
    finally:
        display.close()


async def refreshed(store: JobStore, backend: TrainingBackend, job_id: str, poll_seconds: float) -> JobRecord:
    """The job, brought up to date by the backend unless another process did so within ``poll_seconds``."""
    job = await store.get(job_id)
    if job.finished or not await store.claim_refresh(job_id, int(poll_seconds * 1000)):
        return job
    return await backend.refresh(await store.get(job_id), store)  # read again: the last refresh may be newer


def _stop_if_cancelled() -> None:
    """Re-raise a cancellation (Ctrl-C) that a client library turned into a connection error or swallowed.

    Seen here: a cancel arriving during a blocking XREAD or an HTTP read sometimes comes back as a
    timeout/connection error, which would otherwise be retried forever.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


def _trouble(display: Display, since: float | None, give_up: float, job_id: str, what: str) -> float:
    now = time.monotonic()
    if since is None:
        display.line(f"… {what}; retrying. The job itself is not affected.")
        return now
    if now - since > give_up:
        raise FollowError(
            f"{what}, for over {int(give_up)} s; stopped following (the job is not affected). "
            f"Follow it again with: bothbot tune follow {job_id}"
        )
    return since
