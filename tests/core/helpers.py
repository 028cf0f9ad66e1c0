"""Small helpers to talk to the engine the way an adapter does."""

from __future__ import annotations

import itertools
from typing import Any

from bot.engine import Engine
from bot.messages import FinalAnswer, IncomingMessage, ReplyEvent, TextDelta

_ids = itertools.count()


def message(text: str, **fields: Any) -> IncomingMessage:
    values: dict[str, Any] = {
        "platform": "slack",
        "workspace": "T1",
        "channel": "C1",
        "user": "U1",
        "text": text,
        "event_id": f"evt-{next(_ids)}",
    }
    values.update(fields)
    return IncomingMessage(**values)


async def collect(engine: Engine, msg: IncomingMessage) -> list[ReplyEvent]:
    return [event async for event in engine.handle(msg)]


async def ask(engine: Engine, text: str, **fields: Any) -> FinalAnswer:
    events = await collect(engine, message(text, **fields))
    assert events, "the engine yielded nothing"
    final = events[-1]
    assert isinstance(final, FinalAnswer)
    deltas = "".join(e.text for e in events if isinstance(e, TextDelta))
    if deltas:
        assert deltas == final.text
    return final
