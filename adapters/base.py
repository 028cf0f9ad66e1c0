"""What a platform is to the rest of bothbot, and what it may use of the core.

A platform (Slack, Discord, …) is a package under ``adapters/`` listed once in the registry
(:mod:`adapters`). It provides a :class:`Platform`: its settings model, a ``check`` that fails on
bad settings before anything is opened, and ``serve``, which answers on a started runtime until
``stop`` is set and then stops taking events, finishes the answers in flight and closes.

The ports below are all a platform takes from the core: ``serve`` is handed the started
:class:`bot.runtime.Runtime` as a :class:`RuntimePort` (it satisfies it structurally), so an
adapter depends on a few typed methods of the engine and the state store, not on their classes,
and a test can hand in anything else that has them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Protocol

import redis.asyncio as aioredis

from adapters.common.memory import ThreadStore
from bot.channels import ChannelSettings
from bot.command_specs import CommandSpec
from bot.messages import FeedbackValue, IncomingMessage, ReplyEvent
from bot.settings import PlatformSettings, Settings


class CommandsPort(Protocol):
    """The core's command runner, to which a platform adds its own commands (Discord's ``replymode``)."""

    def add(self, spec: CommandSpec) -> None: ...


class EnginePort(Protocol):
    """The engine as an adapter calls it: one message in, a reply stream out; feedback; channel settings."""

    @property
    def commands(self) -> CommandsPort: ...

    def handle(self, msg: IncomingMessage) -> AsyncGenerator[ReplyEvent, None]: ...

    async def record_feedback(self, trace_id: str, *, user: str, value: FeedbackValue, platform: str) -> bool: ...

    async def channel_settings(self, channel_key: str) -> ChannelSettings: ...


class StatePort(ThreadStore, Protocol):
    """Shared state an adapter keeps its own records in (threads it answered, cached admin lookups)."""

    @property
    def redis(self) -> aioredis.Redis: ...

    def key(self, *parts: str) -> str: ...


class RuntimePort(Protocol):
    """A started runtime: the settings tree, the engine and the state store."""

    @property
    def settings(self) -> Settings: ...

    @property
    def engine(self) -> EnginePort: ...

    @property
    def state(self) -> StatePort: ...


class Platform(Protocol):
    """One chat platform, as the registry and ``adapters.serve`` see it."""

    @property
    def name(self) -> str:
        """The registry name: ``bothbot <name>``, ``bothbot serve <name> …``, ``IncomingMessage.platform``."""
        ...

    @property
    def settings_model(self) -> type[PlatformSettings]:
        """Its block of settings (validated by ``settings.platform(settings_model)``)."""
        ...

    def check(self, settings: Settings) -> None:
        """Raise :class:`bot.settings.ConfigError` naming the setting if this platform cannot start."""
        ...

    async def serve(self, runtime: RuntimePort, stop: asyncio.Event) -> None:
        """Answer until ``stop`` is set, then stop taking events, drain what is in flight and close.

        Returning early (or raising) means the platform ended on its own; ``adapters.serve`` then
        stops the other platforms of the process too.
        """
        ...
