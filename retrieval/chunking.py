"""Cut documents into chunks that follow their structure and stay within a token bound.

Headings (Markdown ATX/setext, HTML converted to Markdown) open a new chunk and form the heading
path; paragraphs and fenced code blocks are packed whole while they fit; a block longer than the
bound is split at sentence (prose) or line (code) boundaries, and only as a last resort inside a
sentence. Consecutive chunks of one section share ``overlap`` tokens; chunks never overlap across
a heading. Tokens here are words and punctuation marks (``\\w+`` or one non-space mark), a
model-free stand-in close to what sub-word tokenizers count for English prose.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from retrieval.documents import PAGE_BREAK, Chunk, Document

_TOKEN = re.compile(r"\w+|[^\w\s]")
_ATX = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")
_SETEXT = re.compile(r"^ {0,3}(=+|-+)\s*$")
_SENTENCE = re.compile(r"(?<=[.!?。！？])\s+")


_ASCII_NONWORD = str.maketrans({chr(c): " " for c in range(128) if not (chr(c).isalnum() or chr(c) == "_")})
_ASCII_MARKS = str.maketrans(
    {chr(c): None for c in range(128) if not (chr(c).isalnum() or chr(c) == "_" or chr(c).isspace())}
)


def count_tokens(text: str) -> int:
    """Words (``\\w+`` runs) plus punctuation marks; C-speed for ASCII text, a regex otherwise."""
    if text.isascii():
        return len(text.translate(_ASCII_NONWORD).split()) + len(text) - len(text.translate(_ASCII_MARKS))
    return len(_TOKEN.findall(text))


@dataclass(frozen=True, slots=True)
class _Block:
    kind: str  # "heading" | "code" | "text"
    text: str
    level: int = 0
    page: int | None = None
    fence: str = ""


def chunk_document(doc: Document, max_tokens: int, overlap: int) -> list[Chunk]:
    """The document's chunks in order; an empty list for a document with no text."""
    if doc.format in ("text", "jsonl", "slack"):
        text = doc.text.strip()
        if not text:
            return []
        tokens = count_tokens(text)
        if tokens <= max_tokens:
            return [Chunk(text, (), 0, tokens)]
        blocks: list[_Block] = list(_paragraphs(text, None))
    elif doc.format == "pdf":
        blocks = [b for i, page in enumerate(doc.text.split(PAGE_BREAK), 1) for b in _paragraphs(page, i)]
    else:
        blocks = list(_markdown_blocks(doc.text))
    return _Packer(max_tokens, overlap).pack(blocks)


def _paragraphs(text: str, page: int | None) -> Iterator[_Block]:
    for para in re.split(r"\n\s*\n", text):
        para = para.strip()
        if para:
            yield _Block("text", para, page=page)


def _markdown_blocks(text: str) -> Iterator[_Block]:
    lines = text.split("\n")
    para: list[str] = []
    i = 0

    def flush() -> Iterator[_Block]:
        if para:
            body = "\n".join(para).strip()
            para.clear()
            if body:
                yield _Block("text", body)

    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if fence:
            yield from flush()
            marker = fence.group(1)
            body: list[str] = []
            i += 1
            while i < len(lines) and not lines[i].lstrip().startswith(marker):
                body.append(lines[i])
                i += 1
            i += 1  # closing fence (or end of text)
            yield _Block("code", "\n".join(body), fence=f"{marker}{fence.group(2).strip()}")
            continue
        atx = _ATX.match(line)
        if atx:
            yield from flush()
            yield _Block("heading", atx.group(2).strip(), level=len(atx.group(1)))
        elif _SETEXT.match(line) and len(para) == 1 and para[0].strip():
            heading = para.pop().strip()
            yield _Block("heading", heading, level=1 if line.strip().startswith("=") else 2)
        elif not line.strip():
            yield from flush()
        else:
            para.append(line)
        i += 1
    yield from flush()


