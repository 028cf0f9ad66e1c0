"""bothbot vs LangChain vs LlamaIndex on the same workload, side by side in one run (issue #13).

    pip install -e ".[bench]"
    pip install --no-deps "llama-index-llms-openai>=0.8,<0.9" "llama-index-llms-openai-like>=0.8,<0.9"
    python bench/bench_peers.py [--chunks 10000] [--rounds 2] [--answers-c1 300] [--answers-c50 1000]
                                [--systems bothbot,langchain,llamaindex[,bothbot-stand-ins]]
                                [--redis URL] [--data-root DIR]

(LlamaIndex's OpenAI LLM pins ``openai<3``; bothbot needs ``openai>=3.50``, so it is installed
without its dependencies and runs on bothbot's openai.)

Every system answers ``bench/workload.py``'s workload on bothbot's own retriever: the same
embedded store (built once by bothbot's ingest path), the same questions and seeded 20-message
histories in the same Redis, a 6-message prompt (system with bothbot's instructions and the 5
passages, the last 4 history messages, the question), the same fake model server (its own
process, 50 chunks), the question and answer appended to the history in Redis.

* bothbot: ``Runtime.start(settings)``, ``runtime.engine.handle(IncomingMessage(…))`` (dedup
  claim, rate limits, channel settings, trace and the rest of what bothbot does per answer).
* LangChain (LCEL): ``RunnablePassthrough.assign(context=question | retriever | format) | prompt |
  ChatOpenAI(streaming)``, wrapped in ``RunnableWithMessageHistory`` with langchain-community's
  ``RedisChatMessageHistory`` (one history object per conversation, all on one Redis client: the
  class otherwise opens a connection pool per object); the prompt's ``MessagesPlaceholder`` keeps
  the last 4 messages; the retriever is a ``BaseRetriever`` calling ``KnowledgeBase.search``;
  ``astream`` consumed to the end (the history is written before it ends).
* LlamaIndex: ``ContextChatEngine`` with a ``BaseRetriever`` calling ``KnowledgeBase.search``, a
  ``ChatMemoryBuffer`` over ``RedisChatStore`` (one store, a key per conversation; its token limit
  keeps the last 4 messages) and ``OpenAILike`` at the fake; ``astream_chat`` and its
  ``async_response_gen`` consumed to the end, then the history write it started awaited.

* bothbot-stand-ins (only when named in --systems; concurrency 1 only): bothbot as above, with
  redis-py and aiohttp replaced under the same ``StateStore`` and ``ModelClient`` code by
  ``bench_floor.py``'s measurement-only stand-ins (one bare asyncio connection to Redis with
  hiredis, one bare HTTP/1.1 connection to the fake). It sizes how far bothbot's CPU per answer
  could fall if it owned those clients; it is not a way to run bothbot.

The systems run one after the other, each in its own process (qdrant-edge lets one process open
the store), alternating A B C A B C … for --rounds rounds. Each process runs concurrency 1
(--answers-c1) then 50 (--answers-c50), each after unmeasured warm-up answers, and prints one JSON
line. Printed per system, medians over the rounds: c=1 p50 latency, CPU per answer at c=1 and at
c=50 (that process only), answers/s at c=50, peak RSS, and the ratio peer CPU per answer / bothbot
CPU per answer; then every round's numbers, and what the fake model received.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

# sibling scripts (bench/ is on sys.path when run)
import workload as wl
from bench_floor import Floor, hand_written

from retrieval.api import KnowledgeBase
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.factory import open_knowledge_base

SCRIPT = Path(__file__).resolve()
SYSTEMS = ("bothbot", "langchain", "llamaindex")
STAND_INS = "bothbot-stand-ins"  # measured only when named, at concurrency 1 only
VERSIONS = {
    "bothbot": ["bothbot", "redis", "openai", "qdrant-edge-py"],
    STAND_INS: ["bothbot", "hiredis", "qdrant-edge-py"],
    "langchain": ["langchain-core", "langchain-openai", "langchain-community", "openai", "redis"],
    "llamaindex": ["llama-index-core", "llama-index-llms-openai", "llama-index-llms-openai-like",
                   "llama-index-storage-chat-store-redis", "openai", "redis"],
}


# --- LangChain ---------------------------------------------------------------------------------------------


class LangChainSystem:
    name = "langchain"

    def __init__(self, knowledge: KnowledgeBase, redis_url: str, prefix: str, base_url: str) -> None:
        import redis
        from langchain_community.chat_message_histories import RedisChatMessageHistory
        from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
        from langchain_core.documents import Document as LcDocument
        from langchain_core.prompts import ChatPromptTemplate, MessagesPlaceholder
        from langchain_core.retrievers import BaseRetriever
        from langchain_core.runnables import RunnableLambda, RunnablePassthrough
        from langchain_core.runnables.history import RunnableWithMessageHistory
        from langchain_openai import ChatOpenAI
        from pydantic import SecretStr

        class BothbotRetriever(BaseRetriever):
            """bothbot's ``KnowledgeBase.search`` as a LangChain retriever."""

            knowledge: Any
            k: int = wl.TOP_K

            def _get_relevant_documents(
                self, query: str, *, run_manager: CallbackManagerForRetrieverRun
            ) -> list[LcDocument]:
                raise NotImplementedError("the benchmark calls the async path")

            async def _aget_relevant_documents(
                self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun
            ) -> list[LcDocument]:
                found = await self.knowledge.search(query, wl.SCOPE, limit=self.k)
                return [
                    LcDocument(page_content=p.text, metadata={"title": p.title, "source": p.source, "id": p.chunk_id})
                    for p in found.passages
                ]

        def format_docs(docs: list[LcDocument]) -> str:
            return "\n\n".join(f"[{i}] {d.metadata['title']}\n{d.page_content}" for i, d in enumerate(docs, 1))

        self._history_class = RedisChatMessageHistory
        self.redis_url = redis_url
        self.prefix = prefix
        self.client = redis.Redis.from_url(redis_url)
        self.histories: dict[str, RedisChatMessageHistory] = {}
        prompt = ChatPromptTemplate.from_messages(
            [
                ("system", wl.SYSTEM_PROMPT + "\n\nSources:\n\n{context}"),
                MessagesPlaceholder("history", n_messages=wl.PROMPT_HISTORY_MESSAGES),
                ("human", "{question}"),
            ]
        )
        llm = ChatOpenAI(model=wl.MODEL, base_url=base_url, api_key=SecretStr(wl.API_KEY), streaming=True, timeout=30)
        retriever = BothbotRetriever(knowledge=knowledge)
        question = RunnableLambda(lambda x: x["question"])
        chain = RunnablePassthrough.assign(context=question | retriever | format_docs) | prompt | llm
        self.chain = RunnableWithMessageHistory(
            chain,
            self.history,
            input_messages_key="question",
            history_messages_key="history",
        )
        self.knowledge = knowledge

    def history(self, session_id: str) -> Any:
        return self.histories[session_id]

    async def seed(self, conversations: int, questions: Sequence[str]) -> None:
        from langchain_core.messages import AIMessage, BaseMessage, HumanMessage

        for conversation in range(conversations):
            history = self._history_class(
                str(conversation), url=self.redis_url, key_prefix=f"{self.prefix}:history:", ttl=wl.HISTORY_TTL_SECONDS
            )
            history.redis_client = self.client  # one client (and pool) for all, as bothbot has
            messages: list[BaseMessage] = [
                HumanMessage(text) if role == "user" else AIMessage(text)
                for role, text in wl.seeded_history(conversation, questions)
            ]
            history.add_messages(messages)
            self.histories[str(conversation)] = history

    async def answer(self, conversation: int, question: str) -> None:
        pieces: list[str] = []
        config: Any = {"configurable": {"session_id": str(conversation)}}
        async for chunk in self.chain.astream({"question": question}, config=config):
            pieces.append(str(chunk.content))
        if "".join(pieces) != wl.REPLY_TEXT:
            raise RuntimeError(f"langchain answered {''.join(pieces)!r}")

    async def aclose(self) -> None:
        self.client.close()
        await self.knowledge.aclose()


