"""Render the engine's reply stream on a terminal or a pipe."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TextIO

from bot.messages import Citation, FinalAnswer, ReplyEvent, Status, TextDelta


def format_citation(c: Citation) -> str:
    where = " — ".join(x for x in (c.title, c.heading) if x)
    location = c.url or c.source
    return f"[{c.index}] {where} ({location})" if location and location != where else f"[{c.index}] {where}"


async def render_reply(
    events: AsyncIterator[ReplyEvent], out: TextIO, status_out: TextIO | None = None
) -> FinalAnswer | None:
    """Write deltas as they come, then the sources; return the final answer (None for a duplicate)."""
    streamed = False
    final: FinalAnswer | None = None
    async for event in events:
        if isinstance(event, Status):
            if status_out is not None:
                status_out.write(f"… {event.text}\n")
                status_out.flush()
        elif isinstance(event, TextDelta):
            streamed = True
            out.write(event.text)
            out.flush()
        else:
            final = event
    if final is None:
        return None
    if not streamed:
        out.write(final.text)
    out.write("\n")
    if final.citations:
        out.write("\nSources:\n")
        for citation in final.citations:
            out.write(f"  {format_citation(citation)}\n")
    if status_out is not None and final.kind == "answer":
        tokens = f", {final.usage.total_tokens} tokens" if final.usage else ""
        status_out.write(f"({final.profile}: {final.model}{tokens}, trace {final.trace_id})\n")
    out.write("\n")
    out.flush()
    return final
