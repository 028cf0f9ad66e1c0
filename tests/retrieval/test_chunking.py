from __future__ import annotations

import itertools

import pytest

from retrieval.chunking import chunk_document, count_tokens
from retrieval.documents import Document

MD = """# Guide

Intro paragraph. It explains things.

## Install

Run this:

```bash
pip install thing
pip install other
```

### Linux

{long}

## Use

Short.
"""


def md_doc(text: str) -> Document:
    return Document("g.md", "Guide", text, "markdown")


def test_headings_form_paths_and_open_chunks() -> None:
    chunks = chunk_document(md_doc(MD.format(long="Plain words here.")), 200, 20)
    assert [c.headings for c in chunks] == [
        ("Guide",),
        ("Guide", "Install"),
        ("Guide", "Install", "Linux"),
        ("Guide", "Use"),
    ]
    assert [c.position for c in chunks] == [0, 1, 2, 3]
    assert chunks[1].text == "Run this:\n\n```bash\npip install thing\npip install other\n```"
    assert chunks[1].heading == "Guide > Install"


@pytest.mark.parametrize(("size", "overlap"), [(16, 0), (40, 8), (64, 16), (120, 30)])
def test_chunks_stay_within_the_bound_and_overlap_inside_a_section(size: int, overlap: int) -> None:
    long = " ".join(f"Sentence number {i} is here." for i in range(80))
    chunks = chunk_document(md_doc(MD.format(long=long)), size, overlap)
    assert all(c.tokens <= size for c in chunks)
    assert all(count_tokens(c.text) == c.tokens for c in chunks)
    linux = [c for c in chunks if c.headings[-1] == "Linux"]
    assert len(linux) > 1
    covered = " ".join(c.text for c in linux)
    for i in range(80):
        assert f"number {i} " in covered
    if overlap:
        for prev, nxt in itertools.pairwise(linux):
            tail_words = prev.text.split()[-2:]
            assert " ".join(tail_words) in nxt.text
    # never across a heading: the first chunk of a section starts with that section's own text
    use = [c for c in chunks if c.headings == ("Guide", "Use")]
    assert [c.text for c in use] == ["Short."]


def test_oversized_code_block_is_split_into_fenced_pieces() -> None:
    code = "\n".join(f"x{i} = compute({i})" for i in range(100))
    chunks = chunk_document(md_doc(f"# C\n\n```python\n{code}\n```\n"), 50, 0)
    assert len(chunks) > 2
    for c in chunks:
        assert c.text.startswith("```python\n") and c.text.endswith("\n```")
        assert c.tokens <= 50
    assert "x99 = compute(99)" in chunks[-1].text


def test_setext_headings_and_unclosed_fence() -> None:
    chunks = chunk_document(md_doc("Title\n=====\n\nBody one.\n\nSub\n---\n\nBody two.\n\n```\nno end"), 100, 0)
    assert [(c.headings, c.text) for c in chunks] == [
        (("Title",), "Body one."),
        (("Title", "Sub"), "Body two.\n\n```\nno end\n```"),
    ]


def test_plain_text_short_is_one_chunk_long_is_split_by_paragraph() -> None:
    assert [c.text for c in chunk_document(Document("a", "A", "  one two  ", "text"), 10, 2)] == ["one two"]
    assert chunk_document(Document("a", "A", "   ", "text"), 10, 2) == []
    text = "\n\n".join(f"Paragraph {i} has five words." for i in range(10))
    chunks = chunk_document(Document("a", "A", text, "text"), 20, 0)
    assert all(c.tokens <= 20 for c in chunks)
    assert chunks[0].text == "\n\n".join(f"Paragraph {i} has five words." for i in range(3))  # 6 tokens each


def test_pdf_pages_are_recorded_and_never_share_a_chunk() -> None:
    doc = Document("m.pdf", "M", "page one text\fpage two text\f\fpage four", "pdf")
    chunks = chunk_document(doc, 100, 10)
    assert [(c.page, c.text) for c in chunks] == [(1, "page one text"), (2, "page two text"), (4, "page four")]


def test_a_single_giant_word_run_is_hard_split() -> None:
    text = "# H\n\n" + "w " * 500
    chunks = chunk_document(md_doc(text), 64, 8)
    assert all(c.tokens <= 64 for c in chunks)
    assert sum(c.text.count("w") for c in chunks) >= 500
