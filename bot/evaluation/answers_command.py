"""The ``bothbot eval answers`` command: check the input, open the runtime, run, report.

Exit codes: 0 done; 1 done, but rows or question lines were skipped; 2 bad input or configuration
(told as ``bothbot eval answers: <message>`` on stderr).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from redis.exceptions import RedisError

from bot.evaluation.answers import AnswerRunner, RowLog
from bot.evaluation.judge import JUDGE_SYSTEM_PROMPT, JUDGE_USER_TEMPLATE
from bot.evaluation.question_sets import QuestionSource, read_pubmedqa, read_question_file, sample_questions
from bot.evaluation.records import MODES, AnswersError, JudgeInfo, Mode, ProfileInfo, RunSettings
from bot.evaluation.report import build_report, table, write_report
from bot.model_client import ModelRouter
from bot.profiles import ProfileRegistry
from bot.runtime import Runtime
from bot.settings import ModelProfile, Settings
from retrieval.errors import RetrievalError
from retrieval.evaluate import EVAL_KB, DatasetError, corpus_documents, load_pubmedqa
from retrieval.factory import RetrievalService

PROG = "bothbot eval answers"


def parse_list(value: str, what: str) -> list[str]:
    names = [part.strip() for part in value.split(",") if part.strip()]
    if not names:
        raise AnswersError(f"{what}: give at least one name")
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise AnswersError(f"{what}: {', '.join(repeated)} given twice")
    return names


def parse_modes(value: str) -> tuple[Mode, ...]:
    names = parse_list(value, "--modes")
    unknown = [n for n in names if n not in MODES]
    if unknown:
        raise AnswersError(f"--modes: unknown mode {', '.join(unknown)}; choose from {', '.join(MODES)}")
    return tuple(m for m in MODES if m in names)


def temperature_zero_router(settings: Settings, profiles: dict[str, ModelProfile]) -> ModelRouter:
    return ModelRouter(
        {name: p.model_copy(update={"temperature": 0.0}) for name, p in profiles.items()},
        timeout_seconds=settings.model_timeout_seconds,
        max_retries=settings.model_max_retries,
    )


def resolve_profiles(router: ModelRouter, names: Sequence[str]) -> dict[str, ModelProfile]:
    known = sorted(router.profiles)
    unknown = [n for n in names if n not in router.profiles]
    if unknown:
        listed = ", ".join(known) or "none (add [profiles.NAME] to bothbot.toml or `bothbot tune register`)"
        raise AnswersError(f"unknown profile {', '.join(unknown)}; known profiles: {listed}")
    unusable = [n for n in names if not router.usable(n)]
    if unusable:
        raise AnswersError(
            f"profile {', '.join(unusable)} has no endpoint or key: set its base_url, "
            "or OPENAI_BASE_URL / OPENAI_API_KEY"
        )
    return {n: router.profiles[n] for n in names}


def check_out_dir(out: Path, run: RunSettings) -> None:
    """Refuse to mix rows of different runs in one folder; write settings.json for a fresh one."""
    path = out / "settings.json"
    if path.is_file():
        try:
            earlier = RunSettings.model_validate_json(path.read_text(encoding="utf-8"))
        except ValidationError as exc:
            why = exc.errors()[0]["msg"]
            raise AnswersError(f"{path} is not the settings of an eval answers run ({why})") from None
        conflicts = run.resume_conflicts(earlier)
        if conflicts:
            listed = "; ".join(c if len(c) < 300 else c[:299] + "…" for c in conflicts)
            raise AnswersError(
                f"{out} holds a run with other arguments ({listed}). Rerun with the same arguments to resume, "
                "or give another --out."
            )
    elif out.exists() and not out.is_dir():
        raise AnswersError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(run.model_dump_json(indent=2) + "\n", encoding="utf-8")


@asynccontextmanager
async def _runtime(settings: Settings, source: QuestionSource) -> AsyncIterator[Runtime]:
    """The runtime; for PubMedQA one whose knowledge base is a fresh temporary one holding its corpus."""
    if source.pubmedqa is None:
        runtime = await Runtime.start(settings)
        try:
            yield runtime
        finally:
            await runtime.aclose()
        return
    with tempfile.TemporaryDirectory(prefix="bothbot-eval-answers-") as tmp:
        runtime = await Runtime.start(settings.model_copy(update={"data_dir": Path(tmp), "qdrant_url": None}))
        try:
            knowledge = runtime.knowledge
            if isinstance(knowledge, RetrievalService):
                corpus = await asyncio.to_thread(load_pubmedqa, source.pubmedqa)
                await knowledge.ingest_documents(corpus_documents(corpus), kb=EVAL_KB, progress=sys.stderr.isatty())
            yield runtime
        finally:
            await runtime.aclose()


def say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


async def run_answers(args: Any, settings: Settings) -> int:
    """The ``eval answers`` handler; exit 0 ok, 1 done with skipped rows or bad lines, 2 bad input."""
    try:
        return await _run(args, settings)
    except AnswersError as exc:
        say(str(exc))
        return 2
    except (RetrievalError, DatasetError) as exc:
        say(str(exc))
        return 2
    except RedisError as exc:
        say(f"cannot use Redis at REDIS_URL: {exc}")
        return 2
    except OSError as exc:
        say(f"{exc.__class__.__name__}: {exc}")
        return 2


async def _run(args: Any, settings: Settings) -> int:
    if (args.questions is None) == (args.pubmedqa is None):
        raise AnswersError("give a question file or --pubmedqa DIR (one of them)")
    if args.concurrency < 1 or (args.limit is not None and args.limit < 1):
        raise AnswersError("--concurrency and --limit must be at least 1")
    if args.pubmedqa is not None and args.kb:
        raise AnswersError("--kb does not go with --pubmedqa: its abstracts go into a temporary knowledge base")
    names = parse_list(args.profiles, "--profiles")
    modes = parse_modes(args.modes)
    if args.questions is not None:
        source = await asyncio.to_thread(read_question_file, Path(args.questions))
    else:
        source = await asyncio.to_thread(read_pubmedqa, Path(args.pubmedqa))
    for problem in source.problems:
        say(problem)
    questions = sample_questions(source.questions, args.limit, args.seed)
    if not questions:
        raise AnswersError(f"{source.label}: no question can be read")
    kbs = (EVAL_KB,) if source.pubmedqa else (tuple(parse_list(args.kb, "--kb")) if args.kb else settings.default_kbs)
    out = Path(args.out)
    async with _runtime(settings, source) as runtime:
        await ProfileRegistry(settings, runtime.state, runtime.router).refresh()
        wanted = [*names, *([args.judge] if args.judge and args.judge not in names else [])]
        profiles = resolve_profiles(runtime.router, wanted)
        judge = None
        if args.judge:
            judge = JudgeInfo(profile=args.judge, model=profiles[args.judge].model,
                              system_prompt=JUDGE_SYSTEM_PROMPT, user_template=JUDGE_USER_TEMPLATE)
        run = RunSettings(
            questions=source.label, questions_sha256=source.sha256, count=len(questions), limit=args.limit,
            profiles=tuple(
                ProfileInfo(name=n, model=profiles[n].model, system_prompt=profiles[n].system_prompt,
                            price_input_per_mtok=profiles[n].price_input_per_mtok,
                            price_output_per_mtok=profiles[n].price_output_per_mtok)
                for n in names
            ),
            modes=modes, kbs=tuple(kbs), top_k=settings.retrieval.top_k, judge=judge, seed=args.seed,
        )
        check_out_dir(out, run)
        log = RowLog(out / "rows.jsonl")
        earlier, problems = await asyncio.to_thread(log.read)
        for problem in problems:
            say(problem)
        done = {row.key for row in earlier if row.error is None}
        knowledge = runtime.knowledge
        if not isinstance(knowledge, RetrievalService):
            raise AnswersError("eval answers needs bothbot's own retrieval service")
        if set(modes) - {"closed"} and await knowledge.count(list(kbs)) == 0:
            say(f"knowledge base {', '.join(kbs)} is empty: oracle and retrieved will find nothing (ingest first?)")
        router = temperature_zero_router(settings, profiles)
        runner = AnswerRunner(run, questions, knowledge, router, log, args.concurrency, progress=sys.stderr.isatty())
        log.open()
        try:
            await runner.run(done)
        except asyncio.CancelledError:
            say(f"interrupted; finished rows are kept in {log.path}: run the same command again to continue")
            raise
        finally:
            log.close()
            await router.aclose()
    rows, _ = await asyncio.to_thread(log.read)
    report = await asyncio.to_thread(build_report, rows, run)
    notes = await asyncio.to_thread(write_report, report, out)
    print(table(report))
    for note in notes:
        say(note)
    print(f"report: {out / 'report.md'} (also report.json, report.png; rows in rows.jsonl)")
    failed = sum(cell["errors"] for cell in report["cells"])
    if failed:
        say(f"{failed} row(s) not answered (listed in report.md); run the same command again to retry them")
    unjudged = sum(1 for row in report["rows"] if row["judge"] and row["judge"]["error"])
    if unjudged:
        say(f"{unjudged} row(s) have no judge verdict (the reasons are in report.json)")
    return 1 if failed or source.problems else 0
