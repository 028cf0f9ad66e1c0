"""``bothbot ingest`` while the bot runs: the ingest is handed to the process that owns the embedded store.

Only one process can open the embedded store (qdrant-edge locks it). The bot process that opened it
listens on a Unix domain socket, ``DATA_DIR/run/ingest.sock`` (the directory 0700, the socket 0600,
and the peer's uid checked where the system tells it), so only the same user reaches it. Protocol:
JSON lines. The client sends one request (the ingest arguments, paths absolute); the server answers
with events, ending with ``done`` (summary and exit code) or ``error`` (message and exit code):

    → {"version": 1, "op": "ingest", "paths": ["/abs/docs"], "kb": "default", "scope": ["public"], ...}
    ← {"event": "queued", "message": "..."}         another hand-off ingest runs; this one waits for it
    ← {"event": "started", "pid": 1234}
    ← {"event": "progress", "documents": 120}        at most ten a second, and the last count
    ← {"event": "skipped", "path": "...", "reason": "..."}
    ← {"event": "done", "summary": "...", "exit": 0}

The ingest runs on the bot's event loop with the same pipeline as ``bothbot ingest`` (files read in
threads, chunks prepared in a thread or worker process, embeddings off the loop), one at a time. A
client that goes away cancels its ingest (ingest is idempotent: running it again finishes the work).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from retrieval.errors import RetrievalError
from retrieval.factory import RetrievalService
from retrieval.ingest import IngestReport, ScopeError, parse_scope
from retrieval.loaders import LoadOptions

log = logging.getLogger(__name__)

VERSION = 1
RUN_DIRNAME = "run"
SOCKET_NAME = "ingest.sock"
MAX_LINE = 1 << 20
PROGRESS_INTERVAL = 0.1  # seconds between progress events
_SUN_PATH_MAX = 107  # bytes of a Unix socket path (Linux 108 with the NUL; macOS 104)
EXIT_OK, EXIT_PARTIAL, EXIT_USAGE = 0, 1, 2


class HandoffError(RetrievalError):
    """The hand-off socket cannot be served (its directory is not private, the path is too long…)."""


def socket_path(data_dir: Path) -> Path:
    return data_dir.absolute() / RUN_DIRNAME / SOCKET_NAME


@dataclass(frozen=True, slots=True)
class IngestRequest:
    """The arguments of one ``bothbot ingest``, as they cross the socket."""

    paths: tuple[str, ...]
    kb: str
    scope: tuple[str, ...]
    prune: bool = False
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    text_field: str | None = None
    slack_url: str = "https://slack.com"

    def encode(self) -> bytes:
        body: dict[str, Any] = {"version": VERSION, "op": "ingest", **asdict(self)}
        return json.dumps(body).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> IngestRequest:
        """Parse and check one request line; ``ValueError`` says what is wrong."""
        try:
            body = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a JSON request: {exc}") from None
        if not isinstance(body, dict) or body.get("op") != "ingest":
            raise ValueError("not an ingest request")
        if body.get("version") != VERSION:
            raise ValueError(f"protocol version {body.get('version')!r}; this bot speaks {VERSION}: update both")

        def strings(key: str) -> tuple[str, ...]:
            value = body.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"{key} must be a list of strings")
            return tuple(value)

        paths = strings("paths")
        if not paths or not all(Path(p).is_absolute() for p in paths):
            raise ValueError("paths must be one or more absolute paths")
        kb, text_field, slack_url = body.get("kb"), body.get("text_field"), body.get("slack_url", "https://slack.com")
        if not isinstance(kb, str) or not kb:
            raise ValueError("kb must be a name")
        if text_field is not None and not isinstance(text_field, str):
            raise ValueError("text_field must be a string")
        if not isinstance(slack_url, str):
            raise ValueError("slack_url must be a string")
        return cls(
            paths=paths,
            kb=kb,
            scope=parse_scope(strings("scope")),
            prune=bool(body.get("prune", False)),
            include=strings("include"),
            exclude=strings("exclude"),
            text_field=text_field,
            slack_url=slack_url,
        )


def _event(name: str, **fields: Any) -> bytes:
    return json.dumps({"event": name, **fields}).encode() + b"\n"


def _private_dir(path: Path) -> None:
    """Create ``path`` 0700, or check that an existing one is ours and make it 0700."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise HandoffError(f"{path} is not a directory owned by this user")
    if stat.S_IMODE(info.st_mode) != 0o700:
        path.chmod(0o700)


def _peer_uid(writer: asyncio.StreamWriter) -> int | None:
    """The connecting process's uid (Linux ``SO_PEERCRED``), or None where the system does not say."""
    sock = writer.get_extra_info("socket")
    option = getattr(socket, "SO_PEERCRED", None)
    if sock is None or option is None:
        return None
    try:
        _, uid, _ = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    except OSError:
        return None
    return int(uid)