class _Packer:
    def __init__(self, max_tokens: int, overlap: int) -> None:
        self.max = max_tokens
        self.overlap = min(overlap, max_tokens - 1)
        self.chunks: list[Chunk] = []
        self.headings: list[tuple[int, str]] = []
        self.parts: list[str] = []
        self.tokens = 0
        self.page: int | None = None
        self.fresh = True  # parts hold only overlap from the previous chunk

    def pack(self, blocks: list[_Block]) -> list[Chunk]:
        for block in blocks:
            if block.kind == "heading":
                self._flush(carry=False)
                self.headings = [h for h in self.headings if h[0] < block.level]
                self.headings.append((block.level, block.text))
                continue
            if block.page != self.page and self.parts:
                self._flush(carry=False)
            self.page = block.page
            for piece, tokens in self._pieces(block):
                if self.tokens + tokens > self.max and not self.fresh:
                    self._flush(carry=True)
                if self.tokens + tokens > self.max:  # overlap left no room: shrink it
                    self._trim_to(self.max - tokens)
                self.parts.append(piece)
                self.tokens += tokens
                self.fresh = False
        self._flush(carry=False)
        return self.chunks

    def _pieces(self, block: _Block) -> Iterator[tuple[str, int]]:
        if block.kind == "code":
            fenced = f"{block.fence}\n{block.text}\n{block.fence[:3]}"
            tokens = count_tokens(fenced)
            if tokens <= self.max:
                yield fenced, tokens
                return
            budget = max(1, self.max - self.overlap - count_tokens(block.fence) - 2)
            for piece in _pack_units(block.text.split("\n"), "\n", budget):
                text = f"{block.fence}\n{piece}\n{block.fence[:3]}"
                yield text, count_tokens(text)
            return
        tokens = count_tokens(block.text)
        if tokens <= self.max:
            yield block.text, tokens
            return
        for piece in _pack_units(_SENTENCE.split(block.text), " ", max(1, self.max - self.overlap)):
            yield piece, count_tokens(piece)

    def _flush(self, carry: bool) -> None:
        if self.parts and not self.fresh:
            text = "\n\n".join(self.parts)
            headings = tuple(h[1] for h in self.headings)
            self.chunks.append(Chunk(text, headings, len(self.chunks), self.tokens, self.page))
            if carry and self.overlap > 0:
                tail = _tail(text, self.overlap)
                self.parts, self.tokens, self.fresh = [tail], count_tokens(tail), True
                return
        self.parts, self.tokens, self.fresh = [], 0, True

    def _trim_to(self, budget: int) -> None:
        if budget <= 0 or not self.parts:
            self.parts, self.tokens = [], 0
            return
        tail = _tail("\n\n".join(self.parts), budget)
        self.parts, self.tokens = [tail], count_tokens(tail)


def _tail(text: str, tokens: int) -> str:
    """The last ``tokens`` tokens of text, cut at a token start."""
    starts = [m.start() for m in _TOKEN.finditer(text)]
    if len(starts) <= tokens:
        return text
    return text[starts[-tokens] :]


def _pack_units(units: list[str], sep: str, budget: int) -> Iterator[str]:
    """Join units (sentences, lines) into pieces of at most ``budget`` tokens, splitting long units."""
    current: list[str] = []
    size = 0
    for unit in units:
        n = count_tokens(unit)
        if n > budget:
            if current:
                yield sep.join(current)
                current, size = [], 0
            yield from _hard_split(unit, budget)
            continue
        if size + n > budget and current:
            yield sep.join(current)
            current, size = [], 0
        current.append(unit)
        size += n
    if current:
        yield sep.join(current)


def _hard_split(text: str, budget: int) -> Iterator[str]:
    starts = [m.start() for m in _TOKEN.finditer(text)]
    for i in range(0, len(starts), budget):
        end = starts[i + budget] if i + budget < len(starts) else len(text)
        piece = text[starts[i] : end].strip()
        if piece:
            yield piece
