"""Engine cost per answer: dedup, limits, history, retrieval, prompt, streamed model call, persist.

Runs the real engine against a real Redis (or in-process state with --memory) and the local
OpenAI-compatible fake, over a small ingested knowledge base. Prints wall and CPU time per answer.

    python bench/bench_engine.py [--answers 300] [--memory] [--redis redis://127.0.0.1:6379/15]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.messages import FinalAnswer, IncomingMessage
from bot.runtime import Runtime
from bot.settings import load_settings
from tests.fakes.openai_server import FakeOpenAI

TOPICS = ["laptops", "holidays", "vpn", "expenses", "onboarding", "security", "travel", "payroll"]


def write_corpus(docs: Path) -> None:
    docs.mkdir()
    for i, topic in enumerate(TOPICS * 25):
        Path(docs, f"{topic}-{i}.md").write_text(
            f"# {topic.title()} {i}\n\n## Policy\n\nThe {topic} policy number {i} says to open a ticket "
            f"with the {topic} team and wait {i % 7 + 1} days.\n\n## Contacts\n\nAsk #{topic}-help.\n"
        )


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--answers", type=int, default=300)
    parser.add_argument("--memory", action="store_true", help="in-process state instead of Redis")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp, "docs")
        write_corpus(docs)
        async with FakeOpenAI(reply_text="Open a ticket with the team and wait [1]. " * 5) as fake:
            prefix = f"bench:{uuid.uuid4().hex[:8]}"
            settings = load_settings(
                redis_url=None if args.memory else args.redis,
                redis_prefix=prefix,
                data_dir=Path(tmp, "data"),
                openai_base_url=fake.base_url,
                openai_api_key="sk-bench",
                rate_limit_user=0,
                rate_limit_channel=0,
            )
            runtime = await Runtime.start(settings)
            service = runtime.knowledge
            await service.ingest_paths([docs])  # type: ignore[attr-defined]
            walls: list[float] = []
            cpus: list[float] = []
            for i in range(args.answers):
                topic = TOPICS[i % len(TOPICS)]
                msg = IncomingMessage(
                    platform="slack",
                    workspace="T",
                    channel=f"C{i % 4}",
                    user=f"U{i % 10}",
                    text=f"What does the {topic} policy say about tickets?",
                    event_id=uuid.uuid4().hex,
                    thread=f"t{i % 20}",
                )
                w0, c0 = time.perf_counter(), time.process_time()
                final = None
                async for event in runtime.engine.handle(msg):
                    final = event
                walls.append(time.perf_counter() - w0)
                cpus.append(time.process_time() - c0)
                assert isinstance(final, FinalAnswer) and final.kind == "answer", final
            keys = [k async for k in runtime.state.redis.scan_iter(match=f"{prefix}:*")]
            if keys:
                await runtime.state.redis.delete(*keys)
            await runtime.aclose()

    def ms(values: list[float], q: float) -> str:
        ordered = sorted(values)
        return f"{ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000:.2f} ms"

    state = "in-process" if args.memory else "Redis"
    print(f"engine, {args.answers} answers, state {state}, 200 documents, 60-word streamed answers")
    print(
        f"  wall per answer: p50 {ms(walls, 0.5)}, p99 {ms(walls, 0.99)}, mean {statistics.mean(walls) * 1000:.2f} ms"
    )
    cpu_mean = statistics.mean(cpus) * 1000
    print(f"  CPU per answer (bot + in-process fake server): p50 {ms(cpus, 0.5)}, mean {cpu_mean:.2f} ms")


if __name__ == "__main__":
    asyncio.run(main())
