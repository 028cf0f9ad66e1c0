"""`bothbot ingest` while a bot owns the embedded store: handed to the bot over its Unix socket."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.cli import build_parser
from retrieval.api import SearchScope
from retrieval.cli import EXIT_LOCKED, EXIT_OK, EXIT_PARTIAL, EXIT_USAGE
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.factory import RetrievalService, open_knowledge_base
from retrieval.handoff import IngestHandoffServer, IngestRequest, hand_off, socket_path
from tests.conftest import TEST_REDIS_URL
from tests.retrieval.conftest import write_files

ZORBLAX = "# Zorblax\n\nThe zorblax frequency is 42 hertz, measured by the quality team.\n"


async def run_cli(env: RetrievalEnvironment, *argv: str) -> int:
    args = build_parser().parse_args(argv)
    code: int = await args.retrieval_handler(args, env)
    return code


@pytest.fixture
def env(tmp_path: Path) -> RetrievalEnvironment:
    return RetrievalEnvironment(RetrievalConfig(), tmp_path / "data")


@pytest.fixture
async def bot_side(env: RetrievalEnvironment) -> AsyncIterator[tuple[RetrievalService, IngestHandoffServer]]:
    """The store and its hand-off server, as a bot process holds them (here in the test's process)."""
    service = await open_knowledge_base(env)
    server = IngestHandoffServer(service, socket_path(env.data_dir))
    await server.start()
    yield service, server
    await server.aclose()
    await service.aclose()


async def test_hand_off_streams_progress_and_returns_the_summary(
    env: RetrievalEnvironment, bot_side: tuple[RetrievalService, IngestHandoffServer], tmp_path: Path
) -> None:
    service, _ = bot_side
    path = socket_path(env.data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_ISSOCK(path.stat().st_mode)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    docs = write_files(tmp_path / "docs", {"a.md": "# A\n\nalpha text", "b.md": ZORBLAX})
    request = IngestRequest(paths=(str(docs), str(tmp_path / "gone")), kb="eng", scope=("slack:C1",))
    messages: list[str] = []
    progress: list[int] = []
    summaries: list[str] = []
    code = await hand_off(
        env.data_dir, request, on_message=messages.append, on_progress=progress.append, on_summary=summaries.append
    )
    assert code == EXIT_PARTIAL
    assert progress[-1] == 2
    assert any(m.startswith(f"skipped {tmp_path / 'gone'}: no such file") for m in messages)
    assert any(m.startswith("handing the ingest to the running bot") for m in messages)
    assert summaries == [summaries[0]] and "kb 'eng': 2 documents (2 new or changed, 1 failed)" in summaries[0]
    found = await service.search("zorblax frequency", SearchScope(kbs=("eng",), channel="slack:C1"))
    assert found.passages[0].source == "docs/b.md"


async def test_a_second_ingest_is_told_and_waits_for_the_first(
    env: RetrievalEnvironment, bot_side: tuple[RetrievalService, IngestHandoffServer], tmp_path: Path
) -> None:
    _, server = bot_side
    docs = write_files(tmp_path / "docs", {"z.md": ZORBLAX})
    request = IngestRequest(paths=(str(docs),), kb="default", scope=("public",))
    queued = asyncio.Event()
    messages: list[str] = []

    def message(text: str) -> None:
        messages.append(text)
        if "another ingest is running" in text:
            queued.set()

    async with server._one_at_a_time:  # as while a first hand-off ingest runs
        second = asyncio.create_task(
            hand_off(env.data_dir, request, on_message=message, on_progress=lambda n: None, on_summary=messages.append)
        )
        await queued.wait()
        assert not any(m.startswith("handing the ingest") for m in messages)
    assert await second == EXIT_OK
    assert "kb 'default': 1 documents (1 new or changed)" in messages[-1]


async def test_bad_requests_get_a_usage_error(
    env: RetrievalEnvironment, bot_side: tuple[RetrievalService, IngestHandoffServer]
) -> None:
    for line in (b"not json\n", b'{"op": "ingest", "version": 1, "paths": ["relative"], "kb": "x"}\n',
                 b'{"op": "ingest", "version": 99}\n'):  # fmt: skip
        reader, writer = await asyncio.open_unix_connection(str(socket_path(env.data_dir)))
        writer.write(line)
        event = json.loads(await reader.readline())
        writer.close()
        await writer.wait_closed()
        assert event["event"] == "error" and event["exit"] == EXIT_USAGE
    assert "absolute paths" in event["message"] or "version" in event["message"]


async def test_the_cli_hands_off_to_the_process_holding_the_store(
    env: RetrievalEnvironment,
    bot_side: tuple[RetrievalService, IngestHandoffServer],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    docs = write_files(tmp_path / "docs", {"z.md": ZORBLAX})
    assert await run_cli(env, "ingest", str(docs), "--wait", "0", "--no-progress") == EXIT_OK
    out = capsys.readouterr()
    assert "kb 'default': 1 documents (1 new or changed); chunks: 1 added" in out.out
    assert "handing the ingest to the running bot" in out.err


async def test_without_a_bot_a_held_store_still_waits_then_exits_3_and_a_stale_socket_goes(
    env: RetrievalEnvironment, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = socket_path(env.data_dir)
    stale.parent.mkdir(parents=True, mode=0o700)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(stale))  # bound, never listening, closed: what a killed bot leaves
    holder = await open_knowledge_base(env)  # an in-test holder of the store, with no hand-off server
    try:
        assert await run_cli(env, "ingest", str(tmp_path), "--wait", "0.2", "--no-progress") == EXIT_LOCKED
    finally:
        await holder.aclose()
    assert not stale.exists()
    err = capsys.readouterr().err
    assert "waiting up to 0.2 s" in err and "stop the other bothbot process" in err
    docs = write_files(tmp_path / "docs", {"z.md": ZORBLAX})
    assert await run_cli(env, "ingest", str(docs), "--no-progress") == EXIT_OK  # no bot, free store: as before


async def _answer(stdout: asyncio.StreamReader, last: str) -> str:
    """One reply of `bothbot chat` on a pipe: its lines up to the blank line after the paragraph with ``last``."""
    lines: list[str] = []
    while True:
        line = (await stdout.readline()).decode()
        assert line, "the bot exited: " + "".join(lines)
        if line == "\n" and any(last in seen for seen in lines):
            return "".join(lines)
        lines.append(line)


async def test_ingest_while_a_real_bot_process_runs(tmp_path: Path, redis_prefix: str, redis_cleanup: object) -> None:
    data = tmp_path / "data"
    process_env = {
        **os.environ,
        "BOTHBOT_DATA_DIR": str(data),
        "REDIS_URL": TEST_REDIS_URL,
        "BOTHBOT_REDIS_PREFIX": redis_prefix,
    }
    bot = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "chat",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=process_env,
    )  # fmt: skip
    assert bot.stdin is not None and bot.stdout is not None and bot.stderr is not None
    try:
        bot.stdin.write(b"what is the zorblax frequency?\n")
        assert "knowledge base is empty" in await _answer(bot.stdout, "empty")  # the bot is up and owns the store
        assert socket_path(data).is_socket()

        docs = write_files(tmp_path / "docs", {"zorblax.md": ZORBLAX})
        ingest = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "ingest", str(docs), "--no-progress",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=process_env,
        )  # fmt: skip
        out, err = await ingest.communicate()
        assert ingest.returncode == EXIT_OK, err.decode()
        assert "kb 'default': 1 documents (1 new or changed); chunks: 1 added" in out.decode()
        assert "handing the ingest to the running bot" in err.decode()

        bot.stdin.write(b"what is the zorblax frequency?\n")
        answer = await _answer(bot.stdout, "Sources:")
        assert "42 hertz" in answer and "docs/zorblax.md" in answer
    finally:
        bot.stdin.close()
        code = await bot.wait()
        bot_err = (await bot.stderr.read()).decode()
    assert code == 0, bot_err
    assert not socket_path(data).exists()  # removed on exit
