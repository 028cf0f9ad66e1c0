"""``bothbot eval answers``, ``bothbot eval feedback`` and ``bothbot feedback export``.

Each sub-command sets ``handler``, an ``async (args, settings) -> int``.
"""

from __future__ import annotations

import argparse
from typing import Any

from bot.evaluation import feedback_cli
from bot.settings import Settings


def register_eval_targets(targets: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``answers`` and ``feedback`` to ``bothbot eval``."""
    _register_answers(targets)
    feedback_cli.register_eval_target(targets)


def register_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``feedback`` (``feedback export``) to the top-level commands."""
    feedback_cli.register(subparsers)


def _register_answers(targets: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    answers = targets.add_parser(
        "answers",
        help="compare profiles × {closed, oracle, retrieved} on a question set",
        description="Answer every question with every profile in every mode (closed: no retrieval; oracle: the "
        "gold passages as sources; retrieved: what the chat retrieves), at temperature 0, and report scores with "
        "paired bootstrap intervals. Resumable: rerun the same command to continue.",
    )
    answers.add_argument("questions", nargs="?", metavar="QUESTIONS",
                         help="question file: JSON Lines or CSV (question, answer, choices, source, chunk_id, id), "
                         "or the validation.jsonl of `bothbot tune dataset`")
    answers.add_argument("--pubmedqa", metavar="DIR", help="PubMedQA folder (ori_pqal.json, test_ground_truth.json)")
    answers.add_argument("--profiles", required=True, help="profiles to compare, baseline first: base,tuned")
    answers.add_argument("--modes", default="closed,oracle,retrieved", help="any of closed,oracle,retrieved")
    answers.add_argument("--kb", help="knowledge bases to search, comma-separated (default: the channels' default)")
    answers.add_argument("--limit", type=int,
                         help="a seeded random sample of N questions (--seed), kept in file order")
    answers.add_argument("--concurrency", type=int, default=4, help="questions in flight at once (default 4)")
    answers.add_argument("--judge", metavar="PROFILE", help="also grade answers with this profile as an LLM judge")
    answers.add_argument("--seed", type=int, default=0, help="seed of the bootstrap intervals (default 0)")
    answers.add_argument("--out", required=True, metavar="DIR", help="folder for rows.jsonl and the reports")
    answers.set_defaults(handler=_answers)


async def _answers(args: Any, settings: Settings) -> int:
    from bot.evaluation.answers_command import run_answers  # imported on use: numpy, tqdm and the runtime

    return await run_answers(args, settings)
