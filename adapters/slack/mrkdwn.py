"""Markdown (what models write) → Slack mrkdwn.

Splitting long text into messages is shared by every platform (``adapters.common.splitter``);
it is re-exported here for code that splits mrkdwn-measured text next to converting it.
"""

from __future__ import annotations

import re

from adapters.common.splitter import split_all, split_head

__all__ = ["escape", "link", "split_all", "split_head", "to_mrkdwn"]

_FENCE = re.compile(r"^\s*```")
_INLINE_CODE = re.compile(r"(`+)(.+?)\1", re.DOTALL)
_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_LINK = re.compile(r"\[([^\]]+)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_AUTOLINK = re.compile(r"<((?:https?|mailto):[^>\s]+)>")
_BOLD = re.compile(r"(\*\*|__)(?=\S)(.+?)(?<=\S)\1")
_ITALIC_STAR = re.compile(r"(?<![\w*])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![\w*])")
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^\s{0,3}#{1,6}\s+(.+?)\s*#*\s*$")
_BULLET = re.compile(r"^(\s*)[-*+]\s+")
_HRULE = re.compile(r"^\s{0,3}([-*_])(\s*\1){2,}\s*$")

# Private-use characters stand in for formatting while the rest of the line is escaped.
_B_OPEN, _B_CLOSE = "\ue000", "\ue001"
_SLOT = "\ue002"


def escape(text: str) -> str:
    """Slack's three control characters; nothing else is escaped.

    The one escaping of text bothbot sends: mrkdwn (:func:`to_mrkdwn`, the edit path) and the
    Markdown of native streams (``adapters.slack.sinks``) alike, so ``<!channel>``, ``<!here>`` or
    ``<@U…>`` in a question, a model's answer or an ingested document is shown, never acted on.
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _link_text(text: str) -> str:
    return escape(text).replace("|", "¦")


_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def link(url: str, label: str | None = None) -> str:
    """``<url|label>`` for a URL with a scheme (``https:``, ``mailto:`` …); anything else is shown
    as text: ``<!channel|…>``, ``<@U1|…>`` or ``<#C1|…>`` would be a mention, not a link."""
    if not _SCHEME.match(url):
        return f"{escape(label)} ({escape(url)})" if label and label != url else escape(url)
    return f"<{escape(url)}|{_link_text(label)}>" if label else f"<{escape(url)}>"


def _convert_line(line: str) -> str:
    slots: list[str] = []

    def keep(value: str) -> str:
        slots.append(value)
        return f"{_SLOT}{len(slots) - 1}{_SLOT}"

    line = _INLINE_CODE.sub(lambda m: keep(f"`{escape(m.group(2))}`"), line)
    line = _IMAGE.sub(lambda m: keep(link(m.group(2), m.group(1) or m.group(2))), line)
    line = _LINK.sub(lambda m: keep(link(m.group(2), m.group(1))), line)
    line = _AUTOLINK.sub(lambda m: keep(link(m.group(1))), line)

    heading = _HEADING.match(line)
    if heading:
        line = f"{_B_OPEN}{heading.group(1)}{_B_CLOSE}"
    elif _HRULE.match(line):
        line = "──────────"
    else:
        line = _BULLET.sub(lambda m: f"{m.group(1)}• ", line)

    line = _BOLD.sub(lambda m: f"{_B_OPEN}{m.group(2)}{_B_CLOSE}", line)
    line = _ITALIC_STAR.sub(lambda m: f"_{m.group(1)}_", line)
    line = _STRIKE.sub(lambda m: f"~{m.group(1)}~", line)
    line = escape(line)
    line = line.replace(_B_OPEN, "*").replace(_B_CLOSE, "*")
    return re.sub(f"{_SLOT}(\\d+){_SLOT}", lambda m: slots[int(m.group(1))], line)


def to_mrkdwn(markdown: str) -> str:
    """Convert CommonMark-ish model output to Slack mrkdwn.

    Links become ``<url|text>``, ``**bold**`` becomes ``*bold*``, ``*italic*`` ``_italic_``,
    headings bold lines, bullets ``•``; ``&``, ``<`` and ``>`` are escaped everywhere, including
    inside code, which is otherwise left alone.
    """
    out: list[str] = []
    in_fence = False
    for line in markdown.split("\n"):
        if _FENCE.match(line):
            in_fence = not in_fence
            out.append("```")
            continue
        out.append(escape(line) if in_fence else _convert_line(line))
    return "\n".join(out)
