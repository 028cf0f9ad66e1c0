"""The streaming relay's edit budget when an answer outgrows a message: the real Slack renderer
and Web API client against the Slack fake, on a fake clock (``Throttle``'s injectable clock).

A full message is finished and continued in a new one when the throttle next allows an edit,
never in between, so a long answer keeps to one edit per interval (besides opening and closing
messages) like a short one (``bench/bench_stream_relay.py`` measures the same end to end)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import pytest

from adapters.slack.client import make_web_client
from adapters.slack.render import SlackReplyRenderer, StreamSupport
from adapters.slack.sinks import ReplyTarget
from bot.messages import FinalAnswer, ReplyEvent, Status, TextDelta
from tests.adapters.test_live import FakeClock
from tests.fakes.slack_server import BOT_TOKEN, FakeMessage, FakeSlack

THREAD = ReplyTarget(channel="C1", thread_ts="1800000000.000001", team="T1", user="U1")
DELTAS = ["".join(f"w{i:02d}x{j} " for j in range(10)) for i in range(5)]  # 5 × 60 characters
TEXT = "".join(DELTAS)

Build = Callable[..., SlackReplyRenderer]


@pytest.fixture
async def renderer(slack: FakeSlack) -> AsyncIterator[Build]:
    async with aiohttp.ClientSession() as session:
        client = make_web_client(BOT_TOKEN, slack.api_url, session=session)

        def build(
            clock: FakeClock, *, streaming: bool, section_limit: int = 3000, stream_limit: int = 12_000
        ) -> SlackReplyRenderer:
            return SlackReplyRenderer(
                client, THREAD, streams=StreamSupport(streaming), edit_interval=1.0, clock=clock,
                sleep=clock.sleep, section_limit=section_limit, stream_limit=stream_limit,
            )  # fmt: skip

        yield build


class Model:
    """Opens the reply with a status at t=0, writes ``DELTAS`` 0.1 s apart (all within the first
    interval), then pauses until ``resume`` is set, then gives the final answer."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.written = asyncio.Event()  # every delta was taken by the live message
        self.resume = asyncio.Event()

    async def events(self) -> AsyncIterator[ReplyEvent]:
        yield Status("Writing…")
        for delta in DELTAS:
            self.clock.advance(0.1)
            yield TextDelta(delta)
        self.written.set()  # the live message asked for the next event: it has handled the last delta
        await self.resume.wait()
        yield FinalAnswer(text=TEXT, kind="answer", trace_id="trace-1", feedback=True)


async def waiting_until(clock: FakeClock, deadline: float) -> None:
    """Until the live message sleeps towards ``deadline`` (the held-back text's next edit)."""
    while not (clock.sleeps and clock.now + clock.sleeps[-1] == pytest.approx(deadline)):
        clock.asleep.clear()
        await asyncio.wait_for(clock.asleep.wait(), 10)


def two_messages(slack: FakeSlack) -> list[FakeMessage]:
    messages = slack.bot_messages("C1")
    return messages if len(messages) == 2 else []


def squash(text: str) -> str:
    return "".join(text.split())


async def test_a_full_edited_message_is_continued_when_the_throttle_allows_not_at_once(
    slack: FakeSlack, renderer: Build
) -> None:
    clock = FakeClock()
    model = Model(clock)
    task = asyncio.create_task(renderer(clock, streaming=False, section_limit=200).render(model.events()))

    await asyncio.wait_for(model.written.wait(), 10)  # 300 characters by t=0.5: over the 200 a message holds
    assert [c.method for c in slack.calls] == ["chat.postMessage"], "no edit before the interval is over"
    [placeholder] = slack.bot_messages("C1")
    await waiting_until(clock, 1.0)

    clock.advance(0.5)  # t=1.0: one edit finishes the full message, the rest opens the next one
    first, second = await slack.wait_for(lambda: two_messages(slack))
    assert first is placeholder and first.edits == 1 and len(first.block_text) <= 200
    assert squash(first.block_text + second.block_text) == squash(TEXT)
    assert clock.now == 1.0

    model.resume.set()
    assert await asyncio.wait_for(task, 10) is not None
    assert [len(m.buttons()) for m in slack.bot_messages("C1")] == [0, 2]
    assert squash("".join(m.block_text for m in slack.bot_messages("C1"))) == squash(TEXT)


async def test_a_full_native_stream_is_continued_when_the_throttle_allows_not_at_once(
    slack: FakeSlack, renderer: Build
) -> None:
    clock = FakeClock()
    model = Model(clock)
    task = asyncio.create_task(renderer(clock, streaming=True, stream_limit=250).render(model.events()))

    await asyncio.wait_for(model.written.wait(), 10)  # 300 characters by t=0.5: over the 250 a stream takes
    assert [c.method for c in slack.calls] == ["chat.startStream"], "no append before the interval is over"
    [stream] = slack.bot_messages("C1")
    assert stream.stream_open and stream.text == ""
    await waiting_until(clock, 1.0)

    clock.advance(0.5)  # t=1.0: what fits is appended, the stream stopped, the next one started
    first, second = await slack.wait_for(lambda: two_messages(slack))
    assert first is stream and not first.stream_open and first.appends == 1 and len(first.text) <= 250
    assert second.stream_open and second.text == "", "the rest waits for the next interval"

    await waiting_until(clock, 2.0)
    clock.advance(1.0)  # t=2.0, the model still paused: the rest is appended
    await slack.wait_for(lambda: second.text)
    assert squash(first.text + second.text) == squash(TEXT) and second.appends == 1

    model.resume.set()
    assert await asyncio.wait_for(task, 10) is not None
    assert not second.stream_open and [len(m.buttons()) for m in (first, second)] == [0, 2]
    assert [c.method for c in slack.calls] == [
        "chat.startStream", "chat.appendStream", "chat.stopStream",  # the first stream, full
        "chat.startStream", "chat.appendStream", "chat.stopStream",  # the rest, then closed with the buttons
    ]  # fmt: skip
