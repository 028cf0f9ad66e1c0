"""HTML to Markdown-shaped text: headings, paragraphs, lists and code survive; markup does not."""

from __future__ import annotations

import re

from selectolax.lexbor import LexborHTMLParser, LexborNode

_SKIP = frozenset(
    {"script", "style", "noscript", "template", "svg", "nav", "footer", "head", "iframe", "form", "button"}
)
_HEADINGS = {"h1": 1, "h2": 2, "h3": 3, "h4": 4, "h5": 5, "h6": 6}
_BLOCKS = frozenset(
    {
        "p", "div", "section", "article", "main", "header", "aside", "blockquote", "ul", "ol", "dl", "dt",
        "dd", "table", "thead", "tbody", "tr", "figure", "figcaption", "details", "summary", "hr", "address",
    }
)  # fmt: skip
_SPACES = re.compile(r"[ \t\r\f\v\u00a0]+")
_BLANKS = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")


def html_to_markdown(html: str) -> tuple[str | None, str]:
    """The page title (``<title>`` or first ``<h1>``) and its text with Markdown structure."""
    tree = LexborHTMLParser(html)
    title_node = tree.css_first("title") or tree.css_first("h1")
    title = _collapse(title_node.text(deep=True)) if title_node is not None else None
    root = tree.body or tree.root
    out: list[str] = []
    if root is not None:
        _walk(root, out)
    text = "".join(out)
    return (title or None), _tidy(text)


def _tidy(text: str) -> str:
    """Strip lines and squeeze blank runs, except inside fenced code."""
    out: list[str] = []
    prose: list[str] = []
    in_code = False
    for line in text.split("\n"):
        if line.strip() == "```":
            if not in_code:
                out.append(_BLANKS.sub("\n\n", "\n".join(prose)))
                prose = []
                out.append("\n```")
            else:
                out.append("```\n")
            in_code = not in_code
        elif in_code:
            out.append(line.rstrip())
        else:
            prose.append(line.strip())
    out.append(_BLANKS.sub("\n\n", "\n".join(prose)))
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip()


def _collapse(text: str) -> str:
    return _SPACES.sub(" ", text.replace("\n", " ")).strip()


def _walk(node: LexborNode, out: list[str]) -> None:
    for child in node.iter(include_text=True):
        tag = child.tag
        if tag == "-text":
            out.append(_SPACES.sub(" ", (child.text_content or "").replace("\n", " ")))
        elif tag is None or tag in _SKIP or tag.startswith("-"):
            continue
        elif tag in _HEADINGS:
            out.append(f"\n\n{'#' * _HEADINGS[tag]} {_collapse(child.text(deep=True))}\n\n")
        elif tag == "pre":
            code = child.text(deep=True).strip("\n")
            out.append("\n\n```\n" + code + "\n```\n\n")
        elif tag == "br":
            out.append("\n")
        elif tag == "li":
            out.append("\n- ")
            _walk(child, out)
        elif tag in ("td", "th"):
            out.append(" | ")
            _walk(child, out)
        elif tag in _BLOCKS:
            out.append("\n\n")
            _walk(child, out)
            out.append("\n\n")
        else:
            _walk(child, out)
