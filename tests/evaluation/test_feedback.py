"""``bothbot feedback export`` and ``bothbot eval feedback`` on answers rated through the engine."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main as cli_main
from bot.evaluation.feedback import rated_answers, tally_feedback
from bot.experiments import Experiments
from bot.questions import load_questions
from bot.runtime import Runtime
from bot.settings import Settings
from tests.conftest import PROFILES, TEST_REDIS_URL, IngestDocs
from tests.core.helpers import ask
from tests.fakes.openai_server import FakeOpenAI

DOCS = {
    "laptops.md": "# Laptops\n\nTo request a laptop, open a ticket in the IT portal under Hardware.\n",
    "holidays.md": "# Holidays\n\nEvery employee has 28 days of paid holiday a year.\n",
}


@dataclass
class Rated:
    runtime: Runtime
    up: list[str]  # trace ids rated 👍 (channel A, outside an experiment)
    down: list[str]  # rated 👎 (channel A)
    unrated: list[str]
    experiment_id: str
    arms: dict[str, str]  # trace id → arm, channel B


@pytest.fixture
def data_dir(ingest_docs: IngestDocs) -> Path:
    return ingest_docs(DOCS)  # a synchronous fixture: ingest runs its own event loop


@pytest.fixture
async def rated(
    data_dir: Path, make_settings: Callable[..., Settings], openai_server: FakeOpenAI,
    monkeypatch: pytest.MonkeyPatch, redis_prefix: str,
) -> AsyncIterator[Rated]:
    monkeypatch.setenv("REDIS_URL", TEST_REDIS_URL)  # what the CLI, run as a user would, reads
    monkeypatch.setenv("BOTHBOT_REDIS_PREFIX", redis_prefix)
    runtime = await Runtime.start(
        make_settings(
            data_dir=data_dir, openai_base_url=openai_server.base_url, openai_api_key="sk-test-feedback",
            profiles=PROFILES, default_profile="base", model_max_retries=0,
        )
    )
    engine = runtime.engine
    openai_server.reply_text = lambda body: (
        "Open a ticket in the IT portal [1]." if "laptop" in body["messages"][-1]["content"] else "28 days [1]."
    )
    up = [(await ask(engine, "How do I request a laptop?", channel="A", thread=f"u{i}")).trace_id for i in range(2)]
    down = [(await ask(engine, "How many holiday days?", channel="A", thread="d0")).trace_id]
    unrated = [(await ask(engine, "How do I request a laptop?", channel="A", thread="n0")).trace_id]
    for trace_id in up:
        await engine.record_feedback(trace_id, user="U1", value="up", platform="slack")
    await engine.record_feedback(down[0], user="U1", value="down", platform="slack")

    await ask(engine, "experiment start tuned base", command=True, is_admin=True, channel="B")
    experiment = await Experiments(runtime.settings, runtime.state).running("slack:T1:B")
    assert experiment is not None
    arms: dict[str, str] = {}
    for i in range(6):
        final = await ask(engine, "How many holiday days?", channel="B", thread=f"b{i}")
        arms[final.trace_id] = experiment.arm_for(f"slack:T1:B:b{i}").label
        await engine.record_feedback(final.trace_id, user="U1", value="up" if i % 3 else "down", platform="slack")
    yield Rated(runtime, up, down, unrated, experiment.id, arms)
    await runtime.aclose()


async def _cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli_main, list(argv))  # its own event loop, as a user runs it
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_export_round_trips_through_load_questions(
    rated: Rated, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "export" / "rated.jsonl"
    code, _, err = await _cli(capsys, "feedback", "export", "--channel", "slack:T1:A", "--out", str(out))
    assert code == 0, err
    assert "wrote 3 rated answers" in err
    questions = load_questions(out, require_answer=True)
    assert questions.problems == ()
    assert [item.id for item in questions.items] == [*rated.up, *rated.down]
    laptop = questions.items[0]
    assert (laptop.question, laptop.answer) == ("How do I request a laptop?", "Open a ticket in the IT portal [1].")
    assert len(laptop.chunk_ids) == 1 and laptop.sources[0].endswith("laptops.md")

    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    first = rows[0]
    assert first["rating"] == "up" and rows[2]["rating"] == "down"
    assert (first["profile"], first["model"], first["arm"], first["channel"]) == (
        "base", "base-model", None, "slack:T1:A"
    )
    assert first["trace_id"] == rated.up[0]
    assert abs(datetime.fromisoformat(first["created_at"]).timestamp() - time.time()) < 3600
    assert any("IT portal" in p["text"] and p["chunk_id"] == laptop.chunk_ids[0] for p in first["context"])

    api = await rated_answers(rated.runtime.state, rating="up", channel="slack:T1:A")  # what tune dataset reads
    assert [(a.question, a.answer, a.chunk_ids, a.sources) for a in api] == [
        (item.question, item.answer, item.chunk_ids, item.sources) for item in questions.items[:2]
    ]
    assert api[0].context and api[0].context[0]["text"]


async def test_export_filters_by_rating_channel_and_time(
    rated: Rated, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = await _cli(capsys, "feedback", "export", "--rating", "down")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    down_in_b = [trace_id for i, trace_id in enumerate(rated.arms) if i % 3 == 0]
    assert [r["trace_id"] for r in rows] == [*rated.down, *down_in_b]  # oldest first, across channels
    assert all(r["rating"] == "down" for r in rows)
    assert [r["arm"] for r in rows] == [None, *(rated.arms[t] for t in down_in_b)]

    state = rated.runtime.state
    old_at = time.time() - 5 * 86400
    await state.save_trace(
        "old-trace",
        {"channel": "slack:T1:A", "question": "Old?", "answer": "Yes.", "created_at": old_at, "votes_up": 1},
        rated.runtime.settings.trace_ttl_seconds,
    )
    week_ago = (datetime.now(UTC) - timedelta(days=7)).date().isoformat()
    two_days_ago = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    _, with_old, _ = await _cli(capsys, "feedback", "export", "--channel", "slack:T1:A", "--since", week_ago)
    _, without_old, _ = await _cli(capsys, "feedback", "export", "--channel", "slack:T1:A", "--since", two_days_ago)
    assert next(json.loads(line)["trace_id"] for line in with_old.splitlines()) == "old-trace"
    assert "old-trace" not in without_old and len(without_old.splitlines()) == 3
    tomorrow = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    assert (await _cli(capsys, "feedback", "export", "--since", tomorrow))[1] == ""


async def test_eval_feedback_shows_the_numbers_the_experiment_command_shows(
    rated: Rated, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = await _cli(capsys, "eval", "feedback", "--channel", "slack:T1:B")
    assert code == 0, err
    experiment = await Experiments(rated.runtime.settings, rated.runtime.state).running("slack:T1:B")
    assert experiment is not None
    tallies = await tally_feedback(rated.runtime.state, experiment=experiment)
    shown = (await ask(rated.runtime.engine, "experiment", command=True, channel="B")).text
    assert sum(t.answers for t in tallies) == 6
    for tally in tallies:
        arm = tally.group.removeprefix("arm ")
        expected_ups = sum(1 for i, (_, a) in enumerate(rated.arms.items()) if a == arm and i % 3)
        assert tally.ups == expected_ups
        assert f"• {arm}: {tally.summary()}" in shown
        low, high = tally.interval
        row = next(line for line in out.splitlines() if line.startswith(f"arm {arm} (experiment {experiment.id})"))
        numbers = row.split(")", 1)[1].split()
        assert numbers[:4] == [str(tally.answers), str(tally.rated), str(tally.ups), str(tally.downs)]
        assert f"{round(low * 100)}–{round(high * 100)} %" in row

    _, everything, _ = await _cli(capsys, "eval", "feedback")
    profile_row = next(line for line in everything.splitlines() if line.startswith("profile base"))
    assert profile_row.split()[2:6] == ["4", "3", "2", "1"]  # channel A: 4 answers, 3 rated, 2 👍, 1 👎
    assert "67 %" in profile_row


async def test_bad_input_is_refused_clearly(
    rated: Rated, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    code, _, err = await _cli(capsys, "feedback", "export", "--since", "last tuesday")
    assert code == 2
    assert err.startswith("bothbot feedback export: --since 'last tuesday' is not a date")
    monkeypatch.delenv("REDIS_URL")
    code, _, err = await _cli(capsys, "eval", "feedback")
    assert code == 2 and err.startswith("bothbot eval feedback: no REDIS_URL is set")


def test_export_rows_without_votes_are_not_rated() -> None:
    from bot.evaluation.feedback import rating_of

    assert rating_of(0, 0) is None
    assert rating_of(1, 1) == "up"
    assert rating_of(1, 2) == "down"
