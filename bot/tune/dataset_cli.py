"""``bothbot tune dataset`` (RAFT training data) and ``bothbot tune validate`` (check a training file).

Exit codes: 0 done; 1 done, with some rows skipped or problems found; 2 bad input or configuration.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.questions import QuestionFileError, QuestionItem, load_questions
from bot.settings import Settings
from bot.tune.dataset import (
    DEFAULT_EPOCHS,
    TRAIN_FILE,
    VALIDATION_FILE,
    BuildResult,
    RaftOptions,
    Skipped,
    StoredKnowledge,
    build_examples,
    manifest,
    split_by_question,
    strip_citations,
    write_dataset,
)
from bot.tune.teacher import TeacherOptions, generate
from bot.tune.tokens import TokenCounter, TokenizerError, token_counter
from bot.tune.validate import MIN_EXAMPLES, ValidationReport, validate_file
from retrieval.api import SearchScope

if TYPE_CHECKING:
    from bot.runtime import Runtime

SHOWN_PROBLEMS = 20


class UsageError(Exception):
    """Bad input or configuration: printed as ``bothbot tune <command>: <message>``, exit 2."""


@dataclass(frozen=True)
class Target:
    """What ``--target-model`` names: a profile (its model and system prompt), a model id, or a local model."""

    name: str | None
    model: str | None
    system_prompt: str | None


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tune dataset`` and ``tune validate``."""
    dataset = commands.add_parser(
        "dataset",
        help="build RAFT training data (train/validation JSONL, question sidecars, manifest)",
        description="Build chat fine-tuning data whose context is what the retriever really returns for each "
        "question, with the gold passage present in a share of the examples and left out in the rest (RAFT).",
    )
    source = dataset.add_mutually_exclusive_group(required=True)
    source.add_argument("--qa", type=Path, metavar="FILE",
                        help="JSON Lines or CSV with question, answer and optionally source or chunk_id")
    source.add_argument("--from-kb", action="store_true",
                        help="a teacher model writes questions and grounded answers from the knowledge base's chunks")
    source.add_argument("--from-feedback", action="store_true", help="answers that users rated up")
    dataset.add_argument("--teacher", metavar="PROFILE", help="profile that writes questions and answers (--from-kb)")
    dataset.add_argument("--questions-per-chunk", type=int, default=3, metavar="N", help="teacher questions a chunk")
    dataset.add_argument("--concurrency", type=int, default=4, metavar="N", help="teacher requests in flight")
    dataset.add_argument("--max-chunks", type=int, metavar="N", help="use a seeded sample of N chunks (--from-kb)")
    dataset.add_argument("--kb", action="append", metavar="NAME",
                         help="knowledge base to retrieve from (repeatable; default: the configured default_kbs)")
    dataset.add_argument("--golden-share", type=float, default=0.8, metavar="P",
                         help="share of examples whose context holds the gold passage (default 0.8)")
    dataset.add_argument("--k", type=int, metavar="K", help="passages in each context (default: retrieval top_k)")
    dataset.add_argument("--validation", type=float, default=0.1, metavar="P",
                         help="share of examples held out for validation, split by question (default 0.1)")
    dataset.add_argument("--seed", type=int, default=0)
    dataset.add_argument("--epochs", type=int, default=DEFAULT_EPOCHS, metavar="N",
                         help=f"epochs for the training-token estimate in the manifest (default {DEFAULT_EPOCHS})")
    _target_arguments(dataset)
    dataset.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    dataset.add_argument("--force", action="store_true", help="write into a non-empty DIR")
    dataset.set_defaults(handler=run_dataset)

    validate = commands.add_parser(
        "validate",
        help="check a chat fine-tuning file (format, roles, duplicates, empty answers, token limits)",
        description="Check a chat fine-tuning JSONL file before it is uploaded or trained on; every problem "
        "is named with its line number.",
    )
    validate.add_argument("file", type=Path, metavar="FILE")
    _target_arguments(validate)
    validate.set_defaults(handler=run_validate)


def _target_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target-model", metavar="ID",
                        help="profile name, model id (gpt-4o-mini…), local model folder or .gguf file")
    parser.add_argument("--max-tokens", type=int, metavar="N",
                        help="tokens an example may have (default: the target model's training context)")


async def run_validate(args: argparse.Namespace, settings: Settings) -> int:
    try:
        counter = await _counter(_target(args.target_model, settings), args.max_tokens)
        if not args.file.is_file():
            raise UsageError(f"{args.file}: no such file")
        report = await validate_file(args.file, counter)
    except (UsageError, OSError) as exc:
        print(f"bothbot tune validate: {exc}", file=sys.stderr)
        return 2
    _print_report(report)
    return 0 if report.ok else 1


