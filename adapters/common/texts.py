"""What the bot says to users on every platform when something is not an answer: failures,
feedback thanks. One wording, so Slack and Discord users read the same thing.

Texts are plain Markdown; each platform escapes or formats them as it formats answers.
"""

from __future__ import annotations

from bot.messages import FeedbackValue

STOPPED_UNEXPECTEDLY = "(The answer stopped unexpectedly.)"
"""Added under what was shown when the reply stream ended without a final answer."""


def answer_failed(ref: str) -> str:
    """An answer failed on the bot's side; ``ref`` lets an operator find the log line."""
    return f"Sorry — something went wrong on my side while answering (ref `{ref}`). Please try again."


def posting_failed(platform: str, reason: str) -> str:
    """The platform refused part of an answer being posted; ``reason`` is what it said."""
    return f"I couldn't finish posting this answer ({platform} said: {reason})."


def feedback_recorded(value: FeedbackValue) -> str:
    return f"Thanks — your {'👍' if value == 'up' else '👎'} is recorded."


MEMORY_UNAVAILABLE = "I can't reach my memory store right now, so I can't answer. Please try again in a minute."
"""The state store (Redis) is unreachable: nothing can be answered until it is back."""

MEMORY_LOST = "(I lost my memory store while answering, so this answer is incomplete. Please try again in a minute.)"
"""The state store went away part way through an answer that was already being shown."""

FEEDBACK_TOO_OLD = "I couldn't record that: this answer is too old or no longer on record."
FEEDBACK_FAILED = "Sorry — I couldn't record your feedback just now. Please try again."


def feedback_reply(value: FeedbackValue, stored: bool) -> str:
    """The private reply to a 👍/👎 click."""
    return feedback_recorded(value) if stored else FEEDBACK_TOO_OLD
