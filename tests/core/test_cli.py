"""The installed command end to end: ingest a folder, pipe questions into `bothbot chat`."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TEST_REDIS_URL
from tests.core.conftest import DOCS
from tests.fakes.openai_server import FakeOpenAI

_OURS = ("BOTHBOT_", "OPENAI_", "REDIS_", "QDRANT_")


def _run(
    args: list[str], cwd: Path, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    clean.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd, input=stdin, capture_output=True, text=True, env=clean, timeout=120, check=False,
    )


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    for name, text in DOCS.items():
        (docs / name).write_text(text)
    return tmp_path


def test_piped_chat_answers_from_ingested_docs(workdir: Path) -> None:
    empty = _run(["chat"], workdir, "How do I request a laptop?\n")
    assert empty.returncode == 0, empty.stderr
    assert "bothbot ingest" in empty.stdout
    assert "in-process" in empty.stderr

    ingested = _run(["ingest", "docs"], workdir)
    assert ingested.returncode == 0, ingested.stderr

    chat = _run(["chat"], workdir, "How do I request a laptop?\n\n/status\nHow many days of paid holiday?\n")
    assert chat.returncode == 0, chat.stderr
    out = chat.stdout
    assert "Retrieval-only answer" in out
    first, _, rest = out.partition("Channel `console:local:console`")
    assert "IT portal" in first
    assert "laptops.md" in first.split("Sources:")[1]
    assert "knowledge bases: default (" in rest
    assert "holidays.md" in rest.split("Sources:")[1]
    assert "Traceback" not in chat.stderr


TUNED_TOML = """
default_profile = "base"
[profiles.base]
model = "gpt-4o-mini"
[profiles.tuned]
model = "ft:gpt-4o-mini-2024-07-18:acme:support:abc123"
"""


async def _chat_process(cwd: Path, env: dict[str, str], channel: str, lines: str) -> tuple[int, str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    clean.update(env)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "chat", "--channel", channel,
        cwd=cwd, env=clean,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(lines.encode()), timeout=120)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_admin_model_switch_routes_only_that_channel(
    workdir: Path, openai_server: FakeOpenAI, redis_prefix: str, redis_cleanup: object
) -> None:
    (workdir / "bothbot.toml").write_text(TUNED_TOML)
    env = {
        "OPENAI_BASE_URL": openai_server.base_url,
        "OPENAI_API_KEY": "sk-cli-secret-777777",
        "REDIS_URL": TEST_REDIS_URL,
        "BOTHBOT_REDIS_PREFIX": redis_prefix,
    }
    assert _run(["ingest", "docs"], workdir).returncode == 0

    code, out, err = await _chat_process(
        workdir, env, "B", "How do I request a laptop?\n/model tuned\nHow do I request a laptop?\n"
    )
    assert code == 0, err
    assert [r.body["model"] for r in openai_server.chat_requests] == [
        "gpt-4o-mini",
        "ft:gpt-4o-mini-2024-07-18:acme:support:abc123",
    ]
    assert "now uses profile `tuned`" in out

    code, out, err = await _chat_process(workdir, env, "A", "How do I request a laptop?\n")
    assert code == 0, err
    assert openai_server.chat_requests[-1].body["model"] == "gpt-4o-mini"
    assert "laptops.md" in out
    assert "sk-cli-secret-777777" not in out + err
