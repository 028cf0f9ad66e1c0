"""Per-channel settings: admin changes in Redis over bothbot.toml channel defaults over global defaults."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from bot.experiments import EXPERIMENT_FIELD, Experiment
from bot.model_client import ModelRouter
from bot.settings import Settings
from bot.state import StateStore

CORE_FIELDS = frozenset({"profile", "rag", "kbs", "thread_followups", EXPERIMENT_FIELD})
"""Fields of a channel's Redis hash that the core itself reads; any other is a platform's option."""


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    profile: str | None
    rag: bool
    kbs: tuple[str, ...]
    thread_followups: bool
    experiment: Experiment | None = None  # a running experiment: its arms override profile and retrieval
    options: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    """Settings a platform declares for its channels (Discord's ``reply_mode``): an admin's change
    over bothbot.toml's ``[channels."…"]``. A name that is absent means the platform's default."""


class ChannelConfig:
    """Reads a channel's effective settings fresh on every message, so every replica sees a change."""

    def __init__(self, settings: Settings, state: StateStore, router: ModelRouter) -> None:
        self._settings = settings
        self._state = state
        self._router = router

    async def get(self, channel_key: str) -> ChannelSettings:
        return self.resolve(channel_key, await self._state.channel_overrides(channel_key))

    def resolve(self, channel_key: str, overrides: Mapping[str, str]) -> ChannelSettings:
        """The channel's settings from its Redis hash ``overrides`` (read by the caller)."""
        settings = self._settings
        defaults = settings.channels.get(channel_key)
        profile = defaults.profile if defaults and defaults.profile else settings.default_profile
        stored_profile = overrides.get("profile")
        if stored_profile is not None and stored_profile in self._router.profiles:
            profile = stored_profile
        rag = defaults.rag if defaults and defaults.rag is not None else settings.rag_default
        if "rag" in overrides:
            rag = overrides["rag"] == "on"
        kbs = defaults.kbs if defaults and defaults.kbs else settings.default_kbs
        if overrides.get("kbs"):
            kbs = tuple(k for k in overrides["kbs"].split(",") if k)
        followups = defaults.thread_followups if defaults and defaults.thread_followups is not None else True
        if "thread_followups" in overrides:
            followups = overrides["thread_followups"] == "on"
        options = {**(defaults.options if defaults else {})}
        options.update((name, value) for name, value in overrides.items() if name not in CORE_FIELDS)
        return ChannelSettings(
            profile=profile,
            rag=rag,
            kbs=kbs,
            thread_followups=followups,
            experiment=Experiment.from_json(overrides.get(EXPERIMENT_FIELD)),
            options=MappingProxyType(options),
        )