# --- LlamaIndex --------------------------------------------------------------------------------------------


class LlamaIndexSystem:
    name = "llamaindex"

    def __init__(self, knowledge: KnowledgeBase, redis_url: str, prefix: str, base_url: str) -> None:
        from llama_index.core.base.base_retriever import BaseRetriever
        from llama_index.core.chat_engine import ContextChatEngine
        from llama_index.core.memory import ChatMemoryBuffer
        from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
        from llama_index.core.utils import get_tokenizer
        from llama_index.llms.openai_like import OpenAILike
        from llama_index.storage.chat_store.redis import RedisChatStore

        class BothbotRetriever(BaseRetriever):
            """bothbot's ``KnowledgeBase.search`` as a LlamaIndex retriever."""

            def __init__(self, kb: KnowledgeBase) -> None:
                super().__init__()
                self._kb = kb

            def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
                raise NotImplementedError("the benchmark calls the async path")

            async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
                found = await self._kb.search(query_bundle.query_str, wl.SCOPE, limit=wl.TOP_K)
                return [
                    NodeWithScore(
                        node=TextNode(id_=p.chunk_id, text=p.text, metadata={"title": p.title, "source": p.source}),
                        score=p.score,
                    )
                    for p in found.passages
                ]

        self.knowledge = knowledge
        self.prefix = prefix
        self.store = RedisChatStore(redis_url=redis_url, ttl=wl.HISTORY_TTL_SECONDS)
        self.llm = OpenAILike(
            model=wl.MODEL, api_base=base_url, api_key=wl.API_KEY, is_chat_model=True,
            context_window=128_000, timeout=30,
        )
        self.retriever = BothbotRetriever(knowledge)
        self._memory_class = ChatMemoryBuffer
        self._engine_class = ContextChatEngine
        self._tokenizer = get_tokenizer()
        self.engines: dict[int, ContextChatEngine] = {}
        self.token_limit = 0

    def _token_limit(self, questions: Sequence[str]) -> int:
        """A ``ChatMemoryBuffer`` token limit that keeps exactly the last 4 messages of every conversation.

        The buffer drops the oldest messages (never leaving an assistant message first) until
        ``tokens(" ".join(contents))`` fits: 4 are kept when 4 fit and 6 do not.
        """

        def tokens(texts: list[str]) -> int:
            return len(self._tokenizer(" ".join(texts)))

        four = max(tokens([q, wl.REPLY_TEXT, q2, wl.REPLY_TEXT]) for q, q2 in itertools.pairwise(questions))
        six = min(
            tokens([q, wl.REPLY_TEXT, q2, wl.REPLY_TEXT, q3, wl.REPLY_TEXT])
            for q, q2, q3 in zip(questions, questions[1:], questions[2:], strict=False)
        )
        if four >= six:
            raise SystemExit("questions vary too much in length to budget exactly 4 history messages")
        return (four + six) // 2

    async def seed(self, conversations: int, questions: Sequence[str]) -> None:
        from llama_index.core.llms import ChatMessage, MessageRole

        self.token_limit = self._token_limit(questions)
        for conversation in range(conversations):
            key = f"{self.prefix}:history:{conversation}"
            await self.store.aset_messages(
                key,
                [
                    ChatMessage(role=MessageRole.USER if role == "user" else MessageRole.ASSISTANT, content=text)
                    for role, text in wl.seeded_history(conversation, questions)
                ],
            )
            memory = self._memory_class.from_defaults(
                chat_store=self.store, chat_store_key=key, token_limit=self.token_limit
            )
            self.engines[conversation] = self._engine_class.from_defaults(
                retriever=self.retriever, memory=memory, llm=self.llm, system_prompt=wl.SYSTEM_PROMPT
            )

    async def answer(self, conversation: int, question: str) -> None:
        response = await self.engines[conversation].astream_chat(question)
        pieces = [delta async for delta in response.async_response_gen()]
        task = getattr(response, "awrite_response_to_history_task", None)
        if task is not None:
            await task
        if "".join(pieces) != wl.REPLY_TEXT:
            raise RuntimeError(f"llamaindex answered {''.join(pieces)!r}")

    async def aclose(self) -> None:
        await self.knowledge.aclose()


