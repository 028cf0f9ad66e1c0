"""Property-based: any command line gets a reply (a result or a clean refusal), never an exception."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.command_specs import specs_for
from bot.commands import command_rest, split_command
from bot.messages import FinalAnswer
from bot.runtime import Runtime
from bot.settings import load_settings
from tests.core.helpers import message

_NAMES = sorted({s.name for platform in ("slack", "discord", "console") for s in specs_for(platform)})
_WORDS = st.one_of(
    st.sampled_from(_NAMES),
    st.sampled_from(["on", "off", "start", "stop", "default", "nope", "--x", "'", '"', ",", "a,b", "x" * 300]),
    st.text(max_size=20),
)
_LINES = st.one_of(
    st.text(max_size=200),
    st.lists(_WORDS, max_size=6).map(" ".join),
    st.tuples(st.sampled_from(_NAMES), st.lists(_WORDS, max_size=4)).map(lambda t: " ".join([t[0], *t[1]])),
)
_FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@given(_LINES)
@settings(max_examples=300, deadline=None)
def test_split_command_never_raises(line: str) -> None:
    name, args = split_command(line)
    assert name == name.lower()
    assert all(isinstance(a, str) for a in args)
    assert isinstance(command_rest(line), str)


@pytest.fixture(scope="module")
def loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture(scope="module")
def runtime(loop: asyncio.AbstractEventLoop, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Runtime]:
    data = tmp_path_factory.mktemp("props")
    settings_ = load_settings(data_dir=Path(data), redis_url=None, openai_api_key=None, openai_base_url=None)
    runtime = loop.run_until_complete(Runtime.start(settings_))
    yield runtime
    loop.run_until_complete(runtime.aclose())


@pytest.mark.parametrize("platform", ["slack", "discord", "console"])
@given(line=_LINES, admin=st.booleans())
@_FAST
def test_any_command_line_gets_a_reply(
    runtime: Runtime, loop: asyncio.AbstractEventLoop, platform: str, line: str, admin: bool
) -> None:
    msg = message(line, platform=platform, command=True, is_admin=admin, mentions_bot=True)

    async def reply() -> list[object]:
        return [event async for event in runtime.engine.handle(msg)]

    events = loop.run_until_complete(reply())
    assert events
    final = events[-1]
    assert isinstance(final, FinalAnswer)
    assert final.text.strip()
