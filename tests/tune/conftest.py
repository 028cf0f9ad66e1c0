"""Fixtures for the tune tests: the fine-tuning fake, a valid training folder, and ``bothbot`` run as a user would."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.cli import main as cli_main
from tests.fakes.finetune_server import FakeFineTuning, chat_examples

API_KEY = "sk-test-tune-key-0123456789"


@dataclass
class CliResult:
    code: int
    out: str
    err: str


RunCli = Callable[..., Awaitable[CliResult]]


@pytest.fixture
async def finetune_server() -> AsyncIterator[FakeFineTuning]:
    async with FakeFineTuning(api_key=API_KEY) as fake:
        yield fake


@pytest.fixture
def training_dir(tmp_path: Path) -> Path:
    """A folder with a valid 12-example train.jsonl."""
    folder = tmp_path / "training"
    folder.mkdir()
    (folder / "train.jsonl").write_text(chat_examples(12), encoding="utf-8")
    return folder


@pytest.fixture
def tune_env(
    monkeypatch: pytest.MonkeyPatch, redis_prefix: str, redis_cleanup: object, finetune_server: FakeFineTuning,
    tmp_path: Path, redis_url: str,
) -> pytest.MonkeyPatch:
    """The environment of an operator whose OPENAI_BASE_URL is the fake provider; test Redis, own prefix."""
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("BOTHBOT_REDIS_PREFIX", redis_prefix)
    monkeypatch.setenv("BOTHBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("OPENAI_BASE_URL", finetune_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", API_KEY)
    monkeypatch.setenv("BOTHBOT_MODEL_MAX_RETRIES", "0")
    monkeypatch.setenv("BOTHBOT_TUNE_POLL_SECONDS", "0.01")
    return monkeypatch


@pytest.fixture
def run_cli(capsys: pytest.CaptureFixture[str]) -> RunCli:
    """``bothbot ARGS…`` in a worker thread (it runs its own event loop), so the fakes keep serving."""

    async def run(*argv: str) -> CliResult:
        capsys.readouterr()
        code = await asyncio.to_thread(cli_main, list(argv))
        captured = capsys.readouterr()
        return CliResult(code, captured.out, captured.err)

    return run
