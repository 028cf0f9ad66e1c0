"""``python -m adapters.slack``: the same as ``bothbot slack``."""

from __future__ import annotations

import sys

from bot.cli import main

if __name__ == "__main__":
    sys.exit(main(["slack"]))
