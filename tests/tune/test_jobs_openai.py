"""``bothbot tune start|status|follow|cancel|list`` on the ``openai`` backend, against the fine-tuning fake."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from bot.settings import Settings
from bot.state import StateStore, connect_redis
from bot.tune.backends.openai import OpenAIBackend, date_notice
from bot.tune.jobs import BackendError, JobRecord, JobStore, new_job_id
from tests.conftest import TEST_REDIS_URL
from tests.fakes.finetune_server import FakeFineTuning, chat_examples
from tests.processes import free_port
from tests.redis_server import start_redis_server, stop_redis_server
from tests.tune.conftest import API_KEY, RunCli

BASE = "gpt-4o-mini-2024-07-18"


def job_id_in(out: str) -> str:
    for line in out.splitlines():
        if line.startswith("started training job "):
            return line.split()[3]
    raise AssertionError(f"no job id in: {out}")


async def stored_events(prefix: str, job_id: str) -> tuple[dict[str, Any], list[str]]:
    redis, _ = connect_redis(os.environ.get("REDIS_URL", TEST_REDIS_URL))  # tune_env's (single Redis or cluster)
    try:
        store = JobStore(StateStore(redis, prefix))
        job = await store.get(job_id)
        return job.model_dump(), [event.message for _id, event in await store.events(job_id)]
    finally:
        await redis.aclose()


@pytest.mark.usefixtures("tune_env")
async def test_start_uploads_creates_and_follows_to_success(
    run_cli: RunCli, finetune_server: FakeFineTuning, training_dir: Path, redis_prefix: str
) -> None:
    (training_dir / "validation.jsonl").write_text(chat_examples(3), encoding="utf-8")
    result = await run_cli(
        "tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE,
        "--suffix", "support", "--epochs", "2", "--learning-rate-multiplier", "0.5", "--seed", "7",
    )
    assert result.code == 0, result.err
    job_id = job_id_in(result.out)
    assert f"bothbot tune follow {job_id}" in result.out
    assert "OpenAI stops accepting new fine-tuning jobs on 2027-01-06" in result.out
    remote = finetune_server.only_job
    assert remote.request["method"] == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 2, "learning_rate_multiplier": 0.5}},
    }
    assert (remote.request["suffix"], remote.request["seed"], remote.model) == ("support", 7, BASE)
    assert finetune_server.files[remote.training_file]["content"] == (training_dir / "train.jsonl").read_bytes()
    assert remote.validation_file in finetune_server.files
    model = f"ft:{BASE}:fake-org:support:{remote.id[-8:]}"
    assert f"fine-tuned model: {model}" in result.out
    assert "Step 2/2: training loss=0.75" in result.out
    assert f"register it with: bothbot tune register NAME --job {job_id}" in result.out

    job, messages = await stored_events(redis_prefix, job_id)
    assert (job["status"], job["fine_tuned_model"], job["trained_tokens"]) == ("succeeded", model, 2000)
    assert job["progress"]["step"] == 2 and job["progress"]["total_steps"] == 2
    provider_messages = [e["message"] for e in remote.events]
    assert [m for m in messages if m in provider_messages] == provider_messages  # each once, in order
    assert sum("checkpoint" in m and ":ckpt-step-" in m for m in messages) == 2

    status = await run_cli("tune", "status", job_id)
    assert status.code == 0
    assert "succeeded" in status.out and model in status.out and "step 2/2" in status.out
    listing = await run_cli("tune", "list")
    assert job_id in listing.out and model in listing.out


@pytest.mark.usefixtures("tune_env")
async def test_a_provider_without_events_or_checkpoints_is_followed_by_status(
    run_cli: RunCli, finetune_server: FakeFineTuning, training_dir: Path, redis_prefix: str
) -> None:
    finetune_server.lists_events = False
    result = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE)
    assert result.code == 0, result.err
    job, _messages = await stored_events(redis_prefix, job_id_in(result.out))
    assert job["status"] == "succeeded" and job["fine_tuned_model"].startswith(f"ft:{BASE}:")
    assert sorted(job["extra"]["unsupported"]) == ["checkpoints", "events"]
    asked = [path for method, path in finetune_server.ft_requests if path.endswith(("/events", "/checkpoints"))]
    assert len(asked) == 2  # each asked once, then remembered as missing


@pytest.mark.usefixtures("tune_env")
async def test_invalid_training_data_is_refused_before_any_upload(
    run_cli: RunCli, finetune_server: FakeFineTuning, training_dir: Path
) -> None:
    (training_dir / "train.jsonl").write_text(chat_examples(3) + '{"messages": [{"role": "user"}]}\n')
    result = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE)
    assert result.code == 2
    assert result.err.startswith("bothbot tune start: ")
    assert "line 4" in result.err and "at least 10" in result.err and "nothing was uploaded" in result.err
    missing = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir / "nope"),
                            "--model", BASE)
    assert missing.code == 2 and "train.jsonl not found" in missing.err
    assert finetune_server.ft_requests == []


@pytest.mark.usefixtures("tune_env")
async def test_local_only_options_are_refused_by_the_openai_backend(
    run_cli: RunCli, finetune_server: FakeFineTuning, training_dir: Path
) -> None:
    result = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE,
                           "--lora-r", "8", "--merge")
    assert result.code == 2
    assert "--lora-r, --merge only apply to --backend local" in result.err
    longer = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE,
                           "--max-length", "512")
    assert longer.code == 2 and "--max-length only applies to --backend local" in longer.err
    assert finetune_server.ft_requests == []


@pytest.mark.usefixtures("tune_env")
async def test_unknown_job_is_a_clear_error(run_cli: RunCli) -> None:
    for command in ("status", "follow", "cancel"):
        result = await run_cli("tune", command, "tj_doesnotexist")
        assert result.code == 2
        assert result.err.strip() == (
            f"bothbot tune {command}: no training job `tj_doesnotexist`; `bothbot tune list` shows the known jobs"
        )
    unregistered = await run_cli("tune", "register", "x", "--job", "tj_doesnotexist")
    assert unregistered.code == 2 and "no training job" in unregistered.err


@pytest.mark.usefixtures("tune_env")
async def test_provider_401_shows_the_providers_error(
    run_cli: RunCli, finetune_server: FakeFineTuning, training_dir: Path, monkeypatch: pytest.MonkeyPatch,
    redis_prefix: str,
) -> None:
    wrong_key = "sk-wrong-secret-key-987654321"
    monkeypatch.setenv("OPENAI_API_KEY", wrong_key)
    result = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE)
    assert result.code == 2
    assert "answered 401 while uploading train.jsonl: [invalid_api_key] Incorrect API key provided" in result.err
    assert wrong_key not in result.err + result.out
    assert "Traceback" not in result.err
    listing = await run_cli("tune", "list")
    assert "failed" in listing.out and "invalid_api_key" in listing.out


@pytest.mark.usefixtures("tune_env")
async def test_provider_500_shows_the_providers_error(
    run_cli: RunCli, finetune_server: FakeFineTuning, training_dir: Path
) -> None:
    finetune_server.fail_next_ft(500)
    result = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE)
    assert result.code == 2
    assert "answered 500" in result.err
    assert "The server had an error while processing your request. Sorry about that!" in result.err


@pytest.mark.usefixtures("tune_env")
async def test_a_failed_job_shows_the_error_as_given(
    run_cli: RunCli, finetune_server: FakeFineTuning, training_dir: Path
) -> None:
    finetune_server.fail_jobs_with = {
        "code": "invalid_training_file", "param": "training_file",
        "message": "The job failed due to an invalid training file. Line 3: too many tokens.",
    }
    result = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE)
    assert result.code == 2
    given = ("[invalid_training_file] The job failed due to an invalid training file. Line 3: too many tokens. "
             "(param: training_file)")
    job_id = job_id_in(result.out)
    assert f"bothbot tune start: job {job_id} failed: {given}" in result.err
    status = await run_cli("tune", "status", job_id)
    assert "failed" in status.out and given in status.out


@pytest.mark.usefixtures("tune_env")
async def test_cancel_asks_the_provider_and_records_it(
    run_cli: RunCli, finetune_server: FakeFineTuning, training_dir: Path, redis_prefix: str
) -> None:
    finetune_server.auto_advance = False
    started = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE,
                            "--detach")
    assert started.code == 0, started.err
    job_id = job_id_in(started.out)
    await finetune_server.advance(stages=2)  # running
    cancelled = await run_cli("tune", "cancel", job_id)
    assert cancelled.code == 0, cancelled.err
    assert f"cancelled job {job_id}" in cancelled.out
    assert finetune_server.only_job.status == "cancelled"
    job, messages = await stored_events(redis_prefix, job_id)
    assert job["status"] == "cancelled"
    assert "cancel requested; 127.0.0.1 says the job is cancelled" in messages
    again = await run_cli("tune", "cancel", job_id)
    assert again.code == 2 and "already cancelled; nothing to cancel" in again.err
    followed = await run_cli("tune", "follow", job_id)
    assert followed.code == 2 and f"job {job_id} was cancelled" in followed.err


async def test_openai_date_refuses_on_api_openai_com_and_warns_elsewhere(
    make_settings: Any, redis_cleanup: Any
) -> None:
    refused, why = date_notice(None, date(2027, 1, 6))
    assert refused and "stopped accepting new fine-tuning jobs on 2027-01-06" in why
    refused, why = date_notice("https://api.openai.com/v1", date(2027, 1, 5))
    assert not refused
    assert why == ("OpenAI stops accepting new fine-tuning jobs on 2027-01-06; fine-tunes of GPT-4o/4.1-family "
                   "models stop answering on 2027-01-14.")
    refused, why = date_notice("https://api.together.xyz/v1", date(2027, 3, 1))
    assert not refused and "applies to api.openai.com; this job goes to api.together.xyz" in why

    settings: Settings = make_settings(openai_api_key="sk-test-1234567890")  # default endpoint: api.openai.com
    redis, _ = connect_redis(settings.redis_url)
    store = JobStore(StateStore(redis, settings.redis_prefix))
    backend = OpenAIBackend(settings, today=date(2027, 1, 6))
    job = JobRecord(id=new_job_id(), backend="openai", base_model=BASE, data_dir="/nonexistent")
    try:
        with pytest.raises(BackendError, match=r"stopped accepting new fine-tuning jobs on 2027-01-06"):
            await backend.start(job, store)  # refused before any file is read or any request is sent
    finally:
        await backend.aclose()
        await redis.aclose()


@pytest.mark.usefixtures("tune_env")
async def test_ctrl_c_stops_following_not_the_job(
    run_cli: RunCli, finetune_server: FakeFineTuning, training_dir: Path
) -> None:
    finetune_server.auto_advance = False
    started = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE,
                            "--detach")
    job_id = job_id_in(started.out)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "tune", "follow", job_id,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=dict(os.environ),
    )
    try:
        assert proc.stdout is not None and proc.stderr is not None
        seen = []
        while not seen or seen[-1] != "status: validating_files":
            line = await asyncio.wait_for(proc.stdout.readline(), 60)
            assert line, f"follow ended early: {seen} {await proc.stderr.read()!r}"
            seen.append(line.decode().strip())
        proc.send_signal(signal.SIGINT)
        _out, err = await asyncio.wait_for(proc.communicate(), 60)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 130
    assert f"the job goes on. Follow it again with: bothbot tune follow {job_id}" in err.decode()
    assert "Traceback" not in err.decode()
    assert finetune_server.only_job.status == "validating_files"
    assert not any(path.endswith("/cancel") for _method, path in finetune_server.ft_requests)


class Lines:
    """A text stream for :class:`Display` that tests can wait on: ``await lines.wait_for("text")``."""

    def __init__(self) -> None:
        self.text = ""
        self._changed = asyncio.Event()

    def write(self, data: str) -> int:
        self.text += data
        self._changed.set()
        return len(data)

    def flush(self) -> None:
        pass

    async def wait_for(self, needle: str, timeout: float = 60.0) -> None:
        async with asyncio.timeout(timeout):
            while needle not in self.text:
                self._changed.clear()
                await self._changed.wait()


async def test_redis_restarting_while_following_loses_nothing(
    make_settings: Any, finetune_server: FakeFineTuning, training_dir: Path, tmp_path: Path
) -> None:
    from bot.tune.follow import Display, follow

    folder = tmp_path / "redis"
    folder.mkdir()
    port = free_port()
    server = await start_redis_server(folder, port)
    settings: Settings = make_settings(
        redis_url=f"redis://127.0.0.1:{port}/0", openai_base_url=finetune_server.base_url,
        openai_api_key=API_KEY, model_max_retries=0,
    )
    redis, _ = connect_redis(settings.redis_url)
    store = JobStore(StateStore(redis, settings.redis_prefix))
    backend = OpenAIBackend(settings)
    finetune_server.auto_advance = False
    lines = Lines()
    try:
        job = await store.create(JobRecord(id=new_job_id(), backend="openai", base_model=BASE,
                                           data_dir=str(training_dir)))
        job = await backend.start(job, store)
        following = asyncio.create_task(
            follow(store, backend, job.id, Display(lines, tty=False), poll_seconds=0.01)
        )
        await finetune_server.advance()
        await lines.wait_for("status: queued")

        await stop_redis_server(server, port, save=True)
        await lines.wait_for("lost the connection to Redis")
        assert not following.done()
        await finetune_server.finish()  # the job goes on while Redis is away
        server = await start_redis_server(folder, port)

        finished = await asyncio.wait_for(following, 120)
        assert finished.status == "succeeded"
        assert "connection back; carrying on after event" in lines.text
        assert "status: succeeded" in lines.text

        stored = await store.get(job.id)
        assert stored.status == "succeeded"
        assert stored.fine_tuned_model == finetune_server.only_job.fine_tuned_model
        assert stored.extra["training_file"] == finetune_server.only_job.training_file  # from before the restart
        messages = [event.message for _id, event in await store.events(job.id)]
        provider = [event["message"] for event in finetune_server.only_job.events]
        assert [m for m in messages if m in provider] == provider  # every provider event once, in order
        assert messages[0].startswith("OpenAI stops accepting new fine-tuning jobs")  # written before the restart
        shown = [line.split("  ", 1)[1].removeprefix("! ").removeprefix("✗ ")
                 for line in lines.text.splitlines() if line[:2].isdigit()]
        assert shown == messages  # printed exactly what is stored: nothing skipped, nothing twice
    finally:
        await backend.aclose()
        await redis.aclose()
        if server.returncode is None:
            await stop_redis_server(server, port, save=False)


async def test_two_followers_show_the_same_events_and_store_each_once(
    make_settings: Any, finetune_server: FakeFineTuning, training_dir: Path
) -> None:
    from io import StringIO

    from bot.tune.follow import Display, follow

    settings: Settings = make_settings(openai_base_url=finetune_server.base_url, openai_api_key=API_KEY,
                                       model_max_retries=0)
    redis, _ = connect_redis(settings.redis_url)
    store = JobStore(StateStore(redis, settings.redis_prefix))
    backend = OpenAIBackend(settings)
    try:
        job = await store.create(JobRecord(id=new_job_id(), backend="openai", base_model=BASE,
                                           data_dir=str(training_dir), epochs=3))
        job = await backend.start(job, store)
        plain, bar = Lines(), StringIO()
        results = await asyncio.wait_for(asyncio.gather(
            follow(store, backend, job.id, Display(plain, tty=False), poll_seconds=0.01),
            follow(store, backend, job.id, Display(bar, tty=True), poll_seconds=0.01),
        ), 60)
        assert [r.status for r in results] == ["succeeded", "succeeded"]
        messages = [event.message for _id, event in await store.events(job.id)]
        assert len(messages) == len(set(messages))  # nothing appended twice by the two followers
        provider = [event["message"] for event in finetune_server.only_job.events]
        assert [m for m in messages if m in provider] == provider
        assert "3/3" in bar.getvalue() and "loss=0.5000" in bar.getvalue()  # the progress bar on a terminal
        assert "Step 3/3: training loss=0.5" in bar.getvalue()  # events are printed above the bar
        assert "3/3 [" not in plain.text  # no bar when the output is not a terminal
    finally:
        await backend.aclose()
        await redis.aclose()


@pytest.mark.usefixtures("tune_env")
async def test_without_redis_only_a_foreground_start_runs(
    run_cli: RunCli, finetune_server: FakeFineTuning, training_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL")
    result = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE)
    assert result.code == 0, result.err
    assert "kept in this process only" in result.err
    assert f"fine-tuned model: {finetune_server.only_job.fine_tuned_model}" in result.out
    detached = await run_cli("tune", "start", "--backend", "openai", "--data", str(training_dir), "--model", BASE,
                             "--detach")
    assert detached.code == 2 and "--detach and --register need REDIS_URL" in detached.err
    status = await run_cli("tune", "status", job_id_in(result.out))
    assert status.code == 2 and "set REDIS_URL" in status.err
