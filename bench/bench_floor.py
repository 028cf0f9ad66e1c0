"""bothbot's answer against the floor of its parts, in one process (issue #13): prints numbers, asserts nothing.

    python bench/bench_floor.py [--chunks 10000] [--answers 2000] [--rounds 3] [--data-root DIR]

The workload is ``bench/workload.py``'s (the engine benchmark's), at concurrency 1. Measured in
one process, alternately, CPU per answer (``time.process_time``) of:

* each part alone, as the engine calls it: the Redis script that starts a message
  (``StateStore.begin_message``: claim, rate limits, profiles, channel, history), the knowledge
  base search (``retrieve_for_prompt``), the model's streamed answer (``ModelClient.stream`` of the
  engine's 6-message prompt), the Redis script that saves it (``StateStore.save_answer``);
* the bare pipeline: those parts one after the other for each question, with the prompt built by
  ``build_messages`` and a trace of the same fields, and nothing else: no metrics, lease, trace
  id, experiment arm, citations, status events or reply events;
* the engine: ``runtime.engine.handle(IncomingMessage(…))``, consumed to its final answer.

"The engine minus the bare pipeline" is what bothbot's own code costs per answer; "the bare
pipeline minus the sum of its parts alone" is what the parts cost together beyond their cost alone
(each part alone keeps its code and data hot, and skips the event-loop turns between them).

--hand-written adds one more row, a measurement only: the engine with its two Redis scripts sent
over a bare asyncio protocol (hiredis, one connection) and the model's stream read over a bare
HTTP/1.1 connection, put in place of redis-py and aiohttp under the same ``StateStore`` and
``ModelClient`` code. These stand-ins have none of what the libraries bring (pools, timeouts,
retries, TLS, authentication, proxies, reconnection, any HTTP framing but this fake's); they size
what the libraries cost an answer, they are not a way to run bothbot.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# sibling scripts (bench/ is on sys.path when run)
import hiredis
import orjson
import workload as wl
from bench_engine import int_list

from bot.model_client import _parse_sse_lines
from bot.prompts import build_messages, history_within, retrieve_for_prompt
from bot.state import Turn

Step = Callable[[int], Awaitable[None]]


class Floor:
    def __init__(self, system: wl.Bothbot, questions: tuple[str, ...]) -> None:
        self.system = system
        self.questions = questions
        engine = system.runtime.engine
        self.engine = engine
        name = engine.channels.resolve(system.message(0, "").channel_key, {}).profile
        assert name is not None, "the bench channel has a model profile"
        self.profile_name = name
        self.profile = engine.router.profiles[name]
        self.client = engine.router.client(name)
        self.messages = build_messages(
            system_prompt=self.profile.system_prompt, question=questions[0], passages=(), history=(), rag=True
        )
        self.trace: dict[str, Any] = {}

    def question(self, i: int) -> str:
        return self.questions[i % len(self.questions)]

    async def begin(self, i: int) -> Any:
        msg = self.system.message(i % wl.QUESTION_COUNT, self.question(i))
        engine = self.engine
        return await engine.state.begin_message(
            event_id=msg.event_id,
            lease_seconds=engine.settings.event_lease_seconds,
            profiles_key=engine.profiles.key,
            rate_limits=engine._rate_limits(msg),
            channel_key=msg.channel_key,
            conversation_key=msg.conversation_key,
        )

    async def search(self, i: int) -> Any:
        return await retrieve_for_prompt(self.engine.knowledge, self.question(i), wl.SCOPE, wl.TOP_K)

    async def stream(self, i: int) -> str:
        pieces = [item async for item in self.client.stream(self.messages) if isinstance(item, str)]
        return "".join(pieces)

    async def save(self, i: int, *, conversation: str | None = None, finish: Any = None) -> None:
        s = self.engine.settings
        trace = dict(self.trace, created_at=time.time())
        await self.engine.state.save_answer(
            f"floor-{i}",
            trace,
            trace_ttl_seconds=s.trace_ttl_seconds,
            conversation_key=conversation or self.system.message(i % wl.QUESTION_COUNT, "").conversation_key,
            turns=[Turn("user", trace["question"]), Turn("assistant", trace["answer"])],
            max_turns=s.history_max_turns,
            history_ttl_seconds=s.history_ttl_seconds,
            finish=finish,
            dedup_ttl_seconds=s.dedup_ttl_seconds,
        )

    async def pipeline(self, i: int) -> None:
        msg = self.system.message(i % wl.QUESTION_COUNT, self.question(i))
        start = await self.begin(i)
        found, shown = await self.search(i)
        self.messages = build_messages(
            system_prompt=self.profile.system_prompt,
            question=msg.text,
            passages=shown,
            history=history_within(start.history, self.engine.settings.history_token_budget),
            rag=True,
        )
        answer = await self.stream(i)
        self.trace = {
            "question": msg.text, "platform": msg.platform, "channel": msg.channel_key, "thread": msg.thread,
            "conversation": msg.conversation_key, "user": msg.user, "profile": self.profile_name,
            "model": self.profile.model, "rag": True, "chunk_ids": [p.chunk_id for p in found.passages],
            "kind": "answer", "answer": answer, "answer_chars": len(answer),
            "context": [{"chunk_id": p.chunk_id, "source": p.source, "title": p.title, "text": p.text} for p in shown],
        }  # fmt: skip
        await self.save(i, conversation=msg.conversation_key, finish=start.claim)

    async def engine_answer(self, i: int) -> None:
        await self.system.answer(i % wl.QUESTION_COUNT, self.question(i))


class _Replies(asyncio.Protocol):
    """Stand-in (measurement only): RESP replies parsed by hiredis, handed to waiters in order."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader(encoding="utf-8")
        self.waiters: list[asyncio.Future[Any]] = []

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        while (reply := self.reader.gets()) is not False:
            self.waiters.pop(0).set_result(reply)


