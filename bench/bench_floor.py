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
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# sibling scripts (bench/ is on sys.path when run)
import workload as wl
from bench_engine import int_list

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
        runs: dict[str, list[float]] = {name: [] for name in steps}
        n = 1
        for r in range(args.rounds):
            for name, step in steps.items():
                runs[name].append(await cpu_per_call(step, n, args.answers))
                n += args.answers + 50
            latest = ", ".join(f"{v[-1]:.3f}" for v in runs.values())
            print(f"  round {r + 1}: {latest}; load {wl.load_average()}", flush=True)
        med = {name: statistics.median(v) for name, v in runs.items()}
        parts = sum(v for name, v in med.items() if name not in ("bare pipeline", "engine.handle"))
        print(f"\nCPU per answer at c=1, {store.chunks:,} chunks, medians of {args.rounds} rounds of {args.answers}:")
        for name, value in med.items():
            print(f"  {name:32s} {value:7.3f} ms")
        print(f"  {'sum of the parts alone':32s} {parts:7.3f} ms")
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
    args = p.parse_args()
    print("bothbot's answer against the floor of its parts (bench/bench_floor.py)")
    for line in wl.machine_lines():
        print(line)
    with tempfile.TemporaryDirectory(prefix="bothbot-floor-") as tmp:
        root = args.data_root or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        with wl.FakeModelProcess() as fake:
            for chunks in args.chunks:
                store = wl.prepare_store(root, chunks)
                print(f"store of {chunks:,} chunks; the model fake at {fake.base_url}; load {wl.load_average()}")
                print("  per round (ms): " + ", ".join(["begin", "search", "stream", "save", "bare", "engine"]))
                asyncio.run(run(args, store, fake.base_url))
    print(f"load average at the end {wl.load_average()}")


if __name__ == "__main__":
    main()
