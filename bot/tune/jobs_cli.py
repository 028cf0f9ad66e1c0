"""Placeholder: filled in by the tune work."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's ``tune`` sub-commands."""
