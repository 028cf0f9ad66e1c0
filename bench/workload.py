"""The shared workload of ``bench_engine.py`` and ``bench_peers.py`` (issue #13): what every system
under test does per answer, and the machinery that times it. Prints nothing itself but what a
parent asks for; asserts nothing about time.

Per answer, every system does the same:

* conversation state in a real Redis: each conversation starts with a 20-message history already
  stored (10 questions and their answers, the same texts the live turns use), and the question and
  the answer are appended to it when the answer ends;
* a top-5 BM25 search on the question, through bothbot's own ``KnowledgeBase.search`` (the
  embedded qdrant-edge store of N synthetic chunks, built once per chunk count by bothbot's ingest
  path, ``RetrievalService.ingest_documents``, from ``bench_ingest.synthetic_corpus``, in a process
  of its own: ``python bench/workload.py build-store DIR CHUNKS``); questions
  are three words of a public stored chunk, kept only when the search from the bench channel
  returns 5 passages and judges the match good;
* a prompt of 6 messages: system (instructions + the 5 passages), the last 4 history messages,
  the question;
* the answer streamed from a local OpenAI-compatible server (``tests/fakes/openai_server.py``,
  50 chunks, no delay) in its own process (``python bench/workload.py fake-server`` prints its
  URL as one JSON line and serves until its standard input closes). It counts the messages and
  the distinct sources (``Document N`` titles) of every prompt it receives, so each run can show
  that each system really sent 6 messages with 5 passages, one model request per answer.

A system's process runs phases in a closed loop: ``c`` conversations at once, each asking its next
question when its answer has ended (a conversation moves on to a fresh seeded one after
``TURNS_PER_CONVERSATION`` answers, so histories stay near 20 messages for the systems that do not
trim them). Each phase has unmeasured warm-up answers first. Measured: latency of each answer
(question sent → answer ended and persisted), answers/s (answers / wall time of the phase), CPU
per answer (``time.process_time()`` of this process over the phase / answers: the process under
test only, all its threads, not Redis nor the fake model) and the peak RSS of the process
(``ru_maxrss``). The process prints one JSON line with its results on stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.fakes (the repository root is not installed)

from aiohttp import web

# sibling script (bench/ is on sys.path when run)
from bench_ingest import cpu_model, package_version, synthetic_corpus

from bot.messages import FinalAnswer, IncomingMessage
from bot.prompts import DEFAULT_SYSTEM_PROMPT, SOURCES_NOTE, estimate_tokens
from bot.runtime import Runtime
from bot.settings import load_settings
from bot.state import Turn
from retrieval.api import SearchScope
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.factory import open_knowledge_base
from retrieval.stopwords import STOP_WORDS
from tests.fakes.openai_server import FakeOpenAI

# --- the workload's constants ----------------------------------------------------------------------

KB = "bench"
WORKSPACE = "T1"
CHANNEL = "C1"
SCOPE = SearchScope(kbs=(KB,), channel=f"slack:{CHANNEL}")
"""Where every question is asked: the bench knowledge base, from Slack channel C1 (public chunks and
those scoped to C1 are visible; the store's filter does the work, as in production)."""
WORDS_PER_CHUNK = 120
TOP_K = 5
HISTORY_MESSAGES = 20
PROMPT_HISTORY_MESSAGES = 4
PROMPT_MESSAGES = 1 + PROMPT_HISTORY_MESSAGES + 1
ANSWER_CHUNKS = 50
TURNS_PER_CONVERSATION = 5
MODEL = "gpt-4o-mini"
API_KEY = "sk-bench"
HISTORY_TTL_SECONDS = 7 * 24 * 3600  # bothbot's default; the peers' histories get the same TTL
SYSTEM_PROMPT = f"{DEFAULT_SYSTEM_PROMPT}\n\n{SOURCES_NOTE}"
"""The peers' instructions: bothbot's own, so every prompt carries the same text."""
QUESTION_COUNT = 400
STORE_MARKER = "bench-store.json"


def _reply_text() -> str:
    sentence = "Open a ticket with the team that owns it, name the policy and wait for their answer [1]. "
    text = (sentence * 4)[: ANSWER_CHUNKS * 5]
    return text[:-1] + "."


REPLY_TEXT = _reply_text()
"""250 characters: the fake streams it as exactly 50 chunks of 5 characters (50 'tokens')."""
assert len(REPLY_TEXT) == ANSWER_CHUNKS * 5 and "{" not in REPLY_TEXT


# --- the machine -----------------------------------------------------------------------------------


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def machine_lines() -> list[str]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return [
        f"machine: {os.cpu_count()} cores ({usable} usable), {cpu_model()}, {platform.system()} {platform.release()}",
        f"python {platform.python_version()} ({sys.executable})",
        f"load average {load_average()} at {time.strftime('%Y-%m-%d %H:%M:%S')}",
    ]


# --- the store ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Store:
    chunks: int
    data_dir: Path
    questions: tuple[str, ...]
    build_seconds: float = 0.0  # 0 when an existing store was reused

    def line(self) -> str:
        """What a run prints about its store: size, place, built or reused, and the load now."""
        built = f"built in {self.build_seconds:.0f} s" if self.build_seconds else "reused"
        return f"store of {self.chunks:,} chunks at {self.data_dir} ({built}); load {load_average()}"


@contextlib.contextmanager
def stores_root(data_root: Path | None) -> Iterator[Path]:
    """Where the stores go: ``data_root`` (kept, and reused by later runs), else a temporary folder
    removed at the end."""
    if data_root is not None:
        data_root.mkdir(parents=True, exist_ok=True)
        yield data_root
        return
    with tempfile.TemporaryDirectory(prefix="bothbot-bench-") as tmp:
        yield Path(tmp)


def _candidate_questions(chunks: int, count: int, seed: int = 11) -> list[str]:
    """Three distinct non-stop words of a public stored chunk each (the first chunks exist at every size)."""
    docs = synthetic_corpus(min(chunks, 3_000), WORDS_PER_CHUNK)
    stop = set(STOP_WORDS["english"])
    rng = random.Random(seed)
    out: list[str] = []
    while len(out) < count:
        doc = rng.choice(docs)
        if doc.scope != ("public",):
            continue
        words = sorted({w for w in doc.text.rstrip(".").split() if w not in stop})
        if len(words) < 3:
            continue
        a, b, c = rng.sample(words, 3)
        out.append(f"What does the handbook say about {a}, {b} and {c}?")
    return out


async def _build(chunks: int, data_dir: Path) -> tuple[str, ...]:
    service = await open_knowledge_base(RetrievalEnvironment(RetrievalConfig(), data_dir))
    try:
        if await service.count([KB]) != chunks:
            await service.delete_kb(KB)
            await service.ingest_documents(synthetic_corpus(chunks, WORDS_PER_CHUNK), kb=KB)
        kept: list[str] = []
        for question in _candidate_questions(chunks, QUESTION_COUNT * 3):
            found = await service.search(question, SCOPE, limit=TOP_K)
            if len(found.passages) == TOP_K and not found.no_good_match:
                kept.append(question)
            if len(kept) == QUESTION_COUNT:
                break
    finally:
        await service.aclose()
    if len(kept) < QUESTION_COUNT // 2:
        raise SystemExit(f"only {len(kept)} questions found 5 passages in the {chunks:,}-chunk store")
    return tuple(kept)


def build_store(data_dir: Path, chunks: int) -> None:
    """Build the store (``python bench/workload.py build-store DIR CHUNKS``) and write its marker."""
    data_dir.mkdir(parents=True, exist_ok=True)
    questions = asyncio.run(_build(chunks, data_dir))
    marker = {"chunks": chunks, "words": WORDS_PER_CHUNK, "questions": list(questions)}
    (data_dir / STORE_MARKER).write_text(json.dumps(marker))


def prepare_store(root: Path, chunks: int) -> Store:
    """The store of ``chunks`` synthetic chunks under ``root`` (built by bothbot's ingest, or reused).

    Built in a process of its own: a parent that had held the corpus would pass its peak memory on to
    the processes it starts (Linux carries the parent's high-water mark into a child's ``ru_maxrss``).
    """
    data_dir = root / f"store-{chunks}"
    marker = data_dir / STORE_MARKER
    if marker.is_file():
        saved = json.loads(marker.read_text())
        if saved.get("chunks") == chunks and saved.get("words") == WORDS_PER_CHUNK:
            return Store(chunks, data_dir, tuple(saved["questions"]))
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "build-store", str(data_dir), str(chunks)],
        env=child_env(), check=True,
    )
    return Store(chunks, data_dir, read_store(data_dir).questions, time.perf_counter() - started)


