"""``bothbot tune register|unregister`` and ``start --register``: profiles in Redis, vLLM adapters, clashes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bot.model_client import ModelRouter
from bot.profiles import ProfileRegistry, RegisteredProfile
from bot.settings import Settings
from bot.state import StateStore, connect_redis
from tests.fakes.finetune_server import FakeFineTuning
from tests.fakes.vllm_server import FakeVLLM
from tests.tune.conftest import RunCli
from tests.tune.test_jobs_openai import BASE, job_id_in

pytestmark = pytest.mark.usefixtures("tune_env")


@pytest.fixture
async def vllm_server() -> AsyncIterator[FakeVLLM]:
    async with FakeVLLM(reply_text="From the adapter.") as fake:
        yield fake


@pytest.fixture
def adapter_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter_config.json").write_text('{"r": 8, "peft_type": "LORA"}', encoding="utf-8")
    return folder


async def registered(make_settings: Any) -> dict[str, RegisteredProfile]:
    settings: Settings = make_settings()
    redis, _ = connect_redis(settings.redis_url)
    router = ModelRouter({}, timeout_seconds=5, max_retries=0)
    try:
        return await ProfileRegistry(settings, StateStore(redis, settings.redis_prefix), router).registered()
    finally:
        await router.aclose()
        await redis.aclose()


async def trained_job(run_cli: RunCli, training_dir: Path, *extra: str) -> str:
    result = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE,
                           "--suffix", "support", *extra)
    assert result.code == 0, result.err
    return job_id_in(result.out)


async def test_register_a_job_result(
    run_cli: RunCli, training_dir: Path, finetune_server: FakeFineTuning, make_settings: Any
) -> None:
    job_id = await trained_job(run_cli, training_dir)
    result = await run_cli("tune", "register", "support-v1", "--job", job_id)
    assert result.code == 0, result.err
    model = finetune_server.only_job.fine_tuned_model
    assert model is not None
    assert f"registered profile support-v1: model {model} at {finetune_server.base_url}" in result.out
    assert "stops answering on 2027-01-14" in result.out
    entry = (await registered(make_settings))["support-v1"]
    assert entry.profile.model == model
    assert entry.profile.base_url == finetune_server.base_url
    assert entry.profile.retires_on == date(2027, 1, 14)
    assert entry.profile.api_key is None  # keys never go to Redis
    assert (entry.origin.job, entry.origin.backend, entry.origin.base_model) == (job_id, "openai", BASE)
    assert entry.origin.registered_by is not None and entry.origin.registered_by.startswith("cli")

    again = await run_cli("tune", "register", "support-v1", "--model", "other")
    assert again.code == 2 and "a profile `support-v1` is already registered" in again.err


async def test_start_with_register_registers_once(
    run_cli: RunCli, training_dir: Path, make_settings: Any
) -> None:
    job_id = await trained_job(run_cli, training_dir, "--register", "support-v2")
    assert (await registered(make_settings))["support-v2"].origin.job == job_id
    followed = await run_cli("tune", "follow", job_id)  # a second follower sees the same success
    assert followed.code == 0, followed.err
    assert "already registered profile support-v2" in followed.out


async def test_register_any_model_id(run_cli: RunCli, make_settings: Any) -> None:
    result = await run_cli("tune", "register", "llama", "--model", "meta-llama/Llama-3.1-8B-Instruct",
                           "--base-url", "http://127.0.0.1:9/v1", "--api-key-env", "LLAMA_KEY")
    assert result.code == 0, result.err
    entry = (await registered(make_settings))["llama"]
    assert (entry.profile.model, entry.profile.base_url, entry.profile.api_key_env) == (
        "meta-llama/Llama-3.1-8B-Instruct", "http://127.0.0.1:9/v1", "LLAMA_KEY")
    assert entry.profile.retires_on is None and entry.origin.job is None
    ft = await run_cli("tune", "register", "old-ft", "--model", "ft:gpt-4.1-mini-2025-04-14:acme::abc")
    assert ft.code == 0 and (await registered(make_settings))["old-ft"].profile.retires_on == date(2027, 1, 14)
    nothing = await run_cli("tune", "register", "empty")
    assert nothing.code == 2 and "--job JOB, --model ID, or --load-adapter PATH" in nothing.err
    bad = await run_cli("tune", "register", "no spaces", "--model", "x")
    assert bad.code == 2 and "not a usable profile name" in bad.err


async def test_a_name_clash_with_toml_is_refused(
    run_cli: RunCli, training_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    finetune_server: FakeFineTuning, make_settings: Any,
) -> None:
    toml = tmp_path / "bothbot.toml"
    toml.write_text('[profiles.base]\nmodel = "base-model"\n', encoding="utf-8")
    monkeypatch.setenv("BOTHBOT_CONFIG", str(toml))
    result = await run_cli("tune", "register", "base", "--model", "x")
    assert result.code == 2
    assert "`base` is already a profile in bothbot.toml; choose another name (TOML profiles stay)." in result.err
    start = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE,
                          "--register", "base")
    assert start.code == 2 and "already a profile in bothbot.toml" in start.err
    assert finetune_server.ft_requests == []  # refused before anything was uploaded
    assert await registered(make_settings) == {}


async def test_an_unfinished_job_cannot_be_registered(
    run_cli: RunCli, training_dir: Path, finetune_server: FakeFineTuning
) -> None:
    finetune_server.auto_advance = False
    started = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE,
                            "--detach")
    job_id = job_id_in(started.out)
    result = await run_cli("tune", "register", "early", "--job", job_id)
    assert result.code == 2
    assert f"job {job_id} is validating_files; only a succeeded job has a model to register" in result.err


async def test_unregister_is_refused_while_in_use_and_force_moves_channels_back(
    run_cli: RunCli, make_settings: Any
) -> None:
    assert (await run_cli("tune", "register", "tuned", "--model", "ft:base:acme::x")).code == 0
    settings: Settings = make_settings()
    redis, _ = connect_redis(settings.redis_url)
    state = StateStore(redis, settings.redis_prefix)
    try:
        await state.set_channel_value("slack:T1:C1", "profile", "tuned")
        refused = await run_cli("tune", "unregister", "tuned")
        assert refused.code == 2
        assert "`tuned` is in use by 1 channel(s): slack:T1:C1" in refused.err and "--force" in refused.err
        assert "tuned" in await registered(make_settings)

        forced = await run_cli("tune", "unregister", "tuned", "--force")
        assert forced.code == 0, forced.err
        assert "moved back to their default profile (audited): slack:T1:C1" in forced.out
        assert "tuned" not in await registered(make_settings)
        assert await state.channel_overrides("slack:T1:C1") == {}
        audit = await state.recent_audit(5)
        assert [(a.channel, a.setting, a.before, a.after) for a in audit] == [
            ("slack:T1:C1", "profile", "tuned", "(default)")
        ]
        assert audit[0].who.startswith("cli")
    finally:
        await redis.aclose()
    gone = await run_cli("tune", "unregister", "tuned")
    assert gone.code == 2 and "no registered profile `tuned`" in gone.err


async def test_load_adapter_loads_checks_and_registers(
    run_cli: RunCli, vllm_server: FakeVLLM, adapter_dir: Path, make_settings: Any
) -> None:
    result = await run_cli("tune", "register", "support-lora", "--load-adapter", str(adapter_dir),
                           "--base-url", vllm_server.base_url)
    assert result.code == 0, result.err
    assert "(adapter loaded)" in result.out
    assert vllm_server.adapter_requests == [
        ("/v1/load_lora_adapter", {"lora_name": "support-lora", "lora_path": str(adapter_dir)})
    ]
    assert vllm_server.adapters == {"support-lora": str(adapter_dir)}
    entry = (await registered(make_settings))["support-lora"]
    assert (entry.profile.model, entry.profile.base_url) == ("support-lora", vllm_server.base_url)
    assert entry.origin.adapter_path == str(adapter_dir)

    router = ModelRouter({}, timeout_seconds=5, max_retries=0)
    settings: Settings = make_settings()
    redis, _ = connect_redis(settings.redis_url)
    try:  # the registered profile really calls the adapter by its name
        await ProfileRegistry(settings, StateStore(redis, settings.redis_prefix), router).refresh()
        client = router.client("support-lora")
        assert client is not None
        text = "".join([p async for p in client.stream([{"role": "user", "content": "hi"}]) if isinstance(p, str)])
        assert text == "From the adapter."
        assert vllm_server.chat_requests[-1].body["model"] == "support-lora"
    finally:
        await router.aclose()
        await redis.aclose()


async def test_a_refused_adapter_leaves_no_profile_behind(
    run_cli: RunCli, vllm_server: FakeVLLM, tmp_path: Path, adapter_dir: Path, make_settings: Any
) -> None:
    missing = tmp_path / "not-an-adapter"
    result = await run_cli("tune", "register", "broken", "--load-adapter", str(missing),
                           "--base-url", vllm_server.base_url)
    assert result.code == 2
    assert f"refused to load the adapter `broken` from {missing} (400)" in result.err
    assert f"No adapter found for {missing}" in result.err  # vLLM's own message
    assert await registered(make_settings) == {}
    assert vllm_server.adapters == {}

    vllm_server.hide_loaded = True  # accepts the load but does not serve it
    unlisted = await run_cli("tune", "register", "ghost", "--load-adapter", str(adapter_dir),
                             "--base-url", vllm_server.base_url)
    assert unlisted.code == 2 and "does not list it in /models; no profile was registered" in unlisted.err
    assert ("/v1/unload_lora_adapter", {"lora_name": "ghost"}) in vllm_server.adapter_requests
    assert await registered(make_settings) == {}
