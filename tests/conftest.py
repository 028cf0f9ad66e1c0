"""Shared fixtures: isolated env and cwd, real Redis with a per-test key prefix, the OpenAI fake, the
model profiles every suite uses (one base model, one fine-tune)."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from hypothesis import settings as hypothesis_settings

from bot.cli import main as cli_main
from bot.settings import Settings, load_settings
from bot.state import connect_redis
from tests.fakes.openai_server import FakeOpenAI

TEST_REDIS_URL = os.environ.get("BOTHBOT_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")

# Property tests explore new examples on every local run; in CI they replay a fixed sequence, so a
# submission's result does not depend on the luck of the draw (a failure found locally is kept in .hypothesis/).
hypothesis_settings.register_profile("ci", derandomize=True, database=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

_ISOLATED_ENV_PREFIXES = ("BOTHBOT_", "OPENAI_", "SLACK_", "DISCORD_", "QDRANT_", "REDIS_")
_ISOLATED_ENV_NAMES = ("PORT",)

MakeSettings = Callable[..., Settings]

BASE_MODEL = "base-model"
TUNED_MODEL = "ft:base-model:acme:support:abc123"
PROFILES: Mapping[str, Mapping[str, str]] = {"base": {"model": BASE_MODEL}, "tuned": {"model": TUNED_MODEL}}
"""The model profiles of every suite: ``base`` (the default) and ``tuned`` (a fine-tune of it)."""


@pytest.fixture
def profiles() -> dict[str, dict[str, str]]:
    """A fresh copy of :data:`PROFILES`, for ``make_settings(profiles=...)``."""
    return {name: dict(values) for name, values in PROFILES.items()}


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No setting leaks in from the machine: clean env, and cwd in a fresh folder (no .env/toml)."""
    for name in list(os.environ):
        if name.startswith(_ISOLATED_ENV_PREFIXES) or name in _ISOLATED_ENV_NAMES:
            monkeypatch.delenv(name, raising=False)
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    monkeypatch.chdir(workdir)
    return workdir


@pytest.fixture
def redis_prefix() -> str:
    return f"bbtest:{uuid.uuid4().hex[:12]}"


@pytest.fixture
def redis_url() -> str:
    """The Redis the state layer is tested on; ``tests/cluster`` overrides it with a 3-node Redis Cluster."""
    return TEST_REDIS_URL


@pytest.fixture
async def redis_cleanup(redis_prefix: str, redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client, _ = connect_redis(redis_url, "bothbot-tests")
    try:
        await client.ping()
    except Exception as exc:  # pragma: no cover - environment problem, say so clearly
        pytest.fail(f"tests need a real Redis at {redis_url}: {exc}")
    yield client
    keys = [key async for key in client.scan_iter(match=f"{redis_prefix}:*", count=500)]
    if keys:
        await client.delete(*keys)
    await client.aclose()


@pytest.fixture
def make_settings(
    redis_prefix: str, tmp_path: Path, redis_cleanup: aioredis.Redis, redis_url: str
) -> MakeSettings:
    """Settings on the real test Redis, a unique key prefix, and a data dir under tmp_path."""

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "redis_url": redis_url,
            "redis_prefix": redis_prefix,
            "data_dir": tmp_path / "data",
        }
        values.update(overrides)
        return load_settings(**values)

    return build


@pytest.fixture
async def openai_server() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as fake:
        yield fake


IngestDocs = Callable[[Mapping[str, str]], Path]


@pytest.fixture
def ingest_docs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> IngestDocs:
    """Write Markdown files and ingest them with ``bothbot ingest``, as an operator would.

    Returns the data directory holding the embedded knowledge base. Use from a synchronous
    fixture: the command runs its own event loop.
    """

    def ingest(docs: Mapping[str, str]) -> Path:
        folder = tmp_path / "docs"
        folder.mkdir(exist_ok=True)
        for name, text in docs.items():
            (folder / name).write_text(text, encoding="utf-8")
        data = tmp_path / "data"
        with monkeypatch.context() as env:
            env.setenv("BOTHBOT_DATA_DIR", str(data))
            assert cli_main(["ingest", str(folder)]) == 0
        return data

    return ingest