def read_store(data_dir: Path) -> Store:
    saved = json.loads((data_dir / STORE_MARKER).read_text())
    return Store(int(saved["chunks"]), data_dir, tuple(saved["questions"]))


# --- conversations -----------------------------------------------------------------------------------


def seeded_history(conversation: int, questions: Sequence[str]) -> list[tuple[str, str]]:
    """The 20 messages a conversation starts with: (role, text), oldest first, user/assistant alternating."""
    out: list[tuple[str, str]] = []
    for i in range(HISTORY_MESSAGES // 2):
        out.append(("user", questions[(conversation * 7 + i) % len(questions)]))
        out.append(("assistant", REPLY_TEXT))
    return out


def bothbot_history_budget(questions: Sequence[str]) -> int:
    """A ``history_token_budget`` that keeps exactly the last 4 messages (user, assistant, user, assistant).

    ``bot.prompts.history_within`` keeps the newest turns that fit and drops a leading assistant turn,
    so 4 are sent when the budget holds the newest 4 but not the newest 6.
    """
    q_max = max(estimate_tokens(q) for q in questions)
    q_min = min(estimate_tokens(q) for q in questions)
    a = estimate_tokens(REPLY_TEXT)
    low, high = 2 * q_max + 2 * a, 3 * q_min + 3 * a  # low <= budget < high
    if low >= high:
        raise SystemExit("questions vary too much in length to budget exactly 4 history messages")
    return (low + high) // 2


def conversations_needed(phases: Sequence[Phase], warmup: Callable[[int], int]) -> int:
    return sum(math.ceil((p.answers + warmup(p.concurrency)) / TURNS_PER_CONVERSATION) + 2 * p.concurrency
               for p in phases)


class ConversationFeed:
    """Hands out seeded conversations (ids ``0 … count-1``); each is used for a few answers, then left."""

    def __init__(self, count: int) -> None:
        self.count = count
        self._next = 0

    def take(self) -> int:
        if self._next >= self.count:
            raise RuntimeError("ran out of seeded conversations (a bug in conversations_needed)")
        self._next += 1
        return self._next - 1


# --- a system under test and the closed loop ------------------------------------------------------------


class System(Protocol):
    """One framework answering the workload in this process."""

    name: str

    async def seed(self, conversations: int, questions: Sequence[str]) -> None:
        """Store each conversation's 20-message history (ids ``0 … conversations-1``)."""
        ...

    async def answer(self, conversation: int, question: str) -> None:
        """Answer one question in a conversation: retrieve, prompt, stream, persist; raise on a wrong answer."""
        ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class Phase:
    concurrency: int
    answers: int


def parse_phases(text: str) -> list[Phase]:
    """``1:300,50:1000`` -> [Phase(1, 300), Phase(50, 1000)]."""
    phases = []
    for part in text.split(","):
        c, n = part.split(":")
        phases.append(Phase(int(c), int(n)))
    return phases


@dataclass
class PhaseRun:
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    cpu: float = 0.0


async def closed_loop(
    answer: Callable[[int, str], Awaitable[None]],
    feed: ConversationFeed,
    questions: Sequence[str],
    *,
    total: int,
    concurrency: int,
    offset: int = 0,
) -> PhaseRun:
    """``concurrency`` conversations, each asking its next question when its answer has ended, ``total`` answers."""
    run = PhaseRun()
    issued = 0

    async def conversation() -> None:
        nonlocal issued
        current, used = feed.take(), 0
        while issued < total:
            issued += 1
            if used == TURNS_PER_CONVERSATION:
                current, used = feed.take(), 0
            used += 1
            question = questions[(offset + issued) % len(questions)]
            started = time.perf_counter()
            await answer(current, question)
            run.latencies.append(time.perf_counter() - started)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(conversation() for _ in range(min(concurrency, total))))
    run.wall = time.perf_counter() - wall
    run.cpu = time.process_time() - cpu
    return run


