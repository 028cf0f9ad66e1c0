from __future__ import annotations

import math
from collections import Counter

import pytest

from retrieval.sparse import Bm25Encoder


def test_stemming_stop_words_and_case() -> None:
    enc = Bm25Encoder()
    assert enc.term_ids("Running") == enc.term_ids("runs") == enc.term_ids("RUN")
    assert enc.term_ids("the and of to") == []
    assert enc.term_ids("user's") == enc.term_ids("user")
    assert len(enc.term_ids("snake_case value42")) == 3


def test_unicode_words_cjk_and_compatibility_forms() -> None:
    enc = Bm25Encoder(language="german")
    assert len(enc.term_ids("東京タワー")) == 5  # one term per ideograph / kana
    assert enc.term_ids("ﬁle") == enc.term_ids("file")  # NFKC folds the ligature
    assert enc.term_ids("Häuser") == enc.term_ids("häuser")
    assert enc.term_ids("und die der") == []


def test_options_turn_stemming_and_stop_words_off() -> None:
    plain = Bm25Encoder(stemming=False, stop_words=False)
    assert plain.term_ids("running") != plain.term_ids("runs")
    assert len(plain.term_ids("the cat")) == 2
    assert Bm25Encoder(language="none").term_ids("running") == plain.term_ids("running")
    assert plain.signature != Bm25Encoder().signature


def test_query_weights_are_one_per_distinct_term() -> None:
    vec = Bm25Encoder().query("run running runs fast")
    assert len(vec) == 2
    assert vec.values == [1.0, 1.0]


@pytest.mark.parametrize(("k1", "b"), [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0)])
def test_document_weights_are_bm25_term_frequency_parts(k1: float, b: float) -> None:
    enc = Bm25Encoder(k1=k1, b=b)
    text = "cat cat cat dog bird bird"
    vec, length = enc.document(text, avg_len=4.0)
    assert length == 6
    counts = Counter(enc.term_ids(text))
    for index, weight in zip(vec.indices, vec.values, strict=True):
        tf = counts[index]
        expected = tf * (k1 + 1) / (tf + k1 * (1 - b + b * length / 4.0))
        assert math.isclose(weight, expected)


def test_empty_document() -> None:
    vec, length = Bm25Encoder().document("the of and", 10.0)
    assert (len(vec), length) == (0, 0)


def test_a_full_word_cache_cleared_part_way_through_a_document_loses_no_term(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The surface-form cache is bounded; clearing it while a document is analysed must not drop words."""
    import retrieval.sparse

    monkeypatch.setattr(retrieval.sparse, "_CACHE_LIMIT", 10)
    bounded, fresh = Bm25Encoder(), Bm25Encoder()
    for i in range(40):
        text = f"document {i} alpha beta gamma unique{i} words{i} delta{i}"
        counts, length = bounded.analyze(text)
        assert None not in counts
        monkeypatch.setattr(retrieval.sparse, "_CACHE_LIMIT", 10**9)
        assert (counts, length) == fresh.analyze(text)
        monkeypatch.setattr(retrieval.sparse, "_CACHE_LIMIT", 10)