# --- bothbot over the measurement-only stand-ins ---------------------------------------------------------


class BothbotOnStandIns:
    """bothbot's engine with its two Redis scripts and its model stream on ``bench_floor``'s stand-ins,
    which hold one connection each: one answer at a time."""

    name = STAND_INS

    def __init__(self, bothbot: wl.Bothbot, use_stand_ins: Callable[[bool], None]) -> None:
        self.bothbot = bothbot
        self._use_stand_ins = use_stand_ins
        self._answering = False
        use_stand_ins(True)

    async def seed(self, conversations: int, questions: Sequence[str]) -> None:
        await self.bothbot.seed(conversations, questions)

    async def answer(self, conversation: int, question: str) -> None:
        if self._answering:
            raise RuntimeError(f"{STAND_INS} answers one question at a time (run it at concurrency 1)")
        self._answering = True
        try:
            await self.bothbot.answer(conversation, question)
        finally:
            self._answering = False

    async def aclose(self) -> None:
        self._use_stand_ins(False)  # the runtime closes its own clients
        await self.bothbot.aclose()


# --- the child process --------------------------------------------------------------------------------------


async def open_system(args: argparse.Namespace, store: wl.Store) -> wl.System:
    if args.child in ("bothbot", STAND_INS):
        bothbot = await wl.Bothbot.open(
            data_dir=store.data_dir, redis_url=args.redis, prefix=args.prefix, base_url=args.base_url,
            questions=store.questions,
        )
        if args.child == "bothbot":
            return bothbot
        use_stand_ins = await hand_written(Floor(bothbot, store.questions), args.redis, args.base_url)
        return BothbotOnStandIns(bothbot, use_stand_ins)
    knowledge = await open_knowledge_base(RetrievalEnvironment(RetrievalConfig(), store.data_dir))
    if args.child == "langchain":
        return LangChainSystem(knowledge, args.redis, args.prefix, args.base_url)
    if args.child == "llamaindex":
        return LlamaIndexSystem(knowledge, args.redis, args.prefix, args.base_url)
    await knowledge.aclose()
    raise SystemExit(f"unknown system {args.child!r}")