def vm_hwm_mb() -> float:
    """This process image's peak RSS from ``/proc/self/status`` (0 where there is none)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def default_warmup(concurrency: int) -> int:
    return max(50, 2 * concurrency)


def fake_stats(base_url: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base_url}/bench/stats", timeout=10) as response:
        return dict(json.loads(response.read()))


def _delta(after: dict[str, int], before: dict[str, int]) -> dict[str, int]:
    keys = sorted(set(after) | set(before), key=int)
    return {k: after.get(k, 0) - before.get(k, 0) for k in keys if after.get(k, 0) - before.get(k, 0)}


async def measure(
    system: System,
    questions: Sequence[str],
    phases: Sequence[Phase],
    base_url: str,
    warmup: Callable[[int], int] = default_warmup,
) -> dict[str, Any]:
    """Seed, then run each phase (warm-up, then measured); the results as one JSON-able dict."""
    needed = conversations_needed(phases, warmup)
    started = time.perf_counter()
    await system.seed(needed, questions)
    seed_seconds = time.perf_counter() - started
    feed = ConversationFeed(needed)
    results: dict[str, Any] = {"system": system.name, "seeded_conversations": needed,
                               "seed_seconds": round(seed_seconds, 2), "phases": []}
    offset = 0
    for phase in phases:
        await closed_loop(system.answer, feed, questions, total=warmup(phase.concurrency),
                          concurrency=phase.concurrency, offset=offset)
        offset += warmup(phase.concurrency)
        before = fake_stats(base_url)
        run = await closed_loop(system.answer, feed, questions, total=phase.answers,
                                concurrency=phase.concurrency, offset=offset)
        after = fake_stats(base_url)
        offset += phase.answers
        n = len(run.latencies)
        results["phases"].append(
            {
                "concurrency": phase.concurrency,
                "answers": n,
                "p50_ms": round(percentile(run.latencies, 0.5) * 1000, 3),
                "p99_ms": round(percentile(run.latencies, 0.99) * 1000, 3),
                "mean_ms": round(statistics.fmean(run.latencies) * 1000, 3),
                "answers_per_s": round(n / run.wall, 2),
                "cpu_ms_per_answer": round(run.cpu / n * 1000, 3),
                "wall_s": round(run.wall, 3),
                "model_requests": after["chat_requests"] - before["chat_requests"],
                "prompt_messages": _delta(after["messages"], before["messages"]),
                "prompt_sources": _delta(after["sources"], before["sources"]),
                "fake_cpu_ms_per_answer": round((after["cpu_s"] - before["cpu_s"]) / n * 1000, 3),
                "load": load_average(),
            }
        )
    results["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    results["vm_hwm_mb"] = round(vm_hwm_mb(), 1)  # the same peak from /proc (0 off Linux), as a cross-check
    return results


async def delete_keys(redis_url: str | None, prefix: str) -> int:
    """Delete every key starting with ``prefix`` (this run's keys); how many there were."""
    if redis_url is None:
        return 0
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}*", count=1000)]
        for i in range(0, len(keys), 1000):
            await client.delete(*keys[i : i + 1000])
        return len(keys)
    finally:
        await client.aclose()


