"""The shared in-flight tracker: the request boundary logs once, drain waits, then cancels and awaits."""

from __future__ import annotations

import asyncio
import logging

import pytest

from adapters.common.inflight import InFlight


async def test_a_failure_is_logged_once_with_its_reference_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    inflight = InFlight("test")

    async def broken() -> None:
        raise RuntimeError("boom")

    with caplog.at_level(logging.INFO, logger="adapters.common.inflight"):
        task = inflight.spawn(broken(), "event", ref="Ev1")
        await inflight.wait_processed(1)
        await task
    [record] = [r for r in caplog.records if r.exc_info]
    assert "event failed (ref Ev1)" in record.getMessage()
    assert inflight.in_flight == 0 and inflight.processed == 1


async def test_drain_waits_for_work_that_finishes_within_the_grace_period() -> None:
    inflight = InFlight("test")
    release = asyncio.Event()
    done: list[str] = []

    async def answer() -> None:
        await release.wait()
        done.append("answered")

    inflight.spawn(answer(), "event")
    draining = asyncio.create_task(inflight.drain(60))
    await asyncio.sleep(0)
    assert not draining.done()
    release.set()
    assert await draining == 0
    assert done == ["answered"] and inflight.in_flight == 0


async def test_past_the_grace_period_work_is_cancelled_and_awaited() -> None:
    inflight = InFlight("test")
    unwound: list[str] = []
    started = asyncio.Event()

    async def stuck() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)  # unwinding takes a turn of the loop: drain still waits for it
            unwound.append("closed")

    task = inflight.spawn(stuck(), "event")
    await started.wait()
    assert await inflight.drain(0) == 1
    assert task.cancelled() and unwound == ["closed"]
    assert inflight.in_flight == 0


async def test_a_task_the_platform_library_created_is_tracked_while_it_works() -> None:
    inflight = InFlight("test")
    inside = asyncio.Event()
    release = asyncio.Event()

    async def handler() -> None:  # as discord.py runs an event handler: in a task of its own
        with inflight.tracking():
            inside.set()
            await release.wait()

    task = asyncio.create_task(handler())
    await inside.wait()
    assert inflight.tasks == {task}
    release.set()
    await task
    assert inflight.in_flight == 0
    await inflight.wait_idle(1)
