"""Adapters between chat platforms and the engine, and the registry of platforms.

:data:`PLATFORMS` is the only list of platforms in bothbot: ``bothbot <name>``, the choices of
``bothbot serve``, the settings blocks that ``bothbot config`` shows and masks, all come from it.
Each entry names a package, imported only when it is needed, which holds:

- ``__init__.py`` (light): ``SUMMARY`` (one line for ``--help``), ``SETTINGS`` (its
  :class:`bot.settings.PlatformSettings` model, from its ``settings.py``) and, optionally,
  ``PAYLOAD_LOGGERS`` (its client libraries' loggers that print raw payloads at DEBUG);
- ``platform.py``: ``PLATFORM``, an :class:`adapters.base.Platform` (check, serve).

Adding a platform: write that package and add one line here. Nothing in ``bot/`` changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from types import MappingProxyType, ModuleType
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:  # for annotations only: importing the registry stays cheap
    from adapters.base import Platform
    from bot.settings import PlatformSettings

PLATFORMS: Mapping[str, str] = MappingProxyType(
    {
        "slack": "adapters.slack",
        "discord": "adapters.discord",
    }
)
"""Platform name → its package."""


def names() -> tuple[str, ...]:
    return tuple(PLATFORMS)


def _package(name: str) -> ModuleType:
    try:
        package = PLATFORMS[name]
    except KeyError:
        raise ValueError(f"unknown platform {name!r}; known: {', '.join(PLATFORMS)}") from None
    return importlib.import_module(package)


def summary(name: str) -> str:
    """One line about the platform, for ``bothbot --help`` (imports only the light package)."""
    return str(getattr(_package(name), "SUMMARY", f"run the {name} adapter"))


def settings_model(name: str) -> type[PlatformSettings]:
    """The platform's settings model (imports only the light package and its settings)."""
    return cast("type[PlatformSettings]", _package(name).SETTINGS)


def payload_loggers() -> tuple[str, ...]:
    """Every platform's ``PAYLOAD_LOGGERS``: kept at INFO or above whatever the log level."""
    return tuple(logger for name in PLATFORMS for logger in getattr(_package(name), "PAYLOAD_LOGGERS", ()))


def load(name: str) -> Platform:
    """The platform itself: imports its client libraries and wiring."""
    module = importlib.import_module(f"{_package(name).__name__}.platform")
    return cast("Platform", module.PLATFORM)
