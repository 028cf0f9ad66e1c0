"""``bothbot eval answers``, ``bothbot eval feedback`` and ``bothbot feedback export``.

Each sub-command sets ``handler``, an ``async (args, settings) -> int``.
"""

from __future__ import annotations

import argparse


def register_eval_targets(targets: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``answers`` and ``feedback`` to ``bothbot eval``."""


def register_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``feedback`` (``feedback export``) to the top-level commands."""
