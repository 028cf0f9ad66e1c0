"""Live experiments: arm assignment, routing to each arm's model and retrieval, per-arm feedback, admin
gating, audit, and putting the channel back when one stops."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from bot.evaluation.feedback import tally_feedback
from bot.experiments import Arm, Experiment, ExperimentError, Experiments, arm_for_turn, assign, parse_arms
from bot.profiles import ProfileError, ProfileOrigin
from bot.prompts import CLOSED_BOOK_NOTE
from bot.runtime import Runtime
from bot.settings import ModelProfile
from bot.state import Turn
from tests.conftest import PROFILES
from tests.core.helpers import ask
from tests.fakes.openai_server import FakeOpenAI

CHANNEL = "slack:T1:C1"
MODELS = {name: spec["model"] for name, spec in PROFILES.items()}


def _experiment(experiment_id: str, *labels: str) -> Experiment:
    return Experiment(
        id=experiment_id,
        channel=CHANNEL,
        arms=tuple(Arm.parse(label) for label in labels),
        started_at=0.0,
        started_by="test",
        before_profile=None,
    )


@pytest.mark.parametrize("arms", [2, 3])
def test_assignment_is_balanced_and_deterministic(arms: int) -> None:
    keys = [f"{CHANNEL}:thread-{i}" for i in range(1000)]
    counts = Counter(assign("seed-1", key, arms) for key in keys)
    expected = 1000 / arms
    # Binomial sd is about 15 for 1000 keys; 4 sd either side, and the seed makes it the same every run.
    assert set(counts) == set(range(arms))
    assert all(abs(n - expected) <= 60 for n in counts.values()), counts
    assert [assign("seed-1", key, arms) for key in keys] == [assign("seed-1", key, arms) for key in keys]
    other_seed = [assign("seed-2", key, arms) for key in keys]
    assert other_seed != [assign("seed-1", key, arms) for key in keys]  # the experiment id is the seed


def test_a_thread_keeps_its_arm_and_older_threads_stay_out() -> None:
    experiment = _experiment("exp1", "tuned", "base:norag")
    key = f"{CHANNEL}:thread-7"
    first = arm_for_turn(experiment, key, [])
    assert first is not None
    in_experiment = [Turn("user", "q"), Turn("assistant", "a", experiment="exp1")]
    assert arm_for_turn(experiment, key, in_experiment) == first
    before = [Turn("user", "q"), Turn("assistant", "a")]
    assert arm_for_turn(experiment, key, before) is None
    assert arm_for_turn(experiment, key, [Turn("user", "q"), Turn("assistant", "a", experiment="old")]) is None
    assert arm_for_turn(None, key, []) is None


def test_arms_are_parsed_and_bad_ones_refused() -> None:
    arms = parse_arms(["tuned", "base:norag,base:rag"], MODELS)
    assert [(a.profile, a.rag, a.label) for a in arms] == [
        ("tuned", None, "tuned"),
        ("base", False, "base:norag"),
        ("base", True, "base:rag"),
    ]
    with pytest.raises(ExperimentError, match="at least two arms"):
        parse_arms(["tuned"], MODELS)
    with pytest.raises(ExperimentError, match="No profile `nosuch`"):
        parse_arms(["tuned", "nosuch"], MODELS)
    with pytest.raises(ExperimentError, match="given twice"):
        parse_arms(["tuned", "tuned"], MODELS)
    with pytest.raises(ExperimentError, match="not an arm"):
        parse_arms(["tuned", "base:maybe"], MODELS)


async def _running(runtime: Runtime, channel: str = CHANNEL) -> Experiment:
    experiment = await Experiments(runtime.settings, runtime.state).running(channel)
    assert experiment is not None
    return experiment


def _threads_per_arm(experiment: Experiment, per_arm: int) -> dict[str, list[str]]:
    """Thread ids whose conversations fall in each arm (found by the same hash the engine uses)."""
    found: dict[str, list[str]] = {arm.label: [] for arm in experiment.arms}
    i = 0
    while any(len(threads) < per_arm for threads in found.values()):
        thread = f"th-{i}"
        label = experiment.arm_for(f"{CHANNEL}:{thread}").label
        if len(found[label]) < per_arm:
            found[label].append(thread)
        i += 1
    return found


async def test_each_arm_answers_with_its_model_and_retrieval(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    engine = runtime.engine
    openai_server.reply_text = "Open a ticket in the IT portal [1]."
    older = await ask(engine, "How do I request a laptop?", thread="before")  # begun before the experiment

    started = await ask(engine, "experiment start tuned base:norag", command=True, is_admin=True, user="UADMIN")
    assert started.kind == "command" and "Started experiment" in started.text
    experiment = await _running(runtime)
    assert [a.label for a in experiment.arms] == ["tuned", "base:norag"]

    for label, threads in _threads_per_arm(experiment, 2).items():
        for thread in threads:
            for question in ("How do I request a laptop?", "When are requested laptops delivered?"):  # sticky
                final = await ask(engine, question, thread=thread)
                request = openai_server.chat_requests[-1].body
                trace = await runtime.state.load_trace(final.trace_id)
                assert trace is not None
                assert (trace["arm"], trace["experiment"]) == (label, experiment.id)
                if label == "tuned":
                    assert request["model"] == MODELS["tuned"]
                    assert "Sources:" in request["messages"][0]["content"]
                    assert trace["rag"] is True and trace["citations"]
                else:
                    assert request["model"] == MODELS["base"]
                    assert CLOSED_BOOK_NOTE in request["messages"][0]["content"]
                    assert "IT portal" not in request["messages"][0]["content"]
                    assert trace["rag"] is False and trace["context"] == [] and trace["citations"] == []

    follow_up = await ask(engine, "Thanks, and where is the portal?", thread="before")
    assert openai_server.chat_requests[-1].body["model"] == MODELS["base"]
    trace = await runtime.state.load_trace(follow_up.trace_id)
    assert trace is not None and trace["arm"] is None and trace["profile"] == "base"
    assert (await runtime.state.load_trace(older.trace_id) or {})["arm"] is None

    status = await ask(engine, "status", command=True)
    assert "experiment: tuned vs base:norag" in status.text


async def test_feedback_is_counted_per_arm(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    engine = runtime.engine
    await ask(engine, "experiment start tuned base", command=True, is_admin=True)
    experiment = await _running(runtime)
    threads = _threads_per_arm(experiment, 3)
    votes = {"tuned": ["up", "up", "down"], "base": ["down", "down", None]}
    for label, thread_ids in threads.items():
        for thread, vote in zip(thread_ids, votes[label], strict=True):
            final = await ask(engine, "How many holiday days do I have?", thread=thread)
            if vote:
                assert await engine.record_feedback(final.trace_id, user="U1", value=vote, platform="slack")
    # A second user agreeing, and a changed vote, are per-answer majorities, not extra answers.
    last_tuned = await ask(engine, "How many holiday days do I have?", thread=threads["tuned"][0])
    await engine.record_feedback(last_tuned.trace_id, user="U1", value="down", platform="slack")
    await engine.record_feedback(last_tuned.trace_id, user="U2", value="down", platform="slack")
    await engine.record_feedback(last_tuned.trace_id, user="U1", value="up", platform="slack")  # changed mind

    tallies = {t.group: t for t in await tally_feedback(runtime.state, experiment=experiment)}
    assert list(tallies) == ["arm tuned", "arm base"]
    tuned, base = tallies["arm tuned"], tallies["arm base"]
    assert (tuned.answers, tuned.ups, tuned.downs) == (4, 3, 1)  # 1 up + 1 down on the last: a tie is up
    assert (base.answers, base.ups, base.downs) == (3, 0, 2)
    assert tuned.interval[0] < 0.75 < tuned.interval[1]

    shown = await ask(engine, "experiment", command=True)
    assert f"• tuned: {tuned.summary()}" in shown.text
    assert f"• base: {base.summary()}" in shown.text
    assert "👍 3, 👎 1, 👍 rate 75 %" in shown.text


async def test_only_admins_start_or_stop_and_refusals_are_clear(
    start_runtime: Any, model_settings: dict[str, Any]
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    engine = runtime.engine
    member = await ask(engine, "experiment start tuned base", command=True, is_admin=False)
    assert member.kind == "refused" and "Only an admin" in member.text
    assert await Experiments(runtime.settings, runtime.state).running(CHANNEL) is None

    for line, expected in [
        ("experiment start tuned", "at least two arms"),
        ("experiment start tuned nosuch", "No profile `nosuch`"),
        ("experiment pause", "Usage: experiment"),
        ("experiment stop", "No experiment is running"),
    ]:
        refused = await ask(engine, line, command=True, is_admin=True)
        assert refused.kind == "refused", line
        assert expected in refused.text, (line, refused.text)

    assert (await ask(engine, "experiment start tuned base", command=True, is_admin=True)).kind == "command"
    again = await ask(engine, "experiment start base tuned:norag", command=True, is_admin=True)
    assert again.kind == "refused" and "already running" in again.text
    member_stop = await ask(engine, "experiment stop", command=True, is_admin=False)
    assert member_stop.kind == "refused" and "Only an admin" in member_stop.text
    assert await Experiments(runtime.settings, runtime.state).running(CHANNEL) is not None


async def test_stop_puts_the_channel_back_and_everything_is_audited(
    start_runtime: Any, model_settings: dict[str, Any], openai_server: FakeOpenAI
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    engine = runtime.engine
    await ask(engine, "model tuned", command=True, is_admin=True, user="UADMIN")
    await ask(engine, "experiment start base base:norag", command=True, is_admin=True, user="UADMIN")
    switch = await ask(engine, "model base", command=True, is_admin=True)
    assert switch.kind == "refused" and "experiment stop" in switch.text
    await ask(engine, "How do I set up the VPN?", thread="new-thread")
    assert openai_server.chat_requests[-1].body["model"] == MODELS["base"]

    stopped = await ask(engine, "experiment stop", command=True, is_admin=True, user="UADMIN")
    assert stopped.kind == "command" and "back on tuned" in stopped.text
    await ask(engine, "How do I set up the VPN?", thread="new-thread")
    assert openai_server.chat_requests[-1].body["model"] == MODELS["tuned"]
    shown = await ask(engine, "experiment", command=True)
    assert "No experiment running" in shown.text and "• base:norag" in shown.text

    entries = [(e.setting, e.before, e.after) for e in await runtime.state.recent_audit(10, channel=CHANNEL)]
    experiment_id = stopped.text.split("`")[1]
    assert entries == [
        ("experiment", f"base vs base:norag (id {experiment_id})", ""),
        ("experiment", "", f"base vs base:norag (id {experiment_id})"),
        ("profile", "base", "tuned"),
    ]


async def test_unregistering_a_profile_in_an_experiment(
    start_runtime: Any, model_settings: dict[str, Any]
) -> None:
    runtime: Runtime = await start_runtime(**model_settings)
    registry = runtime.engine.profiles
    await registry.register("candidate", ModelProfile(model="ft:candidate"), ProfileOrigin())
    started = await ask(runtime.engine, "experiment start candidate base", command=True, is_admin=True)
    assert started.kind == "command", started.text
    with pytest.raises(ProfileError, match="experiment candidate vs base"):
        await registry.unregister("candidate")
    assert await registry.unregister("candidate", force=True, who="cli:ops") == []
    assert await Experiments(runtime.settings, runtime.state).running(CHANNEL) is None
    [entry] = [e for e in await runtime.state.recent_audit(5, channel=CHANNEL) if e.who == "cli:ops"]
    assert entry.setting == "experiment" and entry.after == ""


def test_a_stored_experiment_round_trips() -> None:
    experiment = _experiment("abc", "tuned", "base:rag", "base:norag")
    assert Experiment.from_json(experiment.to_json()) == experiment
    assert Experiment.from_json("not json") is None
    assert Experiment.from_json(None) is None
