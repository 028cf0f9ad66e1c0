"""The logging set-up: every line escapes control characters, secrets stay masked."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Iterator

import pytest

from bot.logs import EscapeControlChars, configure_logging, escape_control

LINE_START = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} [A-Z]+ [\w.]+: ")
FORGED = "2026-01-01 00:00:00,000 ERROR adapters.slack.app: FORGED"
SECRET = "xoxb-secret-123456"
HOSTILE = f"a\n{FORGED}\r\x1b[2K\x1b[31mred\x07\x00\x7f\x85\x9b\u2028\u2029\tend"


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    handler = configure_logging("DEBUG", [SECRET], stream)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        for old in saved_handlers:
            root.addHandler(old)
        root.setLevel(saved_level)


def assert_clean(text: str) -> None:
    for line in text.splitlines():
        traceback_line = line == "" or line.startswith(("Traceback", "  ", "During", "The above"))
        exception_line = re.match(r"[A-Za-z_][\w.]*: ", line)  # "ValueError: …" ends a traceback
        assert LINE_START.match(line) or traceback_line or exception_line, line
    assert not re.search("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]", text), ascii(text)
    assert not any(line.startswith(FORGED) for line in text.splitlines())


def test_escape_control_writes_out_every_control_character() -> None:
    assert escape_control("a\nb\rc\td") == "a\\nb\\rc\\td"
    assert escape_control("\x1b[31m\x00\x7f\x85\x9b\u2028\u2029") == "\\x1b[31m\\x00\\x7f\\x85\\x9b\\u2028\\u2029"
    assert escape_control("plain text, ünïcode, emoji 🎉 and a \\ backslash") == (
        "plain text, ünïcode, emoji 🎉 and a \\ backslash"
    )
    assert escape_control(escape_control(HOSTILE)) == escape_control(HOSTILE)


def test_a_message_and_its_arguments_cannot_start_a_new_line(log_stream: io.StringIO) -> None:
    log = logging.getLogger("bothbot.test")
    log.warning("user said %s", HOSTILE)
    log.info(HOSTILE)
    log.error("%s", HOSTILE, extra={"note": "x"})
    text = log_stream.getvalue()
    assert len(text.splitlines()) == 3
    assert "FORGED" in text
    assert_clean(text)


def test_an_exception_message_from_user_data_is_escaped_and_the_traceback_kept(log_stream: io.StringIO) -> None:
    log = logging.getLogger("bothbot.test")
    try:
        try:
            int(HOSTILE)
        except ValueError as exc:
            raise RuntimeError(f"wrapped {HOSTILE} with {SECRET}") from exc
    except RuntimeError:
        log.exception("failed on %r", "input")
    text = log_stream.getvalue()
    assert_clean(text)
    assert "Traceback (most recent call last):" in text
    assert "The above exception was the direct cause" in text
    assert "ValueError: invalid literal for int()" in text and "RuntimeError: wrapped a\\n" in text
    assert SECRET not in text and "with ***" in text  # redaction still applies to the traceback


def test_secrets_are_masked_after_escaping(log_stream: io.StringIO) -> None:
    logging.getLogger("bothbot.test").warning("token %s\nnext %s", SECRET, SECRET)
    text = log_stream.getvalue()
    assert SECRET not in text and text.count("***") == 2
    assert_clean(text)


def test_a_malformed_log_call_does_not_raise_into_the_caller(log_stream: io.StringIO) -> None:
    logging.getLogger("bothbot.test").warning("two %s %s", "only-one\n")
    assert_clean(log_stream.getvalue())
    assert "only-one" in log_stream.getvalue()


def test_the_filter_works_on_any_handler() -> None:
    """For other handlers (a JSON formatter, a file): the same filter, the same guarantee."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(EscapeControlChars())
    log = logging.getLogger("bothbot.test.other")
    log.addHandler(handler)
    log.propagate = False
    try:
        log.warning("%s", HOSTILE)
    finally:
        log.removeHandler(handler)
        log.propagate = True
    assert stream.getvalue().count("\n") == 1
    assert "\x1b" not in stream.getvalue()
