"""The live-reply renderer with a controlled clock, and the pure splitting/formatting functions."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from adapters.discord.render import LiveReply, final_pieces, format_citations, split_text
from adapters.discord.sinks import CannotEdit
from bot.messages import Citation, FinalAnswer, ReplyEvent, Status, TextDelta


@dataclass
class Clock:
    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


@dataclass
class RecordingSink:
    """An in-memory channel: what a user would see, with the time of every change."""

    clock: Clock
    messages: list[str] = field(default_factory=list)
    changes: list[tuple[float, int, str]] = field(default_factory=list)
    buttons: dict[int, str] = field(default_factory=dict)

    async def post(self, content: str, *, feedback: FinalAnswer | None = None) -> int:
        self.messages.append(content)
        handle = len(self.messages) - 1
        self._record(handle, content, feedback)
        return handle

    async def edit(self, handle: int, content: str, *, feedback: FinalAnswer | None = None) -> None:
        self.messages[handle] = content
        self._record(handle, content, feedback)

    async def repost(self, handle: int, content: str, *, feedback: FinalAnswer | None = None) -> int:
        return await self.post(content, feedback=feedback)

    async def delete(self, handle: int) -> None:
        self.messages[handle] = "<deleted>"

    def _record(self, handle: int, content: str, feedback: FinalAnswer | None) -> None:
        assert len(content) <= 2000
        self.changes.append((self.clock.now, handle, content))
        if feedback is not None:
            self.buttons[handle] = feedback.trace_id


async def stream(deltas: list[str], final: FinalAnswer, clock: Clock, step: float) -> AsyncIterator[ReplyEvent]:
    yield Status("Searching the knowledge base…")
    for delta in deltas:
        clock.now += step  # the model takes `step` seconds per piece
        await asyncio.sleep(0)
        yield TextDelta(delta)
    yield final


async def test_edits_are_at_least_an_interval_apart_and_the_final_edit_is_always_sent() -> None:
    clock = Clock()
    sink = RecordingSink(clock)
    deltas = [f"piece {i} " for i in range(50)]
    text = "".join(deltas)
    final = FinalAnswer(text=text, kind="answer", trace_id="t1", feedback=True)
    live: LiveReply[int] = LiveReply(sink, interval=1.0, clock=clock, sleep=clock.sleep)

    result = await live.run(stream(deltas, final, clock, step=0.1))

    assert result == final
    assert sink.messages == [text]
    assert sink.buttons == {0: "t1"}
    times = [t for t, _, _ in sink.changes[:-1]]  # every change but the final one is throttled
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(times))
    assert len(sink.changes) <= clock.now / 1.0 + 2  # about once a second, not once per piece
    assert len(sink.changes) < len(deltas)
    assert sink.changes[0][2].startswith("-# Searching")


async def test_a_duplicate_event_posts_nothing() -> None:
    async def nothing() -> AsyncIterator[ReplyEvent]:
        return
        yield

    sink = RecordingSink(Clock())
    assert await LiveReply(sink).run(nothing()) is None
    assert sink.messages == []


async def test_a_command_reply_is_one_message_without_buttons() -> None:
    async def one() -> AsyncIterator[ReplyEvent]:
        yield FinalAnswer(text="Done.", kind="command", trace_id="t2", ephemeral=True)

    sink = RecordingSink(Clock())
    await LiveReply(sink).run(one())
    assert sink.messages == ["Done."]
    assert sink.buttons == {}


async def test_long_stream_grows_into_new_messages_and_earlier_ones_stay_put() -> None:
    clock = Clock()
    sink = RecordingSink(clock)
    deltas = [f"sentence number {i} is here. " for i in range(300)]  # ~8,600 characters
    text = "".join(deltas)
    final = FinalAnswer(
        text=text,
        kind="answer",
        trace_id="t3",
        feedback=True,
        citations=(Citation(index=1, title="Doc", source="doc.md", url="https://x.example/doc"),),
    )
    live: LiveReply[int] = LiveReply(sink, interval=0.0, clock=clock, sleep=clock.sleep)

    await live.run(stream(deltas, final, clock, step=0.01))

    assert len(sink.messages) >= 5
    assert all(0 < len(m) <= 2000 for m in sink.messages)
    assert " ".join(m.strip() for m in sink.messages).startswith(text.strip()[:5000])
    assert sink.messages[-1].endswith("-# Sources: [1] [Doc](<https://x.example/doc>)")
    assert list(sink.buttons) == [len(sink.messages) - 1]
    for index in range(len(sink.messages) - 1):  # once the next message exists, this one stays put
        next_posted = next(i for i, (_, h, _) in enumerate(sink.changes) if h == index + 1)
        later = {c for _, h, c in sink.changes[next_posted:] if h == index}
        assert later <= {sink.messages[index]}


def test_split_prefers_paragraphs_and_keeps_code_blocks_closed() -> None:
    code = "```python\n" + "\n".join(f"x_{i} = {i}" for i in range(300)) + "\n```"
    pieces = split_text("Intro paragraph.\n\n" + code, 2000)
    assert all(len(p) <= 2000 for p in pieces)
    assert pieces[0].startswith("Intro paragraph.")
    for piece in pieces:
        assert piece.count("```") % 2 == 0, "every piece opens and closes its code block"
    assert pieces[1].startswith("```python\n")


def test_split_hard_cuts_a_single_huge_word() -> None:
    pieces = split_text("x" * 4500, 2000)
    assert [len(p) for p in pieces] == [1992, 1992, 516]
    assert "".join(pieces) == "x" * 4500


@pytest.mark.parametrize("n", [0, 1, 1999, 2000])
def test_short_texts_stay_whole(n: int) -> None:
    assert split_text("a" * n) == ["a" * n]


def test_citations_are_a_compact_line_and_never_overflow() -> None:
    citations = tuple(
        Citation(index=i, title=f"Title [{i}] *bold*", source=f"s{i}.md", url=f"https://w.example/{i}", heading="Setup")
        for i in range(1, 60)
    )
    line = format_citations(citations)
    assert line.startswith("-# Sources: [1] [Title \\[1\\] \\*bold\\* — Setup](<https://w.example/1>) · [2]")
    assert len(line) <= 2000 and line.endswith(" · …")
    assert format_citations((Citation(index=1, title="Local", source="notes.md", url="file:///x"),)) == (
        "-# Sources: [1] Local"
    )


def test_final_pieces_put_sources_in_their_own_message_when_full() -> None:
    final = FinalAnswer(
        text="y" * 1990,
        kind="answer",
        trace_id="t",
        citations=(Citation(index=1, title="Doc", source="d.md"),),
    )
    assert final_pieces(final) == ["y" * 1990, "-# Sources: [1] Doc"]


async def test_when_the_final_edit_fails_the_answer_is_posted_anew() -> None:
    class DeletedMessageSink(RecordingSink):
        async def edit(self, handle: int, content: str, *, feedback: FinalAnswer | None = None) -> None:
            raise CannotEdit("404 Unknown Message")

    clock = Clock()
    sink = DeletedMessageSink(clock)
    final = FinalAnswer(text="Still delivered.", kind="answer", trace_id="t9", feedback=True)
    live: LiveReply[int] = LiveReply(sink, interval=0.0, clock=clock, sleep=clock.sleep)

    await live.run(stream(["Still ", "delivered."], final, clock, step=0.1))

    assert sink.messages[-1] == "Still delivered."
    assert sink.buttons == {len(sink.messages) - 1: "t9"}


async def test_a_message_that_cannot_be_edited_is_left_alone_then_replaced() -> None:
    class NoEditsSink(RecordingSink):
        edits = 0
        deletes = 0

        async def edit(self, handle: int, content: str, *, feedback: FinalAnswer | None = None) -> None:
            self.edits += 1
            raise CannotEdit("404: Not Found")

        async def delete(self, handle: int) -> None:
            self.deletes += 1
            raise CannotEdit("404: Not Found")  # the server cannot delete either: no matter

    clock = Clock()
    sink = NoEditsSink(clock)
    deltas = [f"part {i} " for i in range(20)]
    final = FinalAnswer(text="".join(deltas), kind="answer", trace_id="t10", feedback=True)
    live: LiveReply[int] = LiveReply(sink, interval=0.0, clock=clock, sleep=clock.sleep)

    assert await live.run(stream(deltas, final, clock, step=0.1)) == final

    assert sink.edits == 1, "after one failed edit the message is not edited again"
    assert sink.messages == ["-# Searching the knowledge base…", final.text]
    assert sink.buttons == {1: "t10"}
    assert sink.deletes == 1
    assert live.handles == [1]


async def test_a_stream_that_stops_without_a_final_answer_says_so() -> None:
    async def broken_off() -> AsyncIterator[ReplyEvent]:
        yield Status("Searching…")
        yield TextDelta("Half an answer")

    sink = RecordingSink(Clock())
    assert await LiveReply(sink, interval=0.0).run(broken_off()) is None
    assert sink.messages == ["Half an answer\n\n(The answer stopped unexpectedly.)"]
    assert sink.buttons == {}


async def test_a_failure_mid_answer_keeps_what_was_shown_and_adds_a_note_with_a_reference() -> None:
    async def failing() -> AsyncIterator[ReplyEvent]:
        yield TextDelta("Half an answer")
        raise RuntimeError("the engine broke")

    sink = RecordingSink(Clock())
    assert await LiveReply(sink, interval=0.0).answer(failing(), ref="1234") is None
    [message] = sink.messages
    assert message.startswith("Half an answer\n\nSorry — something went wrong on my side")
    assert "(ref `1234`)" in message
