"""``BOTHBOT_LOG_FORMAT=json``: one JSON object a line, secrets masked, control characters escaped,
and the trace id of the answer on every line logged while it is produced."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from bot.logs import configure_logging
from bot.messages import FinalAnswer
from tests.core.conftest import StartRuntime
from tests.core.helpers import message
from tests.fakes.openai_server import FakeOpenAI

SECRET = "sk-json-secret-98765"


@pytest.fixture
def root_logging() -> Iterator[None]:
    """configure_logging replaces the root handlers; put pytest's back afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_settings_accept_json(make_settings: Any) -> None:
    assert make_settings(log_format="JSON").log_format == "json"
    assert make_settings().log_format == "text"


def test_one_object_a_line_with_secrets_masked_and_controls_escaped(root_logging: None) -> None:
    stream = io.StringIO()
    configure_logging("INFO", [SECRET], stream, fmt="json")
    log = logging.getLogger("bothbot.test")
    log.warning("key %s in\nforged line\x1b[31m and \u2028 more", SECRET)
    try:
        raise ValueError(f"bad key {SECRET}\ninjected")
    except ValueError:
        log.exception("failed")

    first, second = lines(stream)
    assert set(first) == {"time", "level", "logger", "message"}
    assert first["level"] == "WARNING" and first["logger"] == "bothbot.test"
    assert first["time"].endswith("Z") and "T" in first["time"]
    assert SECRET not in first["message"] and "***" in first["message"]
    assert "\n" not in first["message"] and "\x1b" not in first["message"]
    assert second["message"] == "failed"
    assert "Traceback" in second["exc"] and "ValueError" in second["exc"]
    assert SECRET not in second["exc"]
    assert SECRET not in stream.getvalue()


async def test_every_line_of_an_answer_carries_its_trace_id(
    root_logging: None,
    start_runtime: StartRuntime,
    model_settings: dict[str, Any],
    openai_server: FakeOpenAI,
) -> None:
    runtime = await start_runtime(**model_settings)
    stream = io.StringIO()
    configure_logging("INFO", [], stream, fmt="json")
    adapter_log = logging.getLogger("adapters.test")
    openai_server.fail_next(500)  # the engine logs the failure, inside the answer

    adapter_log.info("before the answer")
    final: FinalAnswer | None = None
    async for event in runtime.engine.handle(message("How do I request a laptop?")):
        adapter_log.info("rendering %s", type(event).__name__)  # an adapter's lines, while it renders
        if isinstance(event, FinalAnswer):
            final = event
    adapter_log.info("after the answer")

    assert final is not None
    records = lines(stream)
    assert records[0]["message"] == "before the answer" and "trace_id" not in records[0]
    assert records[-1]["message"] == "after the answer" and "trace_id" not in records[-1]
    during = records[1:-1]
    assert any(r["logger"] == "bot.engine" for r in during)
    assert any(r["message"].startswith("rendering") for r in during)
    assert {r.get("trace_id") for r in during} == {final.trace_id}


def test_text_format_shows_the_trace_id_too(root_logging: None) -> None:
    from bot.logs import TRACE_ID

    stream = io.StringIO()
    configure_logging("INFO", [], stream)
    log = logging.getLogger("bothbot.test")
    token = TRACE_ID.set("abc123")
    try:
        log.info("inside")
    finally:
        TRACE_ID.reset(token)
    log.info("outside")
    inside, outside = stream.getvalue().splitlines()
    assert inside.endswith("bothbot.test: inside [trace abc123]")
    assert outside.endswith("bothbot.test: outside")
