"""``bothbot ingest`` and ``bothbot eval retrieval``: argument parsing and the async handlers.

The bot's CLI calls ``register(subparsers)``; each sub-command sets ``retrieval_handler``, an
``async def handler(args, env) -> int`` that the bot awaits with the resolved environment.
Exit codes: 0 done; 1 done but some files could not be read; 2 bad arguments or data;
3 the embedded store is held by another process.

With the embedded store, ``bothbot ingest`` first offers the work to a running bot that owns the
store (``retrieval.handoff``); with no bot reachable it opens the store itself, waiting for it.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

from retrieval.api import DEFAULT_KB, kb_name_problem
from retrieval.config import RetrievalEnvironment
from retrieval.errors import RetrievalError, StoreLockedError
from retrieval.evaluate import evaluate, format_rows, load_beir, load_pubmedqa, load_questions
from retrieval.factory import open_knowledge_base
from retrieval.handoff import IngestRequest, hand_off
from retrieval.ingest import ScopeError, parse_scope
from retrieval.loaders import LoadOptions
from retrieval.search import SearchMode

EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, EXIT_LOCKED = 0, 1, 2, 3


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``ingest`` to the bot's sub-commands (``eval retrieval`` comes from :func:`register_eval`)."""
    ingest = subparsers.add_parser(
        "ingest",
        help="add files, folders or a Slack export to a knowledge base",
        description="Load Markdown, text, HTML, PDF, JSON Lines and Slack export folders into a knowledge "
        "base. Unchanged documents cost nothing; changed ones replace their chunks.",
    )
    ingest.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="file or folder (recursive)")
    ingest.add_argument("--kb", default=DEFAULT_KB, help="knowledge base name (default: %(default)s)")
    ingest.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="SCOPE",
        help="who may see these documents: 'public' (default) or channel keys such as slack:C123 or "
        "discord:456 (repeat or comma-separate). A document's own scope wins: front matter 'scope:', a JSON "
        "Lines 'scope' field, and a private Slack channel's threads, which stay in that channel.",
    )
    ingest.add_argument("--prune", action="store_true", help="remove chunks of files under PATH that are gone")
    ingest.add_argument("--include", action="append", default=[], metavar="GLOB", help="only matching files")
    ingest.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip matching files")
    ingest.add_argument("--text-field", default=None, help="JSON Lines: the field holding the text")
    ingest.add_argument(
        "--slack-url",
        default="https://slack.com",
        help="workspace URL for Slack permalinks (default: %(default)s)",
    )
    ingest.add_argument(
        "--wait",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long to wait for another process to release the embedded store (default: lock_wait_seconds)",
    )
    ingest.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bar (default: on a TTY)",
    )
    ingest.set_defaults(retrieval_handler=ingest_handler)


