"""The report of ``eval answers``: every number from the rows alone (:func:`build_report`), then
written as ``report.json``, ``report.md``, ``report.png`` and a table for the terminal.

Cells are (profile, mode). A cell's score is the mean of a metric over its rows where the metric is
defined (errors left out); its interval is Wilson's for a 0/1 metric and a seeded bootstrap of the
mean otherwise. Every pair of cells is compared on the questions both scored: the paired bootstrap
95 % interval of ``a - b``, with ``a`` the later cell in (profile, mode) order. The verdict compares
the second profile given (the candidate, e.g. ``tuned``) with the first (the baseline, ``base``) in
the ``retrieved`` mode (else the last mode run), on the first of accuracy, F1, judge correctness and
"contains" that both cells have.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bot.evaluation.records import AnswerRow, Mode, ProfileInfo, RowKey, RunSettings
from bot.evaluation.scoring import METRICS, score_row
from bot.evaluation.stats import bootstrap_mean, paired_bootstrap, wilson_interval
from retrieval.evaluate import percentile

VERDICT_METRICS = ("accuracy", "f1", "judge_correct", "contains")
TABLE_METRICS = ("accuracy", "f1", "contains", "abstention", "citation_accuracy", "hit_at_k", "judge_correct")
MATPLOTLIB_MISSING = "report.png skipped: matplotlib is not installed (pip install 'bothbot[report]')"

Report = dict[str, Any]


def latest_rows(rows: Sequence[AnswerRow], settings: RunSettings) -> list[AnswerRow]:
    """The last row written for each key of this run, in (question, profile, mode) order."""
    profiles = [p.name for p in settings.profiles]
    latest: dict[RowKey, AnswerRow] = {}
    for row in rows:
        if row.index < settings.count and row.profile in profiles and row.mode in settings.modes:
            latest[row.key] = row
    return sorted(latest.values(), key=lambda r: (r.index, profiles.index(r.profile), settings.modes.index(r.mode)))


def build_report(rows: Sequence[AnswerRow], settings: RunSettings) -> Report:
    """Every number of the report, recomputed from the rows (the CLI and the tests both call this)."""
    kept = latest_rows(rows, settings)
    scores = {row.key: score_row(row) for row in kept}
    cells = [
        _cell(profile, mode, [r for r in kept if r.profile == profile.name and r.mode == mode], scores, settings.seed)
        for profile in settings.profiles
        for mode in settings.modes
    ]
    differences = _differences(cells, kept, scores, settings)
    report: Report = {
        "questions": settings.count,
        "seed": settings.seed,
        "settings": settings.model_dump(mode="json"),
        "cells": [{k: v for k, v in cell.items() if not k.startswith("_")} for cell in cells],
        "differences": differences,
        "verdict": _verdict(cells, differences, settings),
        "rows": [_row_json(row, scores[row.key]) for row in kept],
    }
    if settings.judge is not None:
        report["judge"] = {"profile": settings.judge.profile, "model": settings.judge.model,
                           "system_prompt": settings.judge.system_prompt, "user_template": settings.judge.user_template}
    return report


def _cell(
    profile: ProfileInfo, mode: Mode, rows: list[AnswerRow], scores: Mapping[RowKey, dict[str, float]], seed: int
) -> dict[str, Any]:
    answered = [r for r in rows if r.error is None]
    values: dict[str, dict[str, float]] = {}  # metric -> question id -> value
    for row in answered:
        for metric, value in scores[row.key].items():
            values.setdefault(metric, {})[row.id] = value
    means: dict[str, float] = {}
    intervals: dict[str, list[float]] = {}
    for metric in METRICS:
        found = list(values.get(metric, {}).values())
        if not found:
            continue
        if all(v in (0.0, 1.0) for v in found):
            means[metric] = sum(found) / len(found)
            low, high = wilson_interval(int(sum(found)), len(found))
        else:
            means[metric], (low, high) = bootstrap_mean(found, seed=seed)
        intervals[metric] = [low, high]
    latencies = [float(r.latency_ms) for r in answered if r.latency_ms is not None]
    prompt_tokens = sum(r.prompt_tokens for r in answered)
    completion_tokens = sum(r.completion_tokens for r in answered)
    cost = None
    if profile.price_input_per_mtok is not None or profile.price_output_per_mtok is not None:
        cost = (prompt_tokens * (profile.price_input_per_mtok or 0.0)
                + completion_tokens * (profile.price_output_per_mtok or 0.0)) / 1_000_000
    return {
        "profile": profile.name,
        "model": profile.model,
        "mode": mode,
        "n": len(answered),
        "errors": len(rows) - len(answered),
        "scores": means,
        "scored": {metric: len(values[metric]) for metric in means},
        "intervals": intervals,
        "latency_ms": {"p50": percentile(latencies, 0.5), "p95": percentile(latencies, 0.95)} if latencies else None,
        "tokens": {"prompt": prompt_tokens, "completion": completion_tokens},
        "cost": cost,
        "_values": values,
    }


def _differences(
    cells: list[dict[str, Any]], rows: list[AnswerRow], scores: Mapping[RowKey, dict[str, float]], settings: RunSettings
) -> list[dict[str, Any]]:
    order = [r.id for r in rows]
    position = {qid: i for i, qid in reversed(list(enumerate(order)))}
    found: list[dict[str, Any]] = []
    for j, a in enumerate(cells):
        for b in cells[:j]:
            for metric in METRICS:
                va, vb = a["_values"].get(metric, {}), b["_values"].get(metric, {})
                shared = sorted(set(va) & set(vb), key=position.__getitem__)
                if not shared:
                    continue
                difference, (low, high) = paired_bootstrap(
                    [va[q] for q in shared], [vb[q] for q in shared], seed=settings.seed, resamples=settings.resamples
                )
                found.append({
                    "a": [a["profile"], a["mode"]],
                    "b": [b["profile"], b["mode"]],
                    "metric": metric,
                    "n": len(shared),
                    "difference": difference,
                    "ci95": [low, high],
                })
    return found


def _verdict(cells: list[dict[str, Any]], differences: list[dict[str, Any]], settings: RunSettings) -> dict[str, Any]:
    if len(settings.profiles) < 2:
        return {"text": "One profile only: nothing to compare (give two, e.g. --profiles base,tuned)."}
    baseline, candidate = settings.profiles[0].name, settings.profiles[1].name
    mode = "retrieved" if "retrieved" in settings.modes else settings.modes[-1]
    for metric in VERDICT_METRICS:
        for d in differences:
            if d["a"] == [candidate, mode] and d["b"] == [baseline, mode] and d["metric"] == metric:
                low, high = d["ci95"]
                if low > 0:
                    outcome = "beats"
                elif high < 0:
                    outcome = "is worse than"
                else:
                    outcome = "is not clearly different from"
                score = {c["profile"]: c["scores"].get(metric) for c in cells if c["mode"] == mode}
                text = (
                    f"{candidate} + {mode} {outcome} {baseline} + {mode} on {metric}: "
                    f"{_num(score[candidate])} vs {_num(score[baseline])}, difference {d['difference']:+.3f} "
                    f"(95 % CI {low:+.3f} to {high:+.3f}, {d['n']} questions both answered)"
                )
                return {"a": d["a"], "b": d["b"], "metric": metric, "difference": d["difference"],
                        "ci95": d["ci95"], "n": d["n"], "outcome": outcome, "text": text}
    return {"text": f"No shared scores for {candidate} + {mode} and {baseline} + {mode}: no verdict."}


def _row_json(row: AnswerRow, scores: dict[str, float]) -> dict[str, Any]:
    return {
        "id": row.id,
        "profile": row.profile,
        "model": row.model,
        "mode": row.mode,
        "question": row.question,
        "answer": row.answer,
        "reference": row.reference,
        "sources": [s.model_dump() for s in row.sources],
        "gold_given": row.gold_given,
        "scores": scores,
        "latency_ms": row.latency_ms,
        "tokens": {"prompt": row.prompt_tokens, "completion": row.completion_tokens},
        "error": row.error,
        "judge": row.judge.model_dump() if row.judge is not None else None,
    }


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _with_interval(cell: dict[str, Any], metric: str) -> str:
    if metric not in cell["scores"]:
        return "–"
    low, high = cell["intervals"][metric]
    return f"{cell['scores'][metric]:.3f} [{low:.2f}, {high:.2f}]"


def _pad(line: list[str], widths: list[int]) -> list[str]:
    """The first two columns (names) left-aligned, numbers right-aligned."""
    return [text.ljust(w) if i < 2 else text.rjust(w) for i, (text, w) in enumerate(zip(line, widths, strict=True))]


def table(report: Report) -> str:
    """The cells as a plain-text table, then the verdict."""
    metrics = [m for m in TABLE_METRICS if any(m in c["scores"] for c in report["cells"])]
    header = ["profile", "mode", "n", "err", *metrics, "p50 ms", "cost"]
    lines = [header]
    for c in report["cells"]:
        latency = c["latency_ms"]
        lines.append([
            c["profile"], c["mode"], str(c["n"]), str(c["errors"]),
            *(_num(c["scores"].get(m)) for m in metrics),
            f"{latency['p50']:.0f}" if latency else "–",
            f"{c['cost']:.4f}" if c["cost"] is not None else "–",
        ])
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(_pad(line, widths)) for line in lines]
    return "\n".join([*out, "", report["verdict"]["text"]])


def markdown(report: Report) -> str:
    s = report["settings"]
    profiles = ", ".join(f"`{p['name']}` ({p['model']})" for p in s["profiles"])
    lines = [
        "# bothbot eval answers",
        "",
        f"Questions: {report['questions']} from `{s['questions']}`; profiles: {profiles}; modes: "
        f"{', '.join(s['modes'])}; knowledge bases: {', '.join(s['kbs'])}; top k: {s['top_k']}; "
        f"temperature {s['temperature']:g}; bootstrap: {s['resamples']} resamples, seed {report['seed']}.",
        "",
        f"**Verdict:** {report['verdict']['text']}",
        "",
        "## Scores",
        "",
    ]
    metrics = [m for m in METRICS if any(m in c["scores"] for c in report["cells"])]
    lines.append("| profile | mode | n | errors | " + " | ".join(metrics) + " |")
    lines.append("|---|---|---:|---:|" + "---:|" * len(metrics))
    for c in report["cells"]:
        values = [_with_interval(c, m) for m in metrics]
        lines.append(f"| {c['profile']} | {c['mode']} | {c['n']} | {c['errors']} | " + " | ".join(values) + " |")
    lines += ["", "Brackets: 95 % interval (Wilson for 0/1 scores, bootstrap otherwise).", "", "## Cost and speed", "",
              "| profile | mode | latency p50 ms | latency p95 ms | prompt tokens | completion tokens | cost |",
              "|---|---|---:|---:|---:|---:|---:|"]
    for c in report["cells"]:
        latency = c["latency_ms"] or {}
        p50 = f"{latency['p50']:.0f}" if latency else "–"
        p95 = f"{latency['p95']:.0f}" if latency else "–"
        cost = f"{c['cost']:.4f}" if c["cost"] is not None else "– (no price set)"
        lines.append(f"| {c['profile']} | {c['mode']} | {p50} | {p95} | {c['tokens']['prompt']} | "
                     f"{c['tokens']['completion']} | {cost} |")
    lines += ["", "## Differences", "",
              "Paired over the questions both cells answered; `a - b` with its 95 % bootstrap interval. Pairs "
              "that share a profile or a mode (all pairs are in report.json).", "",
              "| a | b | metric | n | a - b | 95 % CI |", "|---|---|---|---:|---:|---|"]
    for d in report["differences"]:
        if d["a"][0] == d["b"][0] or d["a"][1] == d["b"][1]:
            lines.append(f"| {' + '.join(d['a'])} | {' + '.join(d['b'])} | {d['metric']} | {d['n']} | "
                         f"{d['difference']:+.3f} | [{d['ci95'][0]:+.3f}, {d['ci95'][1]:+.3f}] |")
    if "judge" in report:
        j = report["judge"]
        lines += ["", "## Judge", "", f"Profile `{j['profile']}`, model `{j['model']}`, temperature 0.", "",
                  "System prompt:", "", "```", j["system_prompt"], "```", "", "User message template:", "",
                  "```", j["user_template"], "```"]
    failed = [r for r in report["rows"] if r["error"]]
    if failed:
        lines += ["", "## Rows not answered", ""]
        lines += [f"- `{r['id']}` {r['profile']} + {r['mode']}: {r['error']}" for r in failed[:50]]
        if len(failed) > 50:
            lines.append(f"- … and {len(failed) - 50} more (see report.json)")
    return "\n".join(lines) + "\n"


def write_png(report: Report, path: Path) -> bool:
    """Grouped bars, one group per metric, one bar per cell, with the cell's 95 % interval.

    Returns False (and writes nothing) when matplotlib is not installed.
    """
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        return False
    cells = report["cells"]
    metrics = [m for m in METRICS if any(m in c["scores"] for c in cells)]
    figure = Figure(figsize=(max(7.0, 1.4 * len(metrics) + 3.5), 4.8), dpi=110)
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    width = 0.8 / max(1, len(cells))
    colours = _colours(report)
    for i, cell in enumerate(cells):
        xs, heights, below, above = [], [], [], []
        for k, metric in enumerate(metrics):
            if metric in cell["scores"]:
                value = cell["scores"][metric]
                low, high = cell["intervals"][metric]
                xs.append(k - 0.4 + width * (i + 0.5))
                heights.append(value)
                below.append(max(0.0, value - low))
                above.append(max(0.0, high - value))
        axes.bar(xs, heights, width, yerr=[below, above], capsize=2, color=colours[i],
                 label=f"{cell['profile']} + {cell['mode']}")
    axes.set_xticks(range(len(metrics)), [m.replace("_", " ") for m in metrics], rotation=20, ha="right")
    axes.set_ylim(0, 1.05)
    axes.set_ylabel("score (95 % interval)")
    axes.set_title(f"bothbot eval answers: {report['questions']} questions")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.tight_layout()
    figure.savefig(path)
    return True


def _colours(report: Report) -> list[tuple[float, float, float, float]]:
    """One hue per profile (baseline blue, candidate orange, …), lighter to darker by mode."""
    from matplotlib import colormaps

    maps = ("Blues", "Oranges", "Greens", "Purples", "Reds", "Greys")
    profiles = [p["name"] for p in report["settings"]["profiles"]]
    modes = report["settings"]["modes"]
    return [
        colormaps[maps[profiles.index(c["profile"]) % len(maps)]](0.4 + 0.5 * (modes.index(c["mode"]) + 1) / len(modes))
        for c in report["cells"]
    ]


def write_report(report: Report, out: Path) -> list[str]:
    """Write report.json, report.md and report.png into ``out``; returns notes for the user (a skipped png)."""
    (out / "report.json").write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / "report.md").write_text(markdown(report), encoding="utf-8")
    return [] if write_png(report, out / "report.png") else [MATPLOTLIB_MISSING]