# --- bothbot through its public API ---------------------------------------------------------------------


class Bothbot:
    """bothbot's engine: ``Runtime.start(settings)``, ``runtime.engine.handle(IncomingMessage(…))``.

    Rate limiting stays on (limits too high to trigger, so their cost is counted), every message has
    a unique event id (so the dedup claim is counted), history is kept at 20 messages and budgeted to
    send the last 4.
    """

    name = "bothbot"

    def __init__(self, runtime: Runtime, event_prefix: str) -> None:
        self.runtime = runtime
        self.event_prefix = event_prefix
        self._events = 0

    @classmethod
    async def open(
        cls, *, data_dir: Path, redis_url: str | None, prefix: str, base_url: str, questions: Sequence[str]
    ) -> Bothbot:
        settings = load_settings(
            redis_url=redis_url,
            redis_prefix=prefix,
            data_dir=data_dir,
            openai_base_url=base_url,
            openai_api_key=API_KEY,
            default_model=MODEL,
            default_kbs=(KB,),
            history_max_turns=HISTORY_MESSAGES // 2,
            history_token_budget=bothbot_history_budget(questions),
            history_ttl_seconds=HISTORY_TTL_SECONDS,
            rate_limit_user=1_000_000_000,
            rate_limit_channel=1_000_000_000,
            rate_limit_window_seconds=60,
        )
        runtime = await Runtime.start(settings)
        return cls(runtime, f"{prefix}-ev")

    def message(self, conversation: int, question: str) -> IncomingMessage:
        self._events += 1
        return IncomingMessage(
            platform="slack",
            workspace=WORKSPACE,
            channel=CHANNEL,
            user=f"U{conversation}",
            text=question,
            event_id=f"{self.event_prefix}-{self._events}",
            thread=f"t{conversation}",
            mentions_bot=True,
        )

    async def seed(self, conversations: int, questions: Sequence[str]) -> None:
        settings = self.runtime.settings
        for conversation in range(conversations):
            key = self.message(conversation, "").conversation_key
            turns = [Turn(role, text) for role, text in seeded_history(conversation, questions)]
            await self.runtime.state.append_turns(
                key, turns, max_turns=settings.history_max_turns, ttl_seconds=settings.history_ttl_seconds
            )

    async def answer(self, conversation: int, question: str) -> None:
        final: FinalAnswer | None = None
        async for event in self.runtime.engine.handle(self.message(conversation, question)):
            if isinstance(event, FinalAnswer):
                final = event
        if final is None or final.kind != "answer" or final.text != REPLY_TEXT:
            raise RuntimeError(f"bothbot did not answer: {final!r}")

    async def aclose(self) -> None:
        await self.runtime.aclose()


