"""What tests that start processes share: a free port, the ``bothbot`` command as the docs run it,
the environment of ``bothbot slack`` in HTTP mode, and waiting for a process's health endpoint."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from pathlib import Path

import aiohttp

from tests.conftest import TEST_REDIS_URL
from tests.fakes.slack_payloads import SIGNING_SECRET
from tests.fakes.slack_server import BOT_TOKEN


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def bothbot_command(*args: str) -> list[str]:
    """The installed console script, as the docs run it (``python -m bot`` where it is not installed)."""
    script = Path(sys.executable).with_name("bothbot")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "bot", *args]


def slack_http_env(
    *, slack_api_url: str, openai_base_url: str, redis_prefix: str, home: Path, port: int, **extra: str
) -> dict[str, str]:
    """The environment of ``bothbot slack`` in HTTP mode against the fakes (only what it names, plus ``extra``)."""
    return {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(home),
        "SLACK_BOT_TOKEN": BOT_TOKEN,
        "SLACK_SIGNING_SECRET": SIGNING_SECRET,
        "SLACK_API_URL": slack_api_url,
        "PORT": str(port),
        "REDIS_URL": TEST_REDIS_URL,
        "BOTHBOT_REDIS_PREFIX": redis_prefix,
        "BOTHBOT_DATA_DIR": str(home / "data"),
        "OPENAI_BASE_URL": openai_base_url,
        "OPENAI_API_KEY": "sk-test",
        "BOTHBOT_RAG_DEFAULT": "false",
        **extra,
    }


async def wait_healthy(url: str, process: asyncio.subprocess.Process, timeout: float = 30.0) -> None:
    """Until ``url`` answers 200; fails when ``process`` exits first or the timeout passes."""
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if process.returncode is not None:
                raise AssertionError(f"bothbot exited with {process.returncode}")
            try:
                async with session.get(url) as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientConnectionError:
                pass
            await asyncio.sleep(0.1)  # polling a starting process, bounded by the deadline
    raise AssertionError("bothbot did not become healthy")
