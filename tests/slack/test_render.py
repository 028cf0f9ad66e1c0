"""The reply renderer on its own: scripted reply streams, the real Web API client, the Slack fake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable

import aiohttp
import pytest

from adapters.slack.client import make_web_client
from adapters.slack.render import SlackReplyRenderer, StreamSupport
from adapters.slack.sinks import ReplyTarget
from bot.messages import FinalAnswer, ReplyEvent, Status, TextDelta
from tests.fakes.slack_server import BOT_TOKEN, FakeSlack

MakeRenderer = Callable[..., SlackReplyRenderer]
THREAD = ReplyTarget(channel="C1", thread_ts="1800000000.000001", team="T1", user="U1")


async def scripted(events: Iterable[ReplyEvent | asyncio.Event]) -> AsyncIterator[ReplyEvent]:
    for item in events:
        if isinstance(item, asyncio.Event):
            await asyncio.wait_for(item.wait(), 10)
        else:
            yield item


def final(text: str, **kw: object) -> FinalAnswer:
    values: dict[str, object] = {"kind": "answer", "trace_id": "trace-1", "feedback": True}
    values.update(kw)
    return FinalAnswer(text=text, **values)  # type: ignore[arg-type]


@pytest.fixture
async def renderer_for(slack: FakeSlack) -> AsyncIterator[MakeRenderer]:
    session = aiohttp.ClientSession()
    client = make_web_client(BOT_TOKEN, slack.api_url, session=session)

    def build(target: ReplyTarget = THREAD, *, streaming: bool = True, interval: float = 0.0) -> SlackReplyRenderer:
        return SlackReplyRenderer(client, target, streams=StreamSupport(streaming), edit_interval=interval)

    yield build
    await session.close()


async def test_held_back_text_is_shown_when_the_model_pauses(slack: FakeSlack, renderer_for: MakeRenderer) -> None:
    """Deltas inside the interval are held back, then shown without waiting for the next delta."""
    renderer = renderer_for(streaming=False, interval=0.05)
    resume = asyncio.Event()
    task = asyncio.create_task(
        renderer.render(scripted([TextDelta("Hello"), TextDelta(" world"), resume, final("Hello world")]))
    )
    await slack.wait_for(lambda: any(m.block_text == "Hello world" for m in slack.bot_messages("C1")))
    [message] = slack.bot_messages("C1")
    assert not message.buttons()  # shown mid-answer, before the final edit
    resume.set()
    assert (await asyncio.wait_for(task, 10)) is not None
    assert message.buttons()


async def test_native_stream_appends_held_back_text_when_the_model_pauses(
    slack: FakeSlack, renderer_for: MakeRenderer
) -> None:
    renderer = renderer_for(interval=0.05)
    resume = asyncio.Event()
    task = asyncio.create_task(
        renderer.render(scripted([Status("Searching…"), TextDelta("A"), TextDelta("B"), resume, final("AB")]))
    )
    await slack.wait_for(lambda: any(m.text == "AB" and m.stream_open for m in slack.bot_messages("C1")))
    resume.set()
    await asyncio.wait_for(task, 10)
    [message] = slack.bot_messages("C1")
    assert message.text == "AB" and not message.stream_open and message.buttons()


async def test_an_empty_stream_posts_nothing(slack: FakeSlack, renderer_for: MakeRenderer) -> None:
    renderer = renderer_for()
    assert await renderer.render(scripted([])) is None
    assert slack.calls == []


async def test_an_ephemeral_first_reply_goes_only_to_the_user(slack: FakeSlack, renderer_for: MakeRenderer) -> None:
    renderer = renderer_for()
    await renderer.render(scripted([final("Please slow down.", kind="refused", ephemeral=True, feedback=False)]))
    assert slack.bot_messages() == []
    [note] = slack.ephemerals
    assert (note.channel, note.user, note.thread_ts, note.text) == ("C1", "U1", THREAD.thread_ts, "Please slow down.")


async def test_a_stream_that_breaks_off_keeps_the_shown_text_and_says_why(
    slack: FakeSlack, renderer_for: MakeRenderer
) -> None:
    renderer = renderer_for(streaming=False)
    broke = final("The model stopped responding.", kind="error", feedback=False)
    events: list[ReplyEvent] = [TextDelta("Partial answer"), broke]
    await renderer.render(scripted(events))
    [message] = slack.bot_messages("C1")
    assert message.block_text == "Partial answer\n\nThe model stopped responding."


async def test_error_reply_without_text_deltas(slack: FakeSlack, renderer_for: MakeRenderer) -> None:
    renderer = renderer_for()
    await renderer.render(scripted([Status("Searching…"), final("Sorry, no model.", kind="error", feedback=False)]))
    [message] = slack.bot_messages("C1")
    assert message.text == "Sorry, no model." and message.buttons() == []


async def test_a_message_that_cannot_be_edited_gets_the_answer_as_a_new_message(
    slack: FakeSlack, renderer_for: MakeRenderer
) -> None:
    slack.fail_next("chat.update", "cant_update_message", count=5)
    renderer = renderer_for(streaming=False)
    events: list[ReplyEvent] = [Status("Searching…"), TextDelta("Whole "), TextDelta("answer"), final("Whole answer")]
    await renderer.render(scripted(events))
    placeholder, answer = slack.bot_messages("C1")
    assert placeholder.text == "_Searching…_"
    assert answer.block_text == "Whole answer" and answer.buttons()


async def test_a_failure_mid_answer_closes_the_stream_and_says_so_with_a_reference(
    slack: FakeSlack, renderer_for: MakeRenderer
) -> None:
    async def failing() -> AsyncIterator[ReplyEvent]:
        yield TextDelta("Half an answer")
        raise RuntimeError("the engine broke")

    renderer = renderer_for()
    assert await renderer.answer(failing(), ref="Ev1") is None
    answer, note = slack.bot_messages("C1")
    assert answer.text == "Half an answer" and not answer.stream_open, "the stream stops typing"
    assert note.thread_ts == THREAD.thread_ts
    assert note.text.startswith(":warning: Sorry — something went wrong on my side") and "(ref `Ev1`)" in note.text


async def test_a_web_api_refusal_before_anything_is_shown_says_nothing_more(
    slack: FakeSlack, renderer_for: MakeRenderer
) -> None:
    slack.fail_next("chat.postMessage", "not_in_channel", count=1)
    renderer = renderer_for(streaming=False)
    assert await renderer.answer(scripted([TextDelta("Hello")]), ref="Ev2") is None
    assert slack.bot_messages("C1") == [], "the channel refused the bot: no note either"


async def test_a_web_api_refusal_mid_answer_is_said_with_what_slack_said(slack: FakeSlack) -> None:
    async with aiohttp.ClientSession() as session:
        client = make_web_client(BOT_TOKEN, slack.api_url, session=session)
        renderer = SlackReplyRenderer(
            client, THREAD, streams=StreamSupport(False), edit_interval=0.0, section_limit=200
        )
        shown = asyncio.Event()

        async def refuse_the_next_post() -> None:
            await slack.wait_for(lambda: any(m.block_text == "Hello" for m in slack.bot_messages("C1")))
            slack.fail_next("chat.postMessage", "msg_too_long")  # the continuation message
            shown.set()

        refusing = asyncio.create_task(refuse_the_next_post())
        events: list[ReplyEvent | asyncio.Event] = [TextDelta("Hello"), shown, TextDelta(" and more" * 40)]
        assert await renderer.answer(scripted(events), ref="Ev3") is None
        await refusing

    first, note = slack.bot_messages("C1")
    assert first.block_text.startswith("Hello")
    assert note.text == ":warning: I couldn't finish posting this answer (Slack said: msg_too_long)."
