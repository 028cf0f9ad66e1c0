"""The console adapter in-process: commands, streaming output, and a failure that does not end the chat."""

from __future__ import annotations

import io
from typing import Any

from adapters.console.chat import run_chat
from bot.runtime import Runtime
from tests.conftest import BASE_MODEL
from tests.fakes.openai_server import FakeOpenAI


async def _chat(runtime: Runtime, lines: str) -> str:
    out = io.StringIO()
    code = await run_chat(
        runtime.engine, channel="c", user="me", stdin=io.StringIO(lines), stdout=out, stderr=io.StringIO(),
        interactive=False, banner=[],
    )
    assert code == 0
    return out.getvalue()


async def test_console_commands_and_answers(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    # Switching a channel's model from the console: tests/contract (the console driver).
    runtime: Runtime = await start_runtime(**model_settings)
    openai_server.reply_text = "Use WireGuard [1]."
    out = await _chat(runtime, "/models\n\nHow do I set up the VPN with WireGuard?\n/quit\nnever read\n")
    assert "Model profiles:" in out
    assert "Use WireGuard [1]." in out
    assert "Sources:\n  [1] VPN — Setup (" in out
    assert [r.body["model"] for r in openai_server.chat_requests] == [BASE_MODEL], "nothing read after /quit"


async def test_a_failure_is_reported_and_the_chat_goes_on(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    await runtime.state.redis.set(runtime.state.key("channel", "console:local:c"), "not a hash")
    out = await _chat(runtime, "How do I request a laptop?\n/help\n")
    assert "Sorry, that failed (ResponseError)" in out
    assert "Commands:" in out  # the next line was still answered