async def run_dataset(args: argparse.Namespace, settings: Settings) -> int:
    try:
        _check_arguments(args)
        target = _target(args.target_model, settings)
        counter = await _counter(target, args.max_tokens)
        return await _dataset(args, settings, target, counter)
    except UsageError as exc:
        print(f"bothbot tune dataset: {exc}", file=sys.stderr)
        return 2


def _check_arguments(args: argparse.Namespace) -> None:
    if not 0.0 <= args.golden_share <= 1.0:
        raise UsageError(f"--golden-share {args.golden_share} is not between 0 and 1")
    if not 0.0 <= args.validation < 1.0:
        raise UsageError(f"--validation {args.validation} is not between 0 and 1")
    if args.k is not None and not 1 <= args.k <= 50:
        raise UsageError(f"--k {args.k} is not between 1 and 50")
    for name in ("questions_per_chunk", "concurrency", "max_chunks", "epochs", "max_tokens"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise UsageError(f"--{name.replace('_', '-')} must be at least 1")
    if args.from_kb and not args.teacher:
        raise UsageError("--from-kb needs --teacher PROFILE (the model that writes questions and answers)")
    if args.teacher and not args.from_kb:
        raise UsageError("--teacher is used only with --from-kb")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file, not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.force:
        raise UsageError(f"--out {out} is not empty; pass --force to overwrite its files")


def _target(name: str | None, settings: Settings) -> Target:
    if name is None:
        return Target(None, None, None)
    profile = settings.profiles.get(name)
    if profile is not None:
        return Target(name, profile.model, profile.system_prompt)
    return Target(None, name, None)


async def _counter(target: Target, max_tokens: int | None) -> TokenCounter:
    try:
        return await token_counter(target.model, max_tokens=max_tokens)
    except TokenizerError as exc:
        raise UsageError(str(exc)) from exc


async def _dataset(args: argparse.Namespace, settings: Settings, target: Target, counter: TokenCounter) -> int:
    from bot.runtime import Runtime

    runtime = await Runtime.start(settings)
    try:
        knowledge = runtime.knowledge
        if not isinstance(knowledge, StoredKnowledge):
            raise UsageError("this knowledge base cannot list its chunks")
        kbs = tuple(args.kb or settings.default_kbs)
        await _check_kbs(knowledge, kbs)
        options = RaftOptions(
            scope=SearchScope(kbs=kbs, channel=None),
            k=args.k or settings.retrieval.top_k,
            golden_share=args.golden_share,
            seed=args.seed,
            system_prompt=target.system_prompt,
        )
        items, skipped, source = await _items(args, settings, runtime, knowledge, kbs)
        if len(items) < MIN_EXAMPLES:
            _print_skipped(skipped)
            raise UsageError(f"only {len(items)} usable question(s); at least {MIN_EXAMPLES} are needed")
        result = await build_examples(knowledge, items, options, counter, skipped=skipped)
    finally:
        await runtime.aclose()
    _print_skipped(result.skipped)
    if len(result.examples) < MIN_EXAMPLES:
        raise UsageError(f"only {len(result.examples)} example(s) could be built; at least {MIN_EXAMPLES} are needed")
    return await _write(args, settings, target, counter, options, result, source)


async def _write(
    args: argparse.Namespace,
    settings: Settings,
    target: Target,
    counter: TokenCounter,
    options: RaftOptions,
    result: BuildResult,
    source: dict[str, Any],
) -> int:
    train, validation = split_by_question(result.examples, args.validation, args.seed)
    retriever = settings.retrieval.model_dump(mode="json", exclude={"embedding_api_key", "embedding_base_url"})
    meta = manifest(
        source=source, result=result, train=train, validation=validation, options=options, retriever=retriever,
        counter=counter, target_model=target.name or target.model, epochs=args.epochs,
    )
    await write_dataset(args.out, train, validation, meta)
    reports = [await validate_file(args.out / TRAIN_FILE, counter)]
    if validation:
        reports.append(await validate_file(args.out / VALIDATION_FILE, counter, min_examples=1))
    for report in reports:
        _print_report(report)
    counts = meta["counts"]
    print(
        f"{args.out}: {counts['train']} training and {counts['validation']} validation examples; gold passage in "
        f"{counts['gold_in_context']}, left out in {counts['gold_left_out']}; {counts['skipped']} row(s) skipped; "
        f"about {meta['training_tokens']['estimated_total']} training tokens at {args.epochs} epochs "
        f"({counter.name})"
    )
    return 0 if not result.skipped and all(r.ok for r in reports) else 1


async def _check_kbs(knowledge: StoredKnowledge, kbs: Sequence[str]) -> None:
    known = await knowledge.list_kbs()
    unknown = [kb for kb in kbs if kb not in known]
    if unknown:
        have = ", ".join(known) if known else "none; run `bothbot ingest PATH` first"
        raise UsageError(f"unknown knowledge base {', '.join(unknown)} (knowledge bases: {have})")
    if await knowledge.count(kbs) == 0:
        raise UsageError(f"knowledge base {', '.join(kbs)} is empty; run `bothbot ingest PATH` first")


async def _items(
    args: argparse.Namespace, settings: Settings, runtime: Runtime, knowledge: StoredKnowledge, kbs: tuple[str, ...]
) -> tuple[list[QuestionItem], list[Skipped], dict[str, Any]]:
    if args.qa is not None:
        try:
            found = await asyncio.to_thread(load_questions, args.qa, require_answer=True)
        except QuestionFileError as exc:
            raise UsageError(str(exc)) from exc
        skipped = [Skipped(f"line {p.line}", p.message) for p in found.problems]
        source = {"kind": "qa", "path": str(args.qa), "rows": len(found.items) + len(found.problems)}
        return list(found.items), skipped, source
    if args.from_kb:
        return await _teacher_items(args, settings, runtime, knowledge, kbs)
    return await _feedback_items(runtime)


async def _teacher_items(
    args: argparse.Namespace, settings: Settings, runtime: Runtime, knowledge: StoredKnowledge, kbs: tuple[str, ...]
) -> tuple[list[QuestionItem], list[Skipped], dict[str, Any]]:
    if args.teacher not in runtime.router.profiles:
        known = ", ".join(sorted(runtime.router.profiles)) or "none"
        raise UsageError(f"unknown teacher profile {args.teacher!r} (profiles: {known})")
    client = runtime.router.client(args.teacher)
    if client is None:
        raise UsageError(f"teacher profile {args.teacher!r} has no endpoint or key (set OPENAI_API_KEY or base_url)")
    # public chunks only: a model trained on a channel-only document would tell it to every channel
    chunks = [p for p in await knowledge.passages(kbs) if p.visible_from(None)]
    options = TeacherOptions(
        questions_per_chunk=args.questions_per_chunk, concurrency=args.concurrency,
        max_chunks=args.max_chunks, seed=args.seed,
    )
    tty = sys.stderr.isatty()

    def progress(done: int, total: int) -> None:
        print(f"\rteacher: {done}/{total} chunks", end="\n" if done == total else "", file=sys.stderr, flush=True)

    result = await generate(client, chunks, options, progress if tty else None)
    source = {
        "kind": "from-kb", "teacher": args.teacher, "teacher_model": client.profile.model, "chunks": result.chunks,
        "questions_per_chunk": args.questions_per_chunk, "teacher_calls": result.calls,
        "teacher_skipped": len(result.skipped), "teacher_tokens": {
            "prompt": result.prompt_tokens, "completion": result.completion_tokens},
    }
    return result.items, result.skipped, source


async def _feedback_items(runtime: Runtime) -> tuple[list[QuestionItem], list[Skipped], dict[str, Any]]:
    from bot.evaluation.feedback import rated_answers

    rated = await rated_answers(runtime.state, rating="up")
    items: list[QuestionItem] = []
    skipped: list[Skipped] = []
    for answer in rated:
        text = strip_citations(answer.answer)
        if not answer.question.strip() or not text:
            skipped.append(Skipped(f"trace {answer.trace_id}", "empty question or answer"))
            continue
        items.append(QuestionItem(
            id=answer.trace_id, question=answer.question.strip(), line=0, answer=text,
            sources=answer.sources if not answer.chunk_ids else (), chunk_ids=answer.chunk_ids,
        ))
    return items, skipped, {"kind": "from-feedback", "rated_up": len(rated)}


def _print_skipped(skipped: Sequence[Skipped]) -> None:
    for row in skipped[:SHOWN_PROBLEMS]:
        print(f"skipped {row}", file=sys.stderr)
    if len(skipped) > SHOWN_PROBLEMS:
        print(f"… and {len(skipped) - SHOWN_PROBLEMS} more skipped", file=sys.stderr)


def _print_report(report: ValidationReport) -> None:
    print(report.summary())
    for problem in report.problems:
        print(f"{report.path}: {problem}", file=sys.stderr)
