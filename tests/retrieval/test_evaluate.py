from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from retrieval.evaluate import DatasetError, EvalData, load_beir, load_pubmedqa, mrr_at, ndcg_at, recall_at, write_beir


def test_metrics_on_hand_computed_rankings() -> None:
    rels = {"a": 2, "b": 1, "z": 0}
    assert ndcg_at(["a", "b"], rels, 10) == pytest.approx(1.0)
    dcg = 1 / math.log2(2) + 2 / math.log2(3)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at(["b", "a", "x"], rels, 10) == pytest.approx(dcg / idcg)
    assert ndcg_at(["x"] * 10 + ["a"], rels, 10) == 0.0
    assert recall_at(["a", "x", "b"], rels, 2) == 0.5
    assert recall_at(["z"], {"z": 0}, 1) == 0.0
    assert mrr_at(["x", "z", "b"], rels, 10) == pytest.approx(1 / 3)
    assert mrr_at(["x", "b"], rels, 1) == 0.0


def test_beir_round_trip(tmp_path: Path) -> None:
    data = EvalData("t", {"d1": ("T", "text")}, {"q1": "question", "q2": "other"}, {"q1": {"d1": 1}})
    write_beir(data, tmp_path)
    loaded = load_beir(tmp_path)
    assert (loaded.corpus, loaded.queries, loaded.qrels) == (data.corpus, data.queries, data.qrels)
    with pytest.raises(DatasetError, match=r"dev\.tsv"):
        load_beir(tmp_path, "dev")


def test_pubmedqa_loader(tmp_path: Path) -> None:
    item = {"QUESTION": "Q?", "CONTEXTS": ["part one.", "part two."], "LONG_ANSWER": "x", "final_decision": "yes"}
    (tmp_path / "ori_pqal.json").write_text(json.dumps({"123": item}))
    data = load_pubmedqa(tmp_path)
    assert data.corpus == {"123": ("", "part one. part two.")}
    assert data.queries == {"123": "Q?"} and data.qrels == {"123": {"123": 1}}
    with pytest.raises(DatasetError):
        load_pubmedqa(tmp_path / "missing")
