"""A toy chat platform, registered by the contract tests only: one package plus one registry line.

It proves what ``adapters/__init__.py`` promises: a platform is a package holding ``SUMMARY`` and
``SETTINGS`` here and ``PLATFORM`` in ``platform.py``, and nothing in ``bot/`` changes. The "network"
is an in-process :class:`~tests.contract.toy.platform.ToyRoom`; messages starting with ``!`` are
commands, everything else is a question.
"""

from tests.contract.toy.settings import ToySettings

SUMMARY = "run the toy adapter (tests only)"
SETTINGS = ToySettings

__all__ = ["SETTINGS", "SUMMARY", "ToySettings"]