class _BareScript:
    """Stand-in (measurement only) for a redis-py script object: ``EVALSHA`` on one bare connection."""

    def __init__(self, transport: asyncio.Transport, replies: _Replies, sha: str) -> None:
        self.transport, self.replies, self.sha = transport, replies, sha

    async def __call__(self, keys: list[str], args: list[Any]) -> Any:
        waiter = asyncio.get_running_loop().create_future()
        self.replies.waiters.append(waiter)
        self.transport.write(hiredis.pack_command(("EVALSHA", self.sha, len(keys), *keys, *args)))
        reply = await waiter
        if isinstance(reply, hiredis.ReplyError):
            raise reply
        return reply


class _Chunks(asyncio.Protocol):
    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()

    def data_received(self, data: bytes) -> None:
        self.queue.put_nowait(data)


async def hand_written(floor: Floor, redis_url: str, base_url: str) -> Callable[[bool], None]:
    """Stand-ins (measurement only) under the engine's StateStore and ModelClient; the switch between them."""
    loop = asyncio.get_running_loop()
    state, client = floor.engine.state, floor.client
    where = urlsplit(redis_url)
    transport, replies = await loop.create_connection(_Replies, where.hostname, where.port or 6379)
    waiter = loop.create_future()
    replies.waiters.append(waiter)
    transport.write(hiredis.pack_command(("SELECT", (where.path or "/0").strip("/") or "0")))
    await waiter
    library = {"begin": state._begin_message, "save": state._save_answer, "stream": client.stream}
    bare = {
        "begin": _BareScript(transport, replies, library["begin"].sha),
        "save": _BareScript(transport, replies, library["save"].sha),
    }
    url = urlsplit(base_url)
    http, chunks = await loop.create_connection(_Chunks, url.hostname, url.port)

    async def stream(messages: Any, *, deadline: Any = None) -> Any:
        body = orjson.dumps({"model": client.profile.model, "messages": list(messages), "stream": True,
                             "stream_options": {"include_usage": True}})  # fmt: skip
        head = (f"POST {url.path}/chat/completions HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer "
                f"{wl.API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
        http.write(head.encode() + body)
        rest, ended = b"", False
        while not ended:
            lines = (rest + await chunks.queue.get()).split(b"\n")
            rest = lines.pop()
            ended = any(line.startswith(b"0\r") for line in lines)  # the fake's last chunk
            for item in _parse_sse_lines(lines):
                yield item

    def use(stand_ins: bool) -> None:
        state._begin_message = bare["begin"] if stand_ins else library["begin"]  # type: ignore[assignment]
        state._save_answer = bare["save"] if stand_ins else library["save"]  # type: ignore[assignment]
        client.stream = stream if stand_ins else library["stream"]  # type: ignore[method-assign]

    for script in (library["begin"], library["save"]):  # EVALSHA needs them loaded
        await state.redis.script_load(script.script)
    return use


async def cpu_per_call(step: Step, first: int, count: int) -> float:
    """CPU ms per call of ``step`` over ``count`` calls (after 50 unmeasured ones)."""
    for i in range(first, first + 50):
        await step(i)
    started = time.process_time()
    for i in range(first + 50, first + 50 + count):
        await step(i)
    return (time.process_time() - started) / count * 1000


async def run(args: argparse.Namespace, store: wl.Store, base_url: str) -> None:
    prefix = f"bench-floor-{uuid.uuid4().hex[:8]}"
    system = await wl.Bothbot.open(
        data_dir=store.data_dir, redis_url=args.redis, prefix=prefix, base_url=base_url, questions=store.questions
    )
    try:
        await system.seed(wl.QUESTION_COUNT, store.questions)
        floor = Floor(system, store.questions)
        await floor.pipeline(0)  # a real prompt and trace for the parts measured alone
        steps: dict[str, Step] = {
            "begin_message (Redis script)": floor.begin,
            "retrieve_for_prompt (search)": floor.search,
            "ModelClient.stream (50 chunks)": floor.stream,
            "save_answer (Redis script)": floor.save,
            "bare pipeline": floor.pipeline,
            "engine.handle": floor.engine_answer,
        }
        if args.hand_written:
            use = await hand_written(floor, args.redis, base_url)

            async def engine_on_stand_ins(i: int) -> None:
                use(True)
                try:
                    await floor.engine_answer(i)
                finally:
                    use(False)

            steps["engine.handle, hand-written clients"] = engine_on_stand_ins
        runs: dict[str, list[float]] = {name: [] for name in steps}
        n = 1
        for r in range(args.rounds):
            for name, step in steps.items():
                runs[name].append(await cpu_per_call(step, n, args.answers))
                n += args.answers + 50
            latest = ", ".join(f"{v[-1]:.3f}" for v in runs.values())
            print(f"  round {r + 1}: {latest}; load {wl.load_average()}", flush=True)
        med = {name: statistics.median(v) for name, v in runs.items()}
        parts = sum(v for name, v in list(med.items())[:4])
        print(f"\nCPU per answer at c=1, {store.chunks:,} chunks, medians of {args.rounds} rounds of {args.answers}:")
        for name, value in med.items():
            print(f"  {name:36s} {value:7.3f} ms")
        print(f"  {'sum of the parts alone':36s} {parts:7.3f} ms")
        engine, bare = med["engine.handle"], med["bare pipeline"]
        print(f"bothbot's own code (engine - bare pipeline): {engine - bare:.3f} ms ({(engine - bare) / engine:.0%}); "
              f"the parts together beyond alone (bare pipeline - sum): {bare - parts:.3f} ms")  # fmt: skip
    finally:
        await system.aclose()
        await wl.delete_keys(args.redis, prefix)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int_list, default=[10_000])
    p.add_argument("--answers", type=int, default=2000, help="measured calls per part and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--redis", default="redis://127.0.0.1:6379/15", help="Redis URL (keys under a unique prefix)")
    p.add_argument("--data-root", type=Path, default=None, help="keep the stores here and reuse them")
    p.add_argument("--hand-written", action="store_true", help="also the engine over stand-in clients (see above)")
    args = p.parse_args()
    print("bothbot's answer against the floor of its parts (bench/bench_floor.py)")
    for line in wl.machine_lines():
        print(line)
    with wl.stores_root(args.data_root) as root, wl.FakeModelProcess() as fake:
        for chunks in args.chunks:
            store = wl.prepare_store(root, chunks)
            print(f"store of {chunks:,} chunks; the model fake at {fake.base_url}; load {wl.load_average()}")
            names = ["begin", "search", "stream", "save", "bare", "engine"] + ["hand-written"] * args.hand_written
            print("  per round (ms): " + ", ".join(names))
            asyncio.run(run(args, store, fake.base_url))
    print(f"load average at the end {wl.load_average()}")


if __name__ == "__main__":
    main()