# --- the child process's command line (shared by both scripts) -----------------------------------------


def child_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--base-url", help=argparse.SUPPRESS)
    parser.add_argument("--prefix", help=argparse.SUPPRESS)
    parser.add_argument("--phases", help=argparse.SUPPRESS)


SystemOpener = Callable[[argparse.Namespace, Store], Awaitable[System]]


async def child_main(args: argparse.Namespace, opener: SystemOpener) -> None:
    """Run one system's phases in this process and print its results as one JSON line."""
    store = read_store(args.data_dir)
    system = await opener(args, store)
    try:
        results = await measure(system, store.questions, parse_phases(args.phases), args.base_url,
                                warmup=(lambda c: args.warmup) if args.warmup is not None else default_warmup)
    finally:
        await system.aclose()
        removed = await delete_keys(args.redis, args.prefix)
    results.update(chunks=store.chunks, redis_keys_deleted=removed, python=platform.python_version())
    print(json.dumps(results), flush=True)


def child_env() -> dict[str, str]:
    """This environment without the settings bothbot or the peers would read (BOTHBOT_*, OPENAI_*, tracing)."""
    drop = ("BOTHBOT_", "OPENAI_", "REDIS_URL", "QDRANT_", "LANGCHAIN_", "LANGSMITH_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def run_child(script: Path, args: Sequence[str], cwd: Path) -> dict[str, Any] | None:
    """Run ``script --child …`` and return its JSON line with its warnings; None (its stderr's end
    printed) when it failed."""
    proc = subprocess.run(
        [sys.executable, str(script), *args], cwd=cwd, env=child_env(), capture_output=True, text=True, check=False
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(f"    | {line}" for line in proc.stderr.splitlines()[-25:])
        print(f"  FAILED (exit {proc.returncode}): {script.name} {' '.join(args)}\n{tail}", flush=True)
        return None
    result: dict[str, Any] = json.loads(lines[-1])
    stderr = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
    notable = [line for line in stderr if re.search(r"warning|error|traceback", line, re.IGNORECASE)]
    result["stderr_lines"] = len(stderr)
    result["stderr_notable"] = list(dict.fromkeys(notable))[:5]
    return result


# --- the fake model server in its own process ---------------------------------------------------------


_SOURCE_TITLE = re.compile(r"Document (\d+)")


class CountingFakeOpenAI(FakeOpenAI):
    """The repository's fake, keeping counts instead of every request (a long run would hold them all)."""

    def __init__(self) -> None:
        super().__init__(reply_text=REPLY_TEXT, chunks_per_reply=ANSWER_CHUNKS)
        self.server.record_requests = False
        self.chat_count = 0
        self.messages: Counter[int] = Counter()
        self.sources: Counter[int] = Counter()

    def add_routes(self, app: web.Application) -> None:
        super().add_routes(app)
        app.router.add_get("/v1/bench/stats", self._stats)

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        response = await super()._chat(request)
        for recorded in self.requests:
            messages = recorded.body.get("messages") or []
            self.chat_count += 1
            self.messages[len(messages)] += 1
            system = str(messages[0].get("content", "")) if messages else ""
            self.sources[len(set(_SOURCE_TITLE.findall(system)))] += 1
        self.requests.clear()
        return response

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response(
            {
                "chat_requests": self.chat_count,
                "messages": {str(k): v for k, v in self.messages.items()},
                "sources": {str(k): v for k, v in self.sources.items()},
                "cpu_s": time.process_time(),
            }
        )


async def serve_fake() -> None:
    fake = CountingFakeOpenAI()
    await fake.start()
    print(json.dumps({"base_url": fake.base_url, "pid": os.getpid()}), flush=True)
    try:
        await asyncio.to_thread(sys.stdin.read)  # until the parent closes our standard input
    finally:
        await fake.stop()


class FakeModelProcess:
    """``with FakeModelProcess() as fake:`` the fake model server in a process of its own; ``fake.base_url``."""

    def __init__(self) -> None:
        self.base_url = ""
        self._proc: subprocess.Popen[str] | None = None

    def __enter__(self) -> FakeModelProcess:
        self._proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "fake-server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=child_env(),
        )
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            raise SystemExit(f"the fake model server did not start (exit {self._proc.returncode})")
        self.base_url = str(json.loads(line)["base_url"])
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is None:
            return
        assert self._proc.stdin is not None
        self._proc.stdin.close()
        try:
            self._proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


# --- printing ----------------------------------------------------------------------------------------------


def versions_line(dists: Sequence[str]) -> str:
    return ", ".join(f"{d} {package_version(d)}" for d in dists)


def iter_phase_rows(result: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for phase in result["phases"]:
        yield {**phase, "system": result["system"], "chunks": result["chunks"], "peak_rss_mb": result["peak_rss_mb"]}


def check_line(phase: dict[str, Any]) -> str:
    """What the fake saw: messages per prompt and sources per prompt, e.g. ``6 msgs ×300, 5 src ×300``."""
    msgs = ", ".join(f"{k} msgs ×{v}" for k, v in phase["prompt_messages"].items())
    srcs = ", ".join(f"{k} src ×{v}" for k, v in phase["prompt_sources"].items())
    extra = "" if phase["model_requests"] == phase["answers"] else f", {phase['model_requests']} model requests"
    return f"{msgs}; {srcs}{extra}"


if __name__ == "__main__":
    if sys.argv[1:] == ["fake-server"]:
        asyncio.run(serve_fake())
    elif len(sys.argv) == 4 and sys.argv[1] == "build-store":
        build_store(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        raise SystemExit("usage: python bench/workload.py fake-server | build-store DATA_DIR CHUNKS")
