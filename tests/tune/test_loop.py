"""The whole loop: knowledge base → training data → ``tune start --backend openai`` → follow → succeeded →
register → an admin switches one channel → its next answer comes from the new model, other channels are
unchanged, and another replica on the same Redis sees the profile on its next message."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.runtime import Runtime
from tests.conftest import IngestDocs
from tests.core.helpers import ask
from tests.fakes.finetune_server import FakeFineTuning
from tests.tune.conftest import API_KEY, RunCli
from tests.tune.test_jobs_openai import job_id_in

BASE = "gpt-4o-mini-2024-07-18"
FACTS = [
    ("laptops.md", "To request a laptop, open a ticket in the IT portal under Hardware.",
     "How do I request a laptop?", "Open a ticket in the IT portal under Hardware."),
    ("delivery.md", "Laptops arrive within five working days through the courier desk.",
     "How long does laptop delivery take?", "Five working days."),
    ("holidays.md", "Every employee has twenty eight days of paid holiday a year.",
     "How many days of paid holiday do employees get?", "Twenty eight days a year."),
    ("carry.md", "Unused holiday days carry over until the end of March.",
     "Until when do unused holiday days carry over?", "Until the end of March."),
    ("vpn.md", "Install WireGuard and import the profile from the VPN page.",
     "How do I set up the VPN?", "Install WireGuard and import the profile from the VPN page."),
    ("endpoint.md", "The VPN endpoint is vpn.example.com on port 51820.",
     "What is the VPN endpoint?", "vpn.example.com on port 51820."),
    ("parking.md", "Parking permits are issued by reception on the ground floor.",
     "Who issues parking permits?", "Reception on the ground floor."),
    ("lunch.md", "The canteen serves lunch from noon until two in the afternoon.",
     "When is lunch served?", "From noon until two in the afternoon."),
    ("badges.md", "Lost badges are replaced by security within one day for a fee of ten euros.",
     "What does a lost badge cost?", "Ten euros, replaced within one day."),
    ("printers.md", "Printers are on every floor next to the kitchen; scan your badge to print.",
     "Where are the printers?", "On every floor next to the kitchen."),
    ("expenses.md", "Expenses are claimed in the finance app within thirty days of the purchase.",
     "How do I claim expenses?", "In the finance app within thirty days."),
    ("wifi.md", "The guest wifi password changes every Monday and is shown at reception.",
     "Where do guests find the wifi password?", "At reception; it changes every Monday."),
]


@pytest.fixture
def knowledge(ingest_docs: IngestDocs) -> Path:
    return ingest_docs({name: f"# {name[:-3].title()}\n\n{fact}\n" for name, fact, _q, _a in FACTS})


@pytest.fixture
async def start_replica(make_settings: Any, finetune_server: FakeFineTuning, knowledge: Path, tmp_path: Path) -> Any:
    """Two replicas on one Redis prefix; the second has its own (empty) embedded store, as on another host."""
    started: list[Runtime] = []

    async def start(data_dir: Path) -> Runtime:
        runtime = await Runtime.start(make_settings(
            data_dir=data_dir, openai_base_url=finetune_server.base_url, openai_api_key=API_KEY,
            profiles={"base": {"model": "base-model"}}, default_profile="base", model_max_retries=0,
        ))
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        await runtime.aclose()


@pytest.mark.usefixtures("tune_env")
async def test_train_register_switch_and_every_replica_sees_it(
    run_cli: RunCli, start_replica: Any, finetune_server: FakeFineTuning, tmp_path: Path, knowledge: Path
) -> None:
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": a}) + "\n" for _n, _f, q, a in FACTS))
    data = tmp_path / "training"
    built = await run_cli("tune", "dataset", "--qa", str(qa), "--out", str(data), "--target-model", BASE)
    assert built.code == 0, built.err  # before the bot starts: one process owns the embedded store

    first: Runtime = await start_replica(knowledge)
    second: Runtime = await start_replica(tmp_path / "replica-b")
    await ask(first.engine, "How do I request a laptop?", channel="C1")
    await ask(second.engine, "How do I request a laptop?", channel="C9")  # the replica is up before training
    assert [r.body["model"] for r in finetune_server.chat_requests] == ["base-model", "base-model"]

    started = await run_cli("tune", "start", "--backend", "openai", "--data", str(data), "--model", BASE,
                            "--suffix", "support", "--epochs", "2", "--register", "support-v1")
    assert started.code == 0, started.err
    job_id = job_id_in(started.out)
    model = finetune_server.only_job.fine_tuned_model
    assert model is not None and model.startswith(f"ft:{BASE}:")
    assert "status: succeeded" in started.out
    assert "registered profile support-v1" in started.out
    assert finetune_server.files[finetune_server.only_job.training_file]["content"] == (
        data / "train.jsonl").read_bytes()

    switched = await ask(first.engine, "model support-v1", channel="C1", command=True, is_admin=True, user="UADMIN")
    assert switched.kind == "command", switched.text
    answer = await ask(first.engine, "How many days of paid holiday do employees get?", channel="C1")
    assert finetune_server.chat_requests[-1].body["model"] == model
    assert (answer.profile, answer.model) == ("support-v1", model)
    sent = json.dumps(finetune_server.chat_requests[-1].body["messages"])
    assert "twenty eight days" in sent  # retrieval still feeds the fine-tuned model

    await ask(first.engine, "How do I set up the VPN?", channel="C2")
    assert finetune_server.chat_requests[-1].body["model"] == "base-model"

    listed = await ask(second.engine, "models", command=True, channel="C9")
    assert "support-v1" in listed.text and model in listed.text and f"from job {job_id}" in listed.text
    await ask(second.engine, "When is lunch served?", channel="C1")  # the channel switched on the first replica
    assert finetune_server.chat_requests[-1].body["model"] == model
    await ask(second.engine, "When is lunch served?", channel="C9")
    assert finetune_server.chat_requests[-1].body["model"] == "base-model"
