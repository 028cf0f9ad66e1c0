"""Core fixtures: a small knowledge base ingested through the real CLI, and a started runtime."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest

from bot.runtime import Runtime
from bot.settings import Settings
from tests.conftest import IngestDocs
from tests.fakes.openai_server import FakeOpenAI

DOCS = {
    "laptops.md": "# Laptops\n\nTo request a laptop, open a ticket in the IT portal under Hardware. "
    "Laptops are delivered within five working days.\n",
    "holidays.md": "# Holidays\n\nEvery employee has 28 days of paid holiday a year. "
    "Unused days carry over until March.\n",
    "vpn.md": "# VPN\n\n## Setup\n\nInstall WireGuard and import the profile from the VPN page. "
    "The VPN endpoint is vpn.example.com.\n",
}


StartRuntime = Callable[..., Any]


@pytest.fixture
def data_dir(ingest_docs: IngestDocs) -> Path:
    """The docs ingested with ``bothbot ingest`` into an embedded knowledge base."""
    return ingest_docs(DOCS)


@pytest.fixture
async def start_runtime(
    make_settings: Callable[..., Settings], data_dir: Path
) -> AsyncIterator[Callable[..., Any]]:
    started: list[Runtime] = []

    async def start(**overrides: Any) -> Runtime:
        runtime = await Runtime.start(make_settings(data_dir=data_dir, **overrides))
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        await runtime.aclose()


@pytest.fixture
def model_settings(openai_server: FakeOpenAI, profiles: dict[str, dict[str, str]]) -> dict[str, Any]:
    return {
        "openai_base_url": openai_server.base_url,
        "openai_api_key": "sk-test-secret-key-123456",
        "profiles": profiles,
        "default_profile": "base",
        "model_max_retries": 0,
        "model_timeout_seconds": 5,
    }
