"""``bothbot tune …``: dataset and validate (:mod:`bot.tune.dataset_cli`), jobs and registration
(:mod:`bot.tune.jobs_cli`). Each sub-command sets ``handler``, an ``async (args, settings) -> int``.
"""

from __future__ import annotations

import argparse

from bot.tune import dataset_cli, jobs_cli


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tune = subparsers.add_parser(
        "tune",
        help="build RAFT training data, train on any backend, register the result as a profile",
        description="Fine-tune a model from the knowledge base: `tune dataset`, `tune validate`, `tune start`, "
        "`tune follow`, `tune register`. See docs/tuning.md.",
    )
    commands = tune.add_subparsers(dest="tune_command", metavar="COMMAND", required=True)
    dataset_cli.register(commands)
    jobs_cli.register(commands)
