"""The shared live message against a recording sink, on a fake clock: coalescing, throttle, the
final edit, held-back text while the model pauses, and the answer's error boundary."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field

import pytest

from adapters.common.live import LiveMessage, Throttle
from adapters.common.texts import answer_failed
from bot.messages import FinalAnswer, ReplyEvent, Status, TextDelta


@dataclass
class FakeClock:
    """Time that moves only when the test (or the scripted model) moves it; ``sleep`` wakes when
    the clock reaches its deadline, as a real sleep does when real time does."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    asleep: asyncio.Event = field(default_factory=asyncio.Event)  # set when something sleeps
    _sleepers: list[tuple[float, asyncio.Future[None]]] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.asleep.set()
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self.now + seconds, wake)
        self._sleepers.append(entry)
        try:
            await wake
        finally:
            self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for deadline, wake in self._sleepers:
            if deadline <= self.now and not wake.done():
                wake.set_result(None)


@dataclass
class RecordingSink:
    """A LiveSink that shows what a user would see: the text on screen, and when each edit happened."""

    throttle: Throttle
    text: str = ""  # everything appended
    shown: str = ""  # what the message shows
    status_line: str = ""
    calls: list[str] = field(default_factory=list)
    edits: list[tuple[float, str]] = field(default_factory=list)
    final: FinalAnswer | None = None
    failed: list[str | None] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pending(self) -> bool:
        return self.shown != self.text

    def _show(self, what: str) -> None:
        self.shown = what
        self.edits.append((self.throttle.clock(), what))
        self.throttle.mark()
        self.changed.set()

    async def start(self, status: str | None) -> None:
        self.calls.append(f"start:{status}")
        if status is not None:
            self.status_line = status
            self.edits.append((self.throttle.clock(), f"({status})"))
            self.throttle.mark()

    async def status(self, text: str) -> None:
        self.calls.append(f"status:{text}")
        self.status_line = text

    async def append(self, delta: str) -> None:
        self.calls.append("append")
        self.text += delta

    async def flush(self) -> None:
        self.calls.append("flush")
        self._show(self.text)

    async def finish(self, final: FinalAnswer | None) -> None:
        self.calls.append("finish")
        self.final = final
        self._show(final.text if final is not None else self.text)

    async def fail(self, note: str | None) -> None:
        self.calls.append("fail")
        self.failed.append(note)


def answer(text: str, trace: str = "trace-1") -> FinalAnswer:
    return FinalAnswer(text=text, kind="answer", trace_id=trace, feedback=True)


async def model(events: Iterable[ReplyEvent | asyncio.Event | float], clock: FakeClock) -> AsyncIterator[ReplyEvent]:
    """A scripted reply stream: a float is time the model takes, an Event a pause until it is set."""
    for item in events:
        if isinstance(item, float):
            clock.advance(item)
            await asyncio.sleep(0)
        elif isinstance(item, asyncio.Event):
            await item.wait()
        else:
            yield item


def live_on(clock: FakeClock, interval: float) -> tuple[LiveMessage, RecordingSink]:
    throttle = Throttle(interval, clock)
    sink = RecordingSink(throttle)
    return LiveMessage(sink, throttle, sleep=clock.sleep), sink


async def test_deltas_inside_an_interval_are_coalesced_into_one_edit() -> None:
    clock = FakeClock()
    live, sink = live_on(clock, interval=1.0)
    script: list[ReplyEvent | asyncio.Event | float] = [Status("Searching…")]
    for i in range(30):  # 30 deltas, 0.1 s apart: 3 seconds of writing
        script += [0.1, TextDelta(f"w{i} ")]
    text = "".join(f"w{i} " for i in range(30))
    script.append(answer(text))

    assert await live.run(model(script, clock)) == answer(text)

    flushes = sink.calls.count("flush")
    assert 1 <= flushes <= 4, f"30 deltas in 3 s at one edit per second: {flushes} edits"
    assert sink.calls.count("append") == 30
    intermediate = [t for t, _ in sink.edits[:-1]]
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(intermediate)), sink.edits


async def test_the_final_edit_is_made_even_when_the_throttle_says_wait() -> None:
    clock = FakeClock()
    live, sink = live_on(clock, interval=60.0)
    script: list[ReplyEvent | asyncio.Event | float] = [TextDelta("Hello"), TextDelta(" world"), answer("Hello world")]

    await live.run(model(script, clock))

    assert sink.calls == ["start:None", "append", "flush", "append", "finish"]
    assert sink.edits[-1] == (0.0, "Hello world") and sink.final == answer("Hello world")
    assert clock.now == 0.0, "nothing waited for the throttle"