def register_eval(targets: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``retrieval`` target to an existing ``eval`` command's sub-commands."""
    parser = targets.add_parser(
        "retrieval",
        help="nDCG@10, Recall@k, MRR@10 and latency on BEIR-format data or PubMedQA",
        description="Ingest the corpus into a fresh temporary knowledge base and score every judged query.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--beir", type=Path, metavar="DIR", help="corpus.jsonl, queries.jsonl, qrels/SPLIT.tsv")
    source.add_argument("--pubmedqa", type=Path, metavar="DIR", help="folder holding PubMedQA's ori_pqal.json")
    source.add_argument(
        "--questions",
        type=Path,
        metavar="FILE",
        help="JSON Lines of questions, each with the 'source' and 'heading' that answer it (needs --corpus)",
    )
    parser.add_argument(
        "--corpus",
        action="append",
        type=Path,
        default=[],
        metavar="PATH",
        help="with --questions: files or folders to ingest, named as `bothbot ingest` names them (repeat)",
    )
    parser.add_argument(
        "--split",
        default="test",
        help="qrels split; with --questions, the rows whose 'split' is this ('all': every row) (default: %(default)s)",
    )
    parser.add_argument(
        "--mode",
        action="append",
        choices=["sparse", "dense", "hybrid"],
        default=None,
        help="search mode(s) (default: sparse, plus dense and hybrid when an embedder is configured)",
    )
    parser.add_argument("--max-queries", type=int, default=None, help="score only the first N judged queries")
    parser.add_argument("--chunk-tokens", type=int, default=None, help="override chunk_tokens for this run")
    parser.set_defaults(retrieval_handler=eval_handler)


def _err(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def ingest_handler(args: argparse.Namespace, env: RetrievalEnvironment) -> int:
    try:
        scope = parse_scope(args.scope)
    except ScopeError as exc:
        _err(f"bothbot ingest: {exc}")
        return EXIT_USAGE
    problem = kb_name_problem(args.kb)
    if problem is not None:
        _err(f"bothbot ingest: --kb {problem}.")
        return EXIT_USAGE
    missing = [p for p in args.paths if not p.exists() and not p.is_symlink()]  # a bad link: skipped, named
    if missing:
        _err(f"bothbot ingest: {missing[0]}: no such file or directory. Give an existing file or folder.")
        return EXIT_USAGE
    wait = env.config.lock_wait_seconds if args.wait is None else args.wait
    progress = sys.stderr.isatty() if args.progress is None else bool(args.progress)
    if env.qdrant_url is None:
        code = await _hand_off(args, env, scope, progress)
        if code is not None:
            return code
    try:
        service = await open_knowledge_base(env, lock_wait=wait, on_wait=_err)
    except StoreLockedError as exc:
        _err(f"bothbot ingest: {exc}")
        return EXIT_LOCKED
    except RetrievalError as exc:
        _err(f"bothbot ingest: {exc}")
        return EXIT_USAGE
    try:
        options = LoadOptions(
            include=tuple(args.include),
            exclude=tuple(args.exclude),
            text_field=args.text_field,
            slack_base_url=args.slack_url.rstrip("/"),
        )
        report = await service.ingest_paths(
            list(args.paths), kb=args.kb, scope=scope, prune=args.prune, options=options, progress=progress
        )
    except RetrievalError as exc:
        _err(f"bothbot ingest: {exc}")
        return EXIT_USAGE
    finally:
        await service.aclose()
    for failure in report.failures:
        _err(f"skipped {failure.path}: {failure.reason}")
    print(report.summary(), flush=True)
    return EXIT_PARTIAL if report.failures else EXIT_OK


def _request(args: argparse.Namespace, scope: tuple[str, ...]) -> IngestRequest:
    """The ingest arguments for the bot process: paths made absolute here (its working directory differs)."""
    return IngestRequest(
        paths=tuple(os.path.abspath(p) for p in args.paths),
        kb=args.kb,
        scope=scope,
        prune=args.prune,
        include=tuple(args.include),
        exclude=tuple(args.exclude),
        text_field=args.text_field,
        slack_url=args.slack_url,
    )


async def _hand_off(
    args: argparse.Namespace, env: RetrievalEnvironment, scope: tuple[str, ...], progress: bool
) -> int | None:
    """Give the ingest to the bot that owns the embedded store; None when there is none to take it."""
    request = _request(args, scope)
    bar = tqdm(desc=f"ingest {args.kb}", unit="doc", disable=not progress, leave=False)

    def advance(documents: int) -> None:
        bar.update(max(0, documents - bar.n))

    def message(text: str) -> None:
        bar.clear()
        _err(text)

    summary: list[str] = []
    try:
        code = await hand_off(env.data_dir, request, on_message=message, on_progress=advance, on_summary=summary.append)
    finally:
        bar.close()
    for line in summary:
        print(line, flush=True)
    return code


async def eval_handler(args: argparse.Namespace, env: RetrievalEnvironment) -> int:
    try:
        if args.questions:
            data = load_questions(args.questions, args.corpus, args.split)
        elif args.pubmedqa:
            data = load_pubmedqa(args.pubmedqa)
        else:
            data = load_beir(args.beir, args.split)
    except (RetrievalError, OSError, KeyError, ValueError) as exc:
        _err(f"bothbot eval retrieval: cannot read the data: {exc}")
        return EXIT_USAGE
    config = env.config
    if args.chunk_tokens:
        config = config.model_copy(
            update={
                "chunk_tokens": args.chunk_tokens,
                "chunk_overlap": min(config.chunk_overlap, args.chunk_tokens - 1),
            }
        )
    modes: list[SearchMode] | None = args.mode
    try:
        rows = await evaluate(data, replace(env, config=config), modes, args.max_queries)
    except RetrievalError as exc:
        _err(f"bothbot eval retrieval: {exc}")
        return EXIT_USAGE
    corpus = f"{len(data.corpus)} documents" if data.corpus else "corpus " + " ".join(map(str, data.paths))
    print(f"{corpus}, {len(data.queries)} queries, fusion {config.fusion}, chunks of {config.chunk_tokens} tokens")
    print(format_rows(data.name, rows), flush=True)
    if data.by_section:
        for row in rows:
            for qid, first in row.misses:
                print(f"  {row.mode}: {data.queries[qid]!r} -> first: {first}", flush=True)
    return EXIT_OK
