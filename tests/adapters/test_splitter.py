"""The shared splitter: limits, code fences, no empty pieces, nothing lost, stable while streaming."""

from __future__ import annotations

import random

import pytest

from adapters.common.splitter import FENCE_RESERVE, open_fence, split_all, split_head
from adapters.slack.blocks import mrkdwn_size


def _texts() -> list[str]:
    """Answers of the shapes models write: prose, lists, code blocks with and without a language,
    long words, blank-line runs; fixed seed, so every run checks the same texts."""
    rng = random.Random(20261205)
    words = ["the", "portal", "laptop", "ticket", "a<b", "&", "**bold**", "[link](https://x.example/a)", "x" * 40]
    texts = []
    for _ in range(60):
        parts = []
        for _ in range(rng.randint(1, 30)):
            kind = rng.random()
            if kind < 0.5:
                parts.append(" ".join(rng.choice(words) for _ in range(rng.randint(5, 120))) + ".")
            elif kind < 0.7:
                parts.append("\n".join(f"- item {i} " + rng.choice(words) for i in range(rng.randint(1, 30))))
            elif kind < 0.9:
                lang = rng.choice(["", "python", "sh"])
                body = "\n".join(f"line_{i} = {i} & {i} < {i + 1}" for i in range(rng.randint(1, 200)))
                parts.append(f"```{lang}\n{body}\n```")
            else:
                parts.append("y" * rng.randint(1, 5000))
        texts.append(("\n\n" if rng.random() < 0.7 else "\n").join(parts))
    return texts


TEXTS = _texts()


def _content(text: str) -> str:
    """What a reader reads: the text without fences and white space."""
    lines = [line for line in text.split("\n") if open_fence(line) is None or not line.strip().startswith("```")]
    return "".join("".join(lines).split())


@pytest.mark.parametrize("limit", [200, 2000, 3000])
def test_every_piece_fits_has_balanced_fences_and_is_not_empty(limit: int) -> None:
    for text in TEXTS:
        pieces = split_all(text, limit)
        assert all(len(p) <= limit for p in pieces)
        assert all(p.strip() for p in pieces), "no empty or blank piece"
        assert all(open_fence(p) is None for p in pieces), "every piece closes the code block it opens"


def test_a_platform_measure_is_respected() -> None:
    """Slack measures the mrkdwn a piece becomes (escaped &, <, > are longer than the Markdown)."""
    for text in TEXTS:
        pieces = split_all(text, 3000, mrkdwn_size)
        assert all(mrkdwn_size(p) <= 3000 for p in pieces)
        assert all(p.strip() for p in pieces)


def test_nothing_is_lost_or_repeated() -> None:
    for text in TEXTS:
        pieces = split_all(text, 2000)
        assert _content("\n".join(pieces)) == _content(text)


def test_a_code_block_cut_in_two_is_reopened_with_its_language() -> None:
    code = "```python\n" + "\n".join(f"x_{i} = {i}" for i in range(400)) + "\n```"
    first, second, *_ = split_all("Intro.\n\n" + code, 2000)
    assert first.startswith("Intro.") and first.endswith("\n```")
    assert second.startswith("```python\n")


def test_cuts_prefer_paragraphs_then_lines_then_words() -> None:
    paragraph = "word " * 300  # 1,500 characters
    head, rest = split_head(paragraph.strip() + "\n\n" + paragraph.strip(), 2000)
    assert head == paragraph.strip() and rest == paragraph.strip()
    head, rest = split_head("a" * 1000 + " " + "b" * 1500, 2000)
    assert (head, rest) == ("a" * 1000, "b" * 1500)


def test_a_word_longer_than_the_limit_is_cut_hard() -> None:
    pieces = split_all("x" * 4500, 2000)
    assert [len(p) for p in pieces] == [2000 - FENCE_RESERVE, 2000 - FENCE_RESERVE, 4500 - 2 * (2000 - FENCE_RESERVE)]


def test_short_and_empty_texts_stay_whole() -> None:
    assert split_all("", 100) == [""]
    assert split_all("a" * 100, 100) == ["a" * 100]
    assert split_head("short", 100) == ("short", "")


def test_a_limit_without_room_for_a_fence_is_refused() -> None:
    with pytest.raises(ValueError, match="no room"):
        split_all("text", FENCE_RESERVE)


def test_earlier_pieces_never_change_while_the_text_grows() -> None:
    """While an answer streams, only the last piece may change: messages already full stay put."""
    for text in TEXTS[:20]:
        settled: list[str] = []
        for end in range(0, len(text), 97):
            pieces = split_all(text[:end], 2000)
            assert pieces[: len(settled)] == settled
            settled = pieces[:-1]