# --- the parent ------------------------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=10_000, help="synthetic chunks in the store (10000)")
    p.add_argument("--rounds", type=int, default=2, help="rounds of A B C (2)")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help=f"which, in this order (default {','.join(SYSTEMS)}; also {STAND_INS})")
    p.add_argument("--answers-c1", type=int, default=300, help="measured answers at concurrency 1 (300)")
    p.add_argument("--answers-c50", type=int, default=1000, help="measured answers at concurrency 50 (1000)")
    p.add_argument("--warmup", type=int, default=None, help="unmeasured answers before each phase (max(50, 2*c))")
    p.add_argument("--redis", default="redis://127.0.0.1:6379/15", help="Redis URL (keys under a unique prefix)")
    p.add_argument("--data-root", type=Path, default=None, help="keep the store here and reuse it")
    wl.child_arguments(p)
    return p


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def summary(results: list[dict[str, Any]], systems: Sequence[str]) -> list[str]:
    per: dict[str, dict[str, list[float]]] = {}
    for r in results:
        row = per.setdefault(r["system"], {})
        c1 = r["phases"][0]
        cells = [("p50", c1["p50_ms"]), ("p99", c1["p99_ms"]), ("cpu1", c1["cpu_ms_per_answer"])]
        cells.append(("rss", r["peak_rss_mb"]))
        if len(r["phases"]) > 1:  # the stand-ins run concurrency 1 only
            c50 = r["phases"][1]
            cells += [("cpu50", c50["cpu_ms_per_answer"]), ("rate50", c50["answers_per_s"]), ("p50_50", c50["p50_ms"])]
        for key, value in cells:
            row.setdefault(key, []).append(float(value))
    med = {s: {k: median(v) for k, v in row.items()} for s, row in per.items()}
    base = med.get("bothbot")

    def cell(m: dict[str, float], key: str, width: int, digits: int) -> str:
        return f"{m[key]:>{width}.{digits}f}" if key in m else f"{'-':>{width}}"

    def ratio(m: dict[str, float], key: str, width: int) -> str:
        return f"{f'{m[key] / base[key]:.2f}x' if base and key in m and key in base else '-':>{width}}"

    head = (f"{'system':<17} {'c=1 p50 ms':>10} {'c=1 p99 ms':>10} {'CPU ms/ans c=1':>14} {'CPU ms/ans c=50':>15} "
            f"{'ans/s c=50':>10} {'c=50 p50 ms':>11} {'peak RSS MB':>11} {'CPU ratio c=1':>13} {'CPU ratio c=50':>14}")
    lines = [head, "-" * len(head)]
    for s in systems:
        if s not in med:
            continue
        m = med[s]
        lines.append(
            f"{s:<17} {cell(m, 'p50', 10, 2)} {cell(m, 'p99', 10, 2)} {cell(m, 'cpu1', 14, 3)} "
            f"{cell(m, 'cpu50', 15, 3)} {cell(m, 'rate50', 10, 1)} {cell(m, 'p50_50', 11, 1)} {cell(m, 'rss', 11, 0)} "
            f"{ratio(m, 'cpu1', 13)} {ratio(m, 'cpu50', 14)}"
        )
    if STAND_INS in med:
        floor = med[STAND_INS]["cpu1"]
        peers = ", ".join(f"{s} {med[s]['cpu1'] / floor:.2f}x" for s in systems if s in med and s != STAND_INS)
        lines.append(f"CPU per answer at c=1 against {STAND_INS} (measurement only, see above): {peers}")
    return lines


