"""Model profiles from two places: ``bothbot.toml`` (fixed at start-up) and Redis (registered at run time).

``bothbot tune register`` writes a profile into Redis; every replica reads the registered profiles
again on its next message (one ``HGETALL``), so an admin can switch a channel to a freshly trained
model without a restart. TOML profiles stay and win: a registered name may not clash with one.
No key is ever stored in Redis: a registered profile names the environment variable that holds its
key (``api_key_env``) or uses ``OPENAI_API_KEY`` like any profile.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from datetime import UTC, date, datetime
from typing import Literal, cast

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bot.experiments import ExperimentError, Experiments
from bot.model_client import ModelRouter
from bot.settings import ModelProfile, Settings
from bot.state import StateStore

log = logging.getLogger(__name__)

PROFILE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RETIREMENT_WARNING_DAYS = 30

# OpenAI's deprecations page: fine-tunes of these base models stop answering on 2027-01-14.
OPENAI_FINE_TUNE_RETIREMENT = date(2027, 1, 14)
OPENAI_RETIRING_BASES = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini", "gpt-4.1")


class ProfileError(Exception):
    """A profile cannot be registered or removed; the message says why and what to do."""


class ProfileOrigin(BaseModel):
    """Where a profile came from, shown by ``models``."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    source: Literal["toml", "registered"] = "registered"
    job: str | None = None
    backend: str | None = None
    base_model: str | None = None
    registered_at: datetime | None = None
    registered_by: str | None = None
    adapter_path: str | None = None

    def describe(self) -> str:
        if self.source == "toml":
            return "from bothbot.toml"
        parts = ["registered"]
        if self.job:
            parts.append(f"from job {self.job}" + (f" ({self.backend})" if self.backend else ""))
        if self.registered_at:
            parts.append(f"on {self.registered_at.date().isoformat()}")
        if self.base_model:
            parts.append(f"base {self.base_model}")
        return " ".join(parts)


TOML_ORIGIN = ProfileOrigin(source="toml")


class RegisteredProfile(BaseModel):
    """What Redis holds for one registered profile (never a key)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    profile: ModelProfile
    origin: ProfileOrigin = Field(default_factory=ProfileOrigin)


def openai_retirement(base_model: str) -> date | None:
    """The day fine-tunes of ``base_model`` stop answering, for the OpenAI models known to retire."""
    name = base_model.removeprefix("ft:").split(":", 1)[0]
    for base in OPENAI_RETIRING_BASES:
        if name == base or name.startswith(f"{base}-20"):
            return OPENAI_FINE_TUNE_RETIREMENT
    return None


def retirement_warning(name: str, profile: ModelProfile, today: date | None = None) -> str | None:
    """A warning when the profile's model retires within 30 days (or already has)."""
    if profile.retires_on is None:
        return None
    today = today or datetime.now(UTC).date()
    left = (profile.retires_on - today).days
    if left > RETIREMENT_WARNING_DAYS:
        return None
    when = profile.retires_on.isoformat()
    if left < 0:
        return f"⚠️ profile `{name}` ({profile.model}) retired on {when}: switch this channel to another profile."
    return f"⚠️ profile `{name}` ({profile.model}) stops answering on {when}, in {left} day{'' if left == 1 else 's'}."