class IngestHandoffServer:
    """Serves ``bothbot ingest`` requests for the process that owns the embedded store."""

    def __init__(self, service: RetrievalService, path: Path) -> None:
        self.service = service
        self.path = path
        self._server: asyncio.Server | None = None
        self._inode: int | None = None
        self._one_at_a_time = asyncio.Lock()
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Listen on the socket; a socket file left there is stale (this process holds the store)."""
        if len(os.fsencode(self.path)) > _SUN_PATH_MAX:
            raise HandoffError(f"the socket path {self.path} is too long for a Unix socket; use a shorter data dir")
        _private_dir(self.path.parent)
        with contextlib.suppress(FileNotFoundError):
            if not stat.S_ISSOCK(self.path.lstat().st_mode):
                raise HandoffError(f"{self.path} exists and is not a socket; remove it")
            self.path.unlink()
        self._server = await asyncio.start_unix_server(self._handle, path=str(self.path), limit=MAX_LINE)
        self.path.chmod(0o600)
        self._inode = self.path.stat().st_ino

    async def aclose(self) -> None:
        """Stop listening, cancel hand-off ingests in progress, remove the socket."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for task in list(self._handlers):
            task.cancel()
        if self._handlers:
            await asyncio.gather(*self._handlers, return_exceptions=True)
        with contextlib.suppress(OSError):
            if self.path.stat().st_ino == self._inode:
                self.path.unlink()
        await server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            log.info("ingest hand-off: the client went away")
        except asyncio.CancelledError:
            pass  # the bot is stopping; the client sees the connection close and carries on itself
        except Exception:  # one client's failure must not touch the bot
            log.exception("ingest hand-off failed")
            with contextlib.suppress(Exception):
                writer.write(_event("error", message="the bot failed to run the ingest; see its log", exit=EXIT_USAGE))
                await writer.drain()
        finally:
            if task is not None:
                self._handlers.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        uid = _peer_uid(writer)
        if uid is not None and uid != os.getuid():
            log.warning("ingest hand-off: refused a connection from uid %d", uid)
            return
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            writer.write(_event("error", message="request too large", exit=EXIT_USAGE))
            return
        try:
            request = IngestRequest.decode(line)
        except (ValueError, ScopeError) as exc:
            writer.write(_event("error", message=f"bad request: {exc}", exit=EXIT_USAGE))
            return
        if self._one_at_a_time.locked():
            writer.write(_event("queued", message="another ingest is running in the bot; this one starts after it"))
            await writer.drain()
        async with self._one_at_a_time:
            writer.write(_event("started", pid=os.getpid()))
            await writer.drain()
            log.info("ingest hand-off: %d path(s) into kb %r", len(request.paths), request.kb)
            ingest = asyncio.create_task(self._ingest(request, writer))
            gone = asyncio.create_task(reader.read(1))  # EOF: the client was stopped
            try:
                await asyncio.wait({ingest, gone}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (ingest, gone):
                    t.cancel()
                await asyncio.gather(ingest, gone, return_exceptions=True)
            if not ingest.cancelled() and ingest.exception() is None:
                writer.write(ingest.result())
                await writer.drain()
            elif not ingest.cancelled():
                raise ingest.exception() or RuntimeError("ingest failed")
            else:
                log.info("ingest hand-off: cancelled (the client went away)")

    async def _ingest(self, request: IngestRequest, writer: asyncio.StreamWriter) -> bytes:
        """Run the ingest, streaming progress; return the closing event."""
        loop = asyncio.get_running_loop()
        last = [0.0, 0]

        def progress(documents: int) -> None:
            last[1] = documents
            now = loop.time()
            if now - last[0] >= PROGRESS_INTERVAL and not writer.is_closing():
                last[0] = now
                writer.write(_event("progress", documents=documents))

        options = LoadOptions(
            include=request.include,
            exclude=request.exclude,
            text_field=request.text_field,
            slack_base_url=request.slack_url.rstrip("/"),
        )
        try:
            report: IngestReport = await self.service.ingest_paths(
                [Path(p) for p in request.paths],
                kb=request.kb,
                scope=request.scope,
                prune=request.prune,
                options=options,
                on_document=progress,
            )
        except RetrievalError as exc:
            return _event("error", message=str(exc), exit=EXIT_USAGE)
        writer.write(_event("progress", documents=last[1]))
        for failure in report.failures:
            writer.write(_event("skipped", path=str(failure.path), reason=failure.reason))
        return _event("done", summary=report.summary(), exit=EXIT_PARTIAL if report.failures else EXIT_OK)


async def hand_off(
    data_dir: Path,
    request: IngestRequest,
    *,
    on_message: Callable[[str], None],
    on_progress: Callable[[int], None],
    on_summary: Callable[[str], None],
) -> int | None:
    """Hand ``request`` to the bot that owns the store under ``data_dir``.

    Returns the exit code, or None when no bot is reachable (no socket; a stale one is removed) or the bot
    stopped before it finished: the caller then opens the store itself.
    """
    path = socket_path(data_dir)
    try:
        info = path.lstat()
    except OSError:
        return None
    if not stat.S_ISSOCK(info.st_mode) or info.st_uid != os.getuid() or len(os.fsencode(path)) > _SUN_PATH_MAX:
        return None
    try:
        reader, writer = await asyncio.open_unix_connection(str(path), limit=MAX_LINE)
    except (ConnectionRefusedError, FileNotFoundError):  # left by a bot that did not stop cleanly
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    except OSError as exc:
        on_message(f"cannot reach the running bot at {path} ({exc}); opening the knowledge base directly")
        return None
    try:
        writer.write(request.encode())
        await writer.drain()
        while line := await reader.readline():
            event = json.loads(line)
            kind = event.get("event")
            if kind == "queued":
                on_message(str(event.get("message", "waiting for another ingest")))
            elif kind == "started":
                on_message(f"handing the ingest to the running bot (pid {event.get('pid')})")
            elif kind == "progress":
                on_progress(int(event.get("documents", 0)))
            elif kind == "skipped":
                on_message(f"skipped {event.get('path')}: {event.get('reason')}")
            elif kind == "done":
                on_summary(str(event.get("summary", "")))
                return int(event.get("exit", EXIT_OK))
            elif kind == "error":
                on_message(f"bothbot ingest: {event.get('message')}")
                return int(event.get("exit", EXIT_USAGE))
    except (ConnectionError, json.JSONDecodeError, ValueError) as exc:
        log.debug("hand-off connection broke: %s", exc)
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()
    on_message("the running bot stopped before the ingest finished; continuing here")
    return None