def main() -> None:
    args = parser().parse_args()
    if args.child:
        asyncio.run(wl.child_main(args, open_system))
        return
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in systems if s not in (*SYSTEMS, STAND_INS)]
    if unknown:
        raise SystemExit(f"unknown system(s) {', '.join(unknown)}; known: {', '.join((*SYSTEMS, STAND_INS))}")
    print("bothbot vs LangChain vs LlamaIndex, same workload, same process layout (bench/bench_peers.py)")
    for line in wl.machine_lines():
        print(line)
    for s in systems:
        print(f"  {s}: {wl.versions_line(VERSIONS[s])}")
    print(f"workload: {args.chunks:,} chunks of {wl.WORDS_PER_CHUNK} words, top-{wl.TOP_K} BM25 on bothbot's "
          f"retriever; {wl.HISTORY_MESSAGES}-message histories in Redis {args.redis}; prompt of "
          f"{wl.PROMPT_MESSAGES} messages; {wl.ANSWER_CHUNKS}-chunk streamed answers, fake model in its own process; "
          f"c=1: {args.answers_c1} answers, c=50: {args.answers_c50} answers per process; {args.rounds} rounds")
    run_id = uuid.uuid4().hex[:8]
    results: list[dict[str, Any]] = []
    failed: list[str] = []
    with wl.stores_root(args.data_root) as root:
        store = wl.prepare_store(root, args.chunks)
        print(store.line(), flush=True)
        with wl.FakeModelProcess() as fake:
            for rnd in range(1, args.rounds + 1):
                for s in systems:
                    child = [
                        "--child", s, "--data-dir", str(store.data_dir),
                        "--base-url", fake.base_url,
                        "--prefix", f"bench-{run_id}-{s}-{rnd}", "--redis", args.redis,
                        "--phases", f"1:{args.answers_c1}" + ("" if s == STAND_INS else f",50:{args.answers_c50}"),
                        *(["--warmup", str(args.warmup)] if args.warmup is not None else []),
                    ]
                    started = time.perf_counter()
                    result = wl.run_child(SCRIPT, child, cwd=root)
                    if result is None:
                        failed.append(f"round {rnd} {s}")
                        continue
                    result["round"] = rnd
                    results.append(result)
                    c1, *c50 = result["phases"]
                    at50 = "".join(f"c=50 {p['answers_per_s']:.1f} ans/s, CPU/ans {p['cpu_ms_per_answer']:.3f} ms; "
                                   for p in c50)  # fmt: skip
                    print(
                        f"  round {rnd} {s:<17}: c=1 p50 {c1['p50_ms']:.2f} ms, "
                        f"CPU/ans {c1['cpu_ms_per_answer']:.3f} ms; {at50}"
                        f"peak RSS {result['peak_rss_mb']:.0f} MB (VmHWM {result['vm_hwm_mb']:.0f}); "
                        f"{time.perf_counter() - started:.0f} s; "
                        f"load {wl.load_average()}",
                        flush=True,
                    )
                    for line in result["stderr_notable"]:
                        print(f"    its stderr ({result['stderr_lines']} lines) says: {line[:200]}", flush=True)
        asyncio.run(wl.delete_keys(args.redis, f"bench-{run_id}-"))
    print()
    print(f"medians over {args.rounds} rounds (CPU: the system's process only; ratio: peer / bothbot)")
    for line in summary(results, systems):
        print(line)
    print()
    print("what the fake model received, per round and phase (messages per prompt; distinct sources in the system "
          "message), fake's own CPU per answer:")
    for r in results:
        for phase in r["phases"]:
            print(f"  round {r['round']} {r['system']:<17} c={phase['concurrency']:<3} {phase['answers']} answers: "
                  f"{wl.check_line(phase)}; fake CPU {phase['fake_cpu_ms_per_answer']:.3f} ms/answer; "
                  f"load {phase['load']}")
    if failed:
        print(f"failed (see above): {'; '.join(failed)}")
    print(f"load average at the end {wl.load_average()}")


if __name__ == "__main__":
    main()