class ProfileRegistry:
    """Registered profiles in Redis, merged into the router's profiles on :meth:`refresh`."""

    def __init__(self, settings: Settings, state: StateStore, router: ModelRouter) -> None:
        self._settings = settings
        self._state = state
        self._router = router
        self._key = state.key("profiles")
        self._seen: dict[str, str] = {}

    @property
    def key(self) -> str:
        """The Redis hash of registered profiles (name → JSON)."""
        return self._key

    async def refresh(self) -> None:
        """Read the registered profiles again; cheap when nothing changed."""
        self.apply(cast(dict[str, str], await self._state.redis.hgetall(self._key)))

    def apply(self, raw: dict[str, str]) -> None:
        """Merge the registered profiles ``raw`` (the hash at :attr:`key`, read by the caller) into the router."""
        if raw == self._seen:
            return
        self._seen = dict(raw)
        profiles: dict[str, ModelProfile] = {}
        origins: dict[str, ProfileOrigin] = {}
        for name, value in raw.items():
            entry = _parse(name, value)
            if entry is None or name in self._settings.profiles:
                continue
            try:
                profiles[name] = self._settings.resolve_profile(name, entry.profile)
            except ValueError as exc:
                log.warning("registered profile %s: %s", name, exc)
                profiles[name] = entry.profile.model_copy(update={"api_key": None})
            origins[name] = entry.origin
        self._router.set_registered(profiles, origins)

    async def registered(self) -> dict[str, RegisteredProfile]:
        raw = cast(dict[str, str], await self._state.redis.hgetall(self._key))
        parsed = {name: _parse(name, value) for name, value in raw.items()}
        return {name: entry for name, entry in parsed.items() if entry is not None}

    async def register(self, name: str, profile: ModelProfile, origin: ProfileOrigin) -> None:
        if not PROFILE_NAME_RE.match(name):
            raise ProfileError(
                f"{name[:80]!r} is not a usable profile name: use letters, digits, '.', '_' or '-' "
                "(at most 64, starting with a letter or digit)."
            )
        if name in self._settings.profiles:
            raise ProfileError(
                f"`{name}` is already a profile in bothbot.toml; choose another name (TOML profiles stay)."
            )
        entry = RegisteredProfile(profile=profile.model_copy(update={"api_key": None}), origin=origin)
        if not await self._state.redis.hsetnx(self._key, name, entry.model_dump_json()):
            raise ProfileError(
                f"a profile `{name}` is already registered; choose another name or run "
                f"`bothbot tune unregister {name}` first."
            )
        await self.refresh()

    async def channels_using(self, name: str) -> list[str]:
        """Channel keys whose admin-set profile is ``name``."""
        prefix = self._state.key("channel", "")
        found: list[str] = []
        async for key in self._state.redis.scan_iter(match=f"{prefix}*", count=500):
            if await self._state.redis.hget(key, "profile") == name:
                found.append(key[len(prefix):])
        return sorted(found)

    async def unregister(self, name: str, *, force: bool = False, who: str = "cli") -> list[str]:
        """Remove a registered profile; returns the channels moved back to their default profile.

        Refused while a channel or a running experiment uses it, unless ``force``: those experiments
        are stopped and those channels go back to their default, each change audited.
        """
        if name in self._settings.profiles:
            raise ProfileError(f"`{name}` comes from bothbot.toml; remove it there, not with unregister.")
        if not await self._state.redis.hexists(self._key, name):
            raise ProfileError(f"no registered profile `{name[:80]}`.")
        experiments = Experiments(self._settings, self._state)
        running = await experiments.using_profile(name)
        channels = await self.channels_using(name)
        if (channels or running) and not force:
            users = sorted({*channels, *(f"{e.channel} (experiment {e.label})" for e in running)})
            listed = ", ".join(users[:10]) + (" …" if len(users) > 10 else "")
            raise ProfileError(
                f"`{name}` is in use by {len(users)} channel(s): {listed}. Switch them to another profile "
                "and stop those experiments first, or add --force to stop the experiments and move the "
                "channels back to their default profile."
            )
        for experiment in running:
            with contextlib.suppress(ExperimentError):  # already stopped by someone else meanwhile
                await experiments.stop(experiment.channel, who)
        channels = await self.channels_using(name) if running else channels
        for channel in channels:
            await self._state.set_channel_value(channel, "profile", None)
            await self._state.audit(
                who=who, channel=channel, setting="profile", before=name, after="(default)",
                max_entries=self._settings.audit_max_entries,
            )
        await self._state.redis.hdel(self._key, name)
        await self.refresh()
        return channels


def _parse(name: str, value: str) -> RegisteredProfile | None:
    try:
        return RegisteredProfile.model_validate(json.loads(value))
    except (ValueError, ValidationError) as exc:
        log.warning("skipping malformed registered profile %s: %s", name, str(exc)[:200])
        return None

