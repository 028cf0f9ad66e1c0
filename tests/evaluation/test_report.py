"""build_report from rows alone, the markdown, the terminal table, the PNG."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from bot.evaluation.records import AnswerRow, Mode, ProfileInfo, RunSettings
from bot.evaluation.report import MATPLOTLIB_MISSING, build_report, markdown, table, write_report
from bot.evaluation.stats import paired_bootstrap

N = 40


def settings(**fields: Any) -> RunSettings:
    values: dict[str, Any] = {
        "questions": "q.jsonl", "questions_sha256": "0" * 64, "count": N,
        "profiles": (ProfileInfo(name="base", model="b-1"),
                     ProfileInfo(name="tuned", model="t-1", price_input_per_mtok=2.0, price_output_per_mtok=8.0)),
        "modes": ("closed", "retrieved"), "kbs": ("default",), "top_k": 5,
    }
    values.update(fields)
    return RunSettings(**values)


def answer_row(i: int, profile: str, mode: Mode, right: bool, **fields: Any) -> AnswerRow:
    values: dict[str, Any] = {
        "index": i, "id": f"q{i}", "profile": profile, "model": f"{profile[0]}-1", "mode": mode,
        "question": f"question {i}?", "reference": "yes", "choices": ("yes", "no", "maybe"),
        "answer": "Yes." if right else "No.", "latency_ms": 100 + i, "prompt_tokens": 1000, "completion_tokens": 10,
    }
    values.update(fields)
    return AnswerRow(**values)


def rows() -> list[AnswerRow]:
    """base right on 20/40 in both modes; tuned right on 20/40 closed and 32/40 retrieved."""
    found = []
    for i in range(N):
        found.append(answer_row(i, "base", "closed", i < 20))
        found.append(answer_row(i, "base", "retrieved", i < 20))
        found.append(answer_row(i, "tuned", "closed", i < 20))
        found.append(answer_row(i, "tuned", "retrieved", i < 32))
    return found


def test_cells_differences_and_verdict() -> None:
    report = build_report(rows(), settings())
    cells = {(c["profile"], c["mode"]): c for c in report["cells"]}
    assert cells[("base", "retrieved")]["scores"] == {"accuracy": 0.5, "abstention": 0.0}
    assert cells[("tuned", "retrieved")]["scores"]["accuracy"] == 0.8
    assert cells[("tuned", "retrieved")]["latency_ms"] == {"p50": 119.0, "p95": 137.0}  # nearest rank: 20th, 38th of 40
    assert cells[("tuned", "retrieved")]["tokens"] == {"prompt": 40_000, "completion": 400}
    assert cells[("tuned", "retrieved")]["cost"] == pytest.approx((40_000 * 2.0 + 400 * 8.0) / 1e6)
    assert cells[("base", "closed")]["cost"] is None
    low, high = cells[("base", "closed")]["intervals"]["accuracy"]
    assert low < 0.5 < high

    pairs = {(tuple(d["a"]), tuple(d["b"]), d["metric"]) for d in report["differences"]}
    assert len({(a, b) for a, b, _ in pairs}) == 6  # every pair of the four cells, later cell first
    main = next(d for d in report["differences"]
                if d["a"] == ["tuned", "retrieved"] and d["b"] == ["base", "retrieved"] and d["metric"] == "accuracy")
    assert main["difference"] == pytest.approx(0.3) and main["n"] == N
    assert 0 < main["ci95"][0] < 0.3 < main["ci95"][1] <= 0.5
    verdict = report["verdict"]
    assert verdict["outcome"] == "beats" and verdict["difference"] == main["difference"]
    assert verdict["text"].startswith("tuned + retrieved beats base + retrieved on accuracy: 0.800 vs 0.500")
    assert build_report(rows(), settings()) == report  # reproducible
    diffs = [1.0 if 20 <= i < 32 else 0.0 for i in range(N)]  # tuned right, base wrong on q20…q31
    assert main["ci95"] == list(paired_bootstrap(diffs, [0.0] * N, seed=0)[1])


def test_the_last_row_of_a_key_wins_and_other_runs_rows_are_ignored() -> None:
    log = rows()
    failed = answer_row(0, "base", "closed", False, error="model: the model endpoint answered HTTP 500",
                        answer="", latency_ms=None)
    retried = answer_row(0, "base", "closed", True)
    beyond = answer_row(N + 5, "base", "closed", True)
    report = build_report([failed, *log[1:], retried, beyond], settings())
    assert len(report["rows"]) == 4 * N
    assert report["cells"][0]["n"] == N and report["cells"][0]["errors"] == 0
    still_failed = build_report([*log[1:], failed], settings())
    assert still_failed["cells"][0]["n"] == N - 1 and still_failed["cells"][0]["errors"] == 1
    # the comparison pairs only the questions both cells answered
    base_vs_tuned = next(
        d for d in still_failed["differences"]
        if d["a"] == ["tuned", "closed"] and d["b"] == ["base", "closed"] and d["metric"] == "accuracy"
    )
    assert base_vs_tuned["n"] == N - 1
    # rows are in question, profile, mode order whatever order they finished in
    assert [(r["id"], r["profile"], r["mode"]) for r in report["rows"][:4]] == [
        ("q0", "base", "closed"), ("q0", "base", "retrieved"), ("q0", "tuned", "closed"), ("q0", "tuned", "retrieved")
    ]


def test_one_profile_has_no_verdict() -> None:
    one = settings(profiles=(ProfileInfo(name="base", model="b-1"),))
    report = build_report([r for r in rows() if r.profile == "base"], one)
    assert "nothing to compare" in report["verdict"]["text"]


def test_markdown_and_table() -> None:
    report = build_report(rows(), settings())
    text = markdown(report)
    assert "**Verdict:** tuned + retrieved beats base + retrieved" in text
    assert "| tuned | retrieved | 40 | 0 | 0.800 [" in text
    assert "| tuned + retrieved | base + retrieved | accuracy | 40 | +0.300 |" in text
    assert "| tuned + retrieved | base + closed |" not in text  # shares neither profile nor mode: json only
    lines = table(report).splitlines()
    assert lines[0].split() == ["profile", "mode", "n", "err", "accuracy", "abstention", "p50", "ms", "cost"]
    assert lines[4].split()[:5] == ["tuned", "retrieved", "40", "0", "0.800"]


def test_report_files_and_png(tmp_path: Path) -> None:
    notes = write_report(build_report(rows(), settings()), tmp_path)
    assert notes == []
    png = (tmp_path / "report.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    assert (tmp_path / "report.json").is_file() and (tmp_path / "report.md").is_file()


def test_without_matplotlib_only_the_png_is_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # what an absent package looks like to `import`
    notes = write_report(build_report(rows(), settings()), tmp_path)
    assert notes == [MATPLOTLIB_MISSING] and "pip install 'bothbot[report]'" in notes[0]
    assert not (tmp_path / "report.png").exists() and (tmp_path / "report.md").is_file()
