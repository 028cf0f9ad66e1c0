"""Property-based: chunking keeps within its bound and keeps the text; loaders never raise on any bytes."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from retrieval.chunking import chunk_document, count_tokens
from retrieval.documents import PAGE_BREAK, Document, LoadFailure
from retrieval.loaders import LoadOptions, load_file

_TOKEN = re.compile(r"\w+|[^\w\s]")
_PIECES = st.sampled_from(
    ["# Title", "## Sub", "### Deep", "```", "```py", "~~~", "===", "---", "\n", "\n\n", "- item", "> quote",
     "Sentence one.", "Two!", "Why?", " ", "\t", PAGE_BREAK, "word", "naïve café", "日本語の文。", "a_b", "#", "`"]
)
_TEXT = st.one_of(
    st.text(max_size=400),
    st.lists(st.one_of(_PIECES, st.text(max_size=30)), max_size=40).map("".join),
)
_BOUNDS = st.integers(min_value=1, max_value=40).flatmap(
    lambda size: st.tuples(st.just(size), st.integers(min_value=0, max_value=size - 1))
)
_EXAMPLES = settings(max_examples=150, deadline=None)


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text)


@given(text=_TEXT, bounds=_BOUNDS, fmt=st.sampled_from(["markdown", "text", "html", "pdf", "jsonl", "slack"]))
@_EXAMPLES
def test_chunks_stay_within_the_bound(text: str, bounds: tuple[int, int], fmt: str) -> None:
    size, overlap = bounds
    doc = Document("s", "t", text, fmt, "o")  # type: ignore[arg-type]
    chunks = chunk_document(doc, size, overlap)
    assert [c.position for c in chunks] == list(range(len(chunks)))
    for chunk in chunks:
        assert chunk.text.strip()
        assert chunk.tokens == count_tokens(chunk.text)
        assert chunk.tokens <= max(size, _fence_floor(chunk.text)), (chunk, size)


def _fence_floor(text: str) -> int:
    """A fenced piece always carries its fences (a line of code split to one token still has them)."""
    lines = text.split("\n")
    if len(lines) >= 3 and lines[0].lstrip().startswith(("```", "~~~")):
        return count_tokens(lines[0]) + count_tokens(lines[-1]) + 1
    return 0


@given(text=_TEXT, size=st.integers(min_value=1, max_value=40))
@_EXAMPLES
def test_plain_text_without_overlap_keeps_every_token_in_order(text: str, size: int) -> None:
    chunks = chunk_document(Document("s", "t", text, "text", "o"), size, 0)
    assert [t for c in chunks for t in _tokens(c.text)] == _tokens(text)


@given(text=_TEXT, bounds=_BOUNDS)
@_EXAMPLES
def test_markdown_keeps_every_word_in_a_chunk_or_its_headings(text: str, bounds: tuple[int, int]) -> None:
    size, overlap = bounds
    chunks = chunk_document(Document("s", "t", text, "markdown", "o"), size, overlap)
    kept = {w for c in chunks for part in (c.text, *c.headings) for w in re.findall(r"\w+", part)}
    assert set(re.findall(r"\w+", text)) - _heading_words(text) <= kept


def _heading_words(text: str) -> set[str]:
    """Words of heading lines (ATX, or setext: a line above === / ---): a heading with no text after it
    opens no chunk, as documented, so its words may be in none."""
    lines = text.split("\n")
    headings = [
        line for i, line in enumerate(lines)
        if re.match(r" {0,3}#{1,6}(\s|$)", line)
        or (i + 1 < len(lines) and re.fullmatch(r" {0,3}(=+|-+)\s*", lines[i + 1]))
    ]
    return {w for line in headings for w in re.findall(r"\w+", line)}


_SUFFIXES = st.sampled_from([".md", ".txt", ".html", ".jsonl", ".pdf"])
_PDFISH = st.builds(
    lambda body: b"%PDF-1.4\n" + body + b"\n%%EOF", st.binary(max_size=200)
)
_BYTES = st.one_of(
    st.binary(max_size=600),
    _PDFISH,
    _TEXT.map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.lists(st.sampled_from([b'{"text": "a"}', b'{"id": 1, "text": 2}', b"[1]", b"{", b'"x"', b"null",
                              b'{"text": "b", "scope": 5}', b'{"body": "c", "title": {}}', b"\xff\xfe"]),
             max_size=6).map(b"\n".join),
)


@given(data=_BYTES, suffix=_SUFFIXES, text_field=st.sampled_from([None, "text", "body"]))
@settings(max_examples=200, deadline=None)
def test_loaders_turn_any_bytes_into_documents_or_named_failures(
    data: bytes, suffix: str, text_field: str | None
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"file{suffix}"
        path.write_bytes(data)
        items = list(load_file(path, path.name, "root", LoadOptions(text_field=text_field)))
    for item in items:
        assert isinstance(item, Document | LoadFailure)
        if isinstance(item, LoadFailure):
            assert item.reason.strip()
        else:
            assert isinstance(item.text, str) and isinstance(item.title, str)
