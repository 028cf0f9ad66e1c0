"""Slack Block Kit for answers: the answer text as sections, citations as a context block of
links, and the 👍/👎 buttons bound to the answer's trace id."""

from __future__ import annotations

from typing import Any

from adapters.common.splitter import split_all
from adapters.slack.convert import FEEDBACK_DOWN, FEEDBACK_UP
from adapters.slack.mrkdwn import escape, link, to_mrkdwn
from bot.messages import Citation, FinalAnswer

SECTION_LIMIT = 3000
"""Characters of mrkdwn in one section block, so in one message of the placeholder style."""
PLACEHOLDER = "…"


def citation_line(c: Citation) -> str:
    title = c.title or c.source
    if c.heading and c.heading != title:
        title = f"{title} › {c.heading}"
    label = escape(title).replace("|", "¦")
    if c.url:  # a document's URL: a link only with a scheme, never a <!…> or <@…> mention
        return f"[{c.index}] {link(c.url, title)}"
    source = f" ({escape(c.source)})" if c.source and c.source != title else ""
    return f"[{c.index}] {label}{source}"


def closing_blocks(final: FinalAnswer) -> list[dict[str, Any]]:
    """Citations (context block of links), notes, and 👍/👎 buttons bound to the trace id."""
    blocks: list[dict[str, Any]] = []
    if final.citations:
        lines = [citation_line(c) for c in final.citations]
        # A context block holds at most 10 elements; fold the rest into the last one.
        elements = [{"type": "mrkdwn", "text": line} for line in lines[:9]]
        if len(lines) > 9:
            elements.append({"type": "mrkdwn", "text": "  ".join(lines[9:])[:2900]})
        blocks.append({"type": "context", "block_id": "bothbot_sources", "elements": elements})
    if final.notes:
        note = " · ".join(escape(n) for n in final.notes)[:2900]
        blocks.append({"type": "context", "block_id": "bothbot_notes", "elements": [{"type": "mrkdwn", "text": note}]})
    if final.feedback and final.trace_id:
        blocks.append(
            {
                "type": "actions",
                "block_id": "bothbot_feedback",
                "elements": [
                    {
                        "type": "button",
                        "action_id": FEEDBACK_UP,
                        "text": {"type": "plain_text", "text": "👍", "emoji": True},
                        "value": final.trace_id,
                    },
                    {
                        "type": "button",
                        "action_id": FEEDBACK_DOWN,
                        "text": {"type": "plain_text", "text": "👎", "emoji": True},
                        "value": final.trace_id,
                    },
                ],
            }
        )
    return blocks


def section(mrkdwn: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": mrkdwn or PLACEHOLDER}}


def answer_blocks(markdown: str, final: FinalAnswer | None) -> tuple[str, list[dict[str, Any]]]:
    """One message's ``text`` (notification fallback) and blocks."""
    text = to_mrkdwn(markdown) or PLACEHOLDER
    closing = closing_blocks(final) if final is not None else []
    if not markdown.strip() and closing:  # only what goes under an answer shown elsewhere
        return text, closing
    if len(text) <= SECTION_LIMIT:
        blocks = [section(text)]
    else:  # only ephemeral and one-shot replies get here; streamed ones are split into messages
        blocks = [section(to_mrkdwn(part)) for part in split_all(markdown, SECTION_LIMIT, mrkdwn_size)][:45]
    blocks.extend(closing)
    return text, blocks


def mrkdwn_size(markdown: str) -> int:
    return len(to_mrkdwn(markdown))