async def test_held_back_text_is_shown_when_the_model_pauses() -> None:
    clock = FakeClock()
    live, sink = live_on(clock, interval=1.0)
    resume = asyncio.Event()
    script: list[ReplyEvent | asyncio.Event | float] = [TextDelta("Hello"), TextDelta(" world"), resume]
    script.append(answer("Hello world"))
    task = asyncio.create_task(live.run(model(script, clock)))

    await asyncio.wait_for(clock.asleep.wait(), 10)  # "Hello" is shown at once; " world" waits for the throttle
    assert sink.shown == "Hello" and clock.sleeps == [1.0], "it waits exactly until the throttle allows the edit"
    clock.advance(0.5)
    await asyncio.sleep(0)
    assert sink.shown == "Hello", "not before the interval is over"
    clock.advance(0.5)  # the model is still paused
    while sink.shown != "Hello world":
        sink.changed.clear()
        await asyncio.wait_for(sink.changed.wait(), 10)
    assert sink.final is None and clock.now == 1.0
    resume.set()
    assert await asyncio.wait_for(task, 10) == answer("Hello world")
    assert sink.calls[-1] == "finish"


async def test_an_empty_stream_shows_nothing() -> None:
    live, sink = live_on(FakeClock(), interval=1.0)
    assert await live.run(model([], FakeClock())) is None
    assert sink.calls == []


async def test_a_one_shot_answer_is_finished_without_a_start() -> None:
    clock = FakeClock()
    live, sink = live_on(clock, interval=1.0)
    assert await live.run(model([answer("Done.")], clock)) == answer("Done.")
    assert sink.calls == ["finish"]


async def test_a_stream_without_a_final_answer_is_finished_with_none() -> None:
    clock = FakeClock()
    live, sink = live_on(clock, interval=1.0)
    assert await live.run(model([Status("Thinking…"), TextDelta("Part")], clock)) is None
    assert sink.calls[-1] == "finish" and sink.final is None
    assert sink.shown == "Part"


async def test_statuses_after_the_first_go_to_the_sink() -> None:
    clock = FakeClock()
    live, sink = live_on(clock, interval=1.0)
    await live.run(model([Status("Searching…"), Status("Writing…"), answer("A")], clock))
    assert sink.calls == ["start:Searching…", "status:Writing…", "finish"]


async def test_events_after_the_final_answer_are_drained_so_the_engine_finishes() -> None:
    clock = FakeClock()
    live, sink = live_on(clock, interval=1.0)
    finished = asyncio.Event()

    async def engine() -> AsyncIterator[ReplyEvent]:
        yield answer("A")
        yield TextDelta("late")  # not shown
        finished.set()

    assert await live.run(engine()) == answer("A")
    assert finished.is_set() and sink.shown == "A"


class Refused(Exception):
    """Stands for a platform's "no" (Slack's Web API error, say)."""


async def test_a_platform_refusal_is_told_with_what_the_platform_said() -> None:
    clock = FakeClock()
    live, sink = live_on(clock, interval=0.0)

    async def engine() -> AsyncIterator[ReplyEvent]:
        yield TextDelta("Partial")
        raise Refused("msg_too_long")

    result = await live.answer(engine(), ref="E1", platform="slack", platform_errors=(Refused,))

    assert result is None
    assert sink.failed == ["I couldn't finish posting this answer (Slack said: msg_too_long)."]


async def test_a_refusal_before_anything_was_shown_is_not_reported_in_the_thread() -> None:
    live, sink = live_on(FakeClock(), interval=0.0)

    async def engine() -> AsyncIterator[ReplyEvent]:
        raise Refused("channel_not_found")
        yield

    await live.answer(engine(), ref="E1", platform="slack", platform_errors=(Refused,))
    assert sink.failed == [None]


async def test_any_other_failure_is_logged_once_with_the_trace_and_told_to_the_user(
    caplog: pytest.LogCaptureFixture,
) -> None:
    live, sink = live_on(FakeClock(), interval=0.0)

    async def engine() -> AsyncIterator[ReplyEvent]:
        yield TextDelta("Half an answer")
        yield FinalAnswer(text="Half an answer", kind="answer", trace_id="trace-42")
        raise RuntimeError("bug")

    with caplog.at_level(logging.INFO, logger="adapters.common.live"):
        await live.answer(engine(), ref="M7", platform="discord")

    assert sink.failed == [answer_failed("M7")]
    [record] = [r for r in caplog.records if r.exc_info]
    assert "M7" in record.getMessage() and "trace-42" in record.getMessage()


async def test_cancellation_passes_through_the_boundary() -> None:
    live, sink = live_on(FakeClock(), interval=0.0)
    never = asyncio.Event()

    async def engine() -> AsyncIterator[ReplyEvent]:
        yield TextDelta("Working")
        await never.wait()
        yield answer("never")

    task = asyncio.create_task(live.answer(engine(), ref="E1", platform="slack"))
    while sink.shown != "Working":
        sink.changed.clear()
        await asyncio.wait_for(sink.changed.wait(), 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sink.failed == [] and "finish" not in sink.calls
