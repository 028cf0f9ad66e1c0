"""The installed command end to end: ingest a folder, pipe questions into `bothbot chat`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.core.conftest import DOCS

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
