"""``bothbot chat``: a terminal (or pipe) conversation with the engine. The local user is an admin."""

from __future__ import annotations

import asyncio
import logging
import threading
import uuid
from collections.abc import AsyncIterator
from typing import TextIO

from adapters.console.render import render_reply
from bot.engine import Engine
from bot.messages import IncomingMessage

log = logging.getLogger(__name__)

EXIT_WORDS = frozenset({"/quit", "/exit"})
WORKSPACE = "local"


def to_message(line: str, *, channel: str, user: str) -> IncomingMessage:
    """A console line → message; ``/model tuned`` is the command ``model tuned``."""
    text = line.strip()
    is_command = text.startswith("/")
    return IncomingMessage(
        platform="console",
        workspace=WORKSPACE,
        channel=channel,
        user=user,
        text=text[1:] if is_command else text,
        event_id=f"console:{uuid.uuid4().hex}",
        is_direct=False,
        mentions_bot=True,
        is_admin=True,
        command=is_command,
    )


async def read_lines(stdin: TextIO) -> AsyncIterator[str]:
    """Lines from ``stdin`` without blocking the loop; a daemon thread reads, so Ctrl-C never waits on it."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[str] = asyncio.Queue()
    room = threading.Semaphore(64)  # lines read ahead at most
    # (plain callbacks, not coroutines: a loop that closes with one pending, after `| head`, warns of nothing)

    def reader() -> None:
        while True:
            line = stdin.readline()
            room.acquire()
            try:
                loop.call_soon_threadsafe(queue.put_nowait, line)
            except RuntimeError:  # the loop has closed: the chat is over
                return
            if not line:
                return

    threading.Thread(target=reader, name="bothbot-stdin", daemon=True).start()
    while line := await queue.get():
        room.release()
        yield line


async def run_chat(
    engine: Engine,
    *,
    channel: str,
    user: str,
    stdin: TextIO,
    stdout: TextIO,
    stderr: TextIO,
    interactive: bool,
    banner: list[str],
) -> int:
    if interactive:
        for line in banner:
            stderr.write(f"{line}\n")
        stderr.write("Ask a question; /help lists commands, /quit or Ctrl-D leaves.\n")
    lines = read_lines(stdin)
    while True:
        if interactive:
            stdout.write("you> ")
            stdout.flush()
        line = await anext(lines, "")
        if not line:
            if interactive:
                stdout.write("\n")
            return 0
        if not line.strip():
            continue
        if line.strip().lower() in EXIT_WORDS:
            return 0
        msg = to_message(line, channel=channel, user=user)
        if interactive:
            stdout.write("bothbot> ")
        try:
            await render_reply(engine.handle(msg), stdout, stderr if interactive else None)
        except BrokenPipeError:  # the reader left (`bothbot chat | head`): nobody to answer; the CLI exits
            raise
        except Exception as exc:  # the adapter boundary: log it whole, tell the user briefly and go on
            log.exception("answering %s failed", msg.event_id)
            stdout.write(f"\nSorry, that failed ({type(exc).__name__}); the details are in the log.\n\n")
