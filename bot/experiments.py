"""Live experiments on a channel: new conversations split between arms (a profile, retrieval on/off).

An arm is written ``PROFILE`` (the channel's retrieval setting), ``PROFILE:rag`` (retrieval on) or
``PROFILE:norag`` (closed book). Profile names cannot contain ``:``, so the suffix is unambiguous.

A running experiment is one field (``experiment``) of the channel's settings hash, so the engine reads
it with the channel settings it already fetches: no extra round trip per answer. A conversation's arm
is a seeded hash of (experiment id, conversation key): sticky per thread with nothing stored, balanced
over many threads, and the same on every replica. Conversations that started before the experiment
(their last saved turn carries no or another experiment id) keep the channel's own profile.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace

from bot.settings import Settings
from bot.state import StateStore, Turn

ARM_RE = re.compile(r"^(?P<profile>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})(?::(?P<rag>rag|norag))?$")
ARM_SYNTAX = "PROFILE, PROFILE:rag or PROFILE:norag"
EXPERIMENT_FIELD = "experiment"  # field of the channel settings hash
MAX_ARMS = 8
PAST_EXPERIMENTS_KEPT = 20


class ExperimentError(Exception):
    """An experiment cannot be started or stopped; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class Arm:
    profile: str
    rag: bool | None = None  # None: the channel's retrieval setting

    @property
    def label(self) -> str:
        return self.profile if self.rag is None else f"{self.profile}:{'rag' if self.rag else 'norag'}"

    @classmethod
    def parse(cls, text: str) -> Arm:
        match = ARM_RE.match(text.strip())
        if not match:
            raise ExperimentError(f"`{text[:60]}` is not an arm: write {ARM_SYNTAX}.")
        rag = match.group("rag")
        return cls(profile=match.group("profile"), rag=None if rag is None else rag == "rag")


@dataclass(frozen=True, slots=True)
class Experiment:
    id: str
    channel: str
    arms: tuple[Arm, ...]
    started_at: float
    started_by: str
    before_profile: str | None  # the channel's admin-set profile when it started (None: its default)
    stopped_at: float | None = None
    stopped_by: str | None = None

    @property
    def label(self) -> str:
        return " vs ".join(arm.label for arm in self.arms)

    def arm_for(self, conversation_key: str) -> Arm:
        return self.arms[assign(self.id, conversation_key, len(self.arms))]

    def to_json(self) -> str:
        return json.dumps(
            {
                "id": self.id,
                "channel": self.channel,
                "arms": [{"profile": a.profile, "rag": a.rag} for a in self.arms],
                "started_at": self.started_at,
                "started_by": self.started_by,
                "before_profile": self.before_profile,
                "stopped_at": self.stopped_at,
                "stopped_by": self.stopped_by,
            }
        )

    @classmethod
    def from_json(cls, raw: str | bytes | None) -> Experiment | None:
        """The stored experiment, or None when there is none or it cannot be read."""
        if not raw:
            return None
        try:
            data = json.loads(raw)
            arms = tuple(Arm(profile=str(a["profile"]), rag=a.get("rag")) for a in data["arms"])
            return cls(
                id=str(data["id"]),
                channel=str(data["channel"]),
                arms=arms,
                started_at=float(data["started_at"]),
                started_by=str(data.get("started_by") or ""),
                before_profile=data.get("before_profile"),
                stopped_at=None if data.get("stopped_at") is None else float(data["stopped_at"]),
                stopped_by=data.get("stopped_by"),
            )
        except (ValueError, KeyError, TypeError):
            return None


def assign(experiment_id: str, conversation_key: str, arms: int) -> int:
    """The arm index of a conversation: a seeded hash, the same on every replica and every call."""
    digest = hashlib.blake2b(f"{experiment_id}\x00{conversation_key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % arms


def arm_for_turn(experiment: Experiment | None, conversation_key: str, history: Sequence[Turn]) -> Arm | None:
    """The arm that answers this turn; None outside an experiment or for a conversation begun before it."""
    if experiment is None:
        return None
    if history and history[-1].experiment != experiment.id:
        return None
    return experiment.arm_for(conversation_key)


def parse_arms(words: Iterable[str], profiles: Iterable[str]) -> tuple[Arm, ...]:
    """Arms from ``start`` arguments; raises :class:`ExperimentError` with what is wrong."""
    arms = tuple(Arm.parse(w) for word in words for w in word.split(",") if w.strip())
    if len(arms) < 2:
        raise ExperimentError(f"An experiment needs at least two arms ({ARM_SYNTAX}), e.g. `tuned base`.")
    if len(arms) > MAX_ARMS:
        raise ExperimentError(f"At most {MAX_ARMS} arms, got {len(arms)}.")
    labels = [a.label for a in arms]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise ExperimentError(f"Each arm must differ: {', '.join(f'`{r}`' for r in repeated)} given twice.")
    known = set(profiles)
    unknown = sorted({a.profile for a in arms if a.profile not in known})
    if unknown:
        listed = ", ".join(f"`{p}`" for p in sorted(known)) or "none configured"
        raise ExperimentError(f"No profile {', '.join(f'`{u}`' for u in unknown)}. Profiles: {listed}.")
    return arms


class Experiments:
    """Start, stop and look up a channel's experiment in Redis."""

    def __init__(self, settings: Settings, state: StateStore) -> None:
        self._settings = settings
        self._state = state

    def _past_key(self, channel_key: str) -> str:
        return self._state.key("experiments", channel_key)

    async def running(self, channel_key: str) -> Experiment | None:
        raw = await self._state.redis.hget(self._state.key("channel", channel_key), EXPERIMENT_FIELD)
        return Experiment.from_json(raw)

    async def last_stopped(self, channel_key: str) -> Experiment | None:
        raw = await self._state.redis.lindex(self._past_key(channel_key), 0)
        return Experiment.from_json(raw)

    async def start(self, channel_key: str, arms: tuple[Arm, ...], who: str) -> Experiment:
        before = (await self._state.channel_overrides(channel_key)).get("profile")
        experiment = Experiment(
            id=secrets.token_hex(6),
            channel=channel_key,
            arms=arms,
            started_at=time.time(),
            started_by=who,
            before_profile=before,
        )
        key = self._state.key("channel", channel_key)
        if not await self._state.redis.hsetnx(key, EXPERIMENT_FIELD, experiment.to_json()):
            running = await self.running(channel_key)
            what = f" ({running.label}, id {running.id})" if running else ""
            raise ExperimentError(f"An experiment is already running here{what}. Stop it first with `experiment stop`.")
        await self._audit(who, channel_key, before="", after=f"{experiment.label} (id {experiment.id})")
        return experiment

    async def stop(self, channel_key: str, who: str) -> Experiment:
        """End the running experiment and put the channel's profile back to what it was before it."""
        key = self._state.key("channel", channel_key)
        pipe = self._state.redis.pipeline(transaction=True)
        pipe.hget(key, EXPERIMENT_FIELD)
        pipe.hdel(key, EXPERIMENT_FIELD)
        pipe.hget(key, "profile")
        raw, _, current_profile = await pipe.execute()
        running = Experiment.from_json(raw)
        if running is None:
            raise ExperimentError("No experiment is running in this channel.")
        stopped = replace(running, stopped_at=time.time(), stopped_by=who)
        pipe = self._state.redis.pipeline(transaction=True)
        pipe.lpush(self._past_key(channel_key), stopped.to_json())
        pipe.ltrim(self._past_key(channel_key), 0, PAST_EXPERIMENTS_KEPT - 1)
        await pipe.execute()
        await self._audit(who, channel_key, before=f"{running.label} (id {running.id})", after="")
        if current_profile != running.before_profile:
            await self._state.set_channel_value(channel_key, "profile", running.before_profile)
            await self._state.audit(
                who=who, channel=channel_key, setting="profile", before=current_profile or "(default)",
                after=running.before_profile or "(default)", max_entries=self._settings.audit_max_entries,
            )
        return stopped

    async def using_profile(self, name: str) -> list[Experiment]:
        """Running experiments with an arm on profile ``name``."""
        prefix = self._state.key("channel", "")
        found: list[Experiment] = []
        async for key in self._state.redis.scan_iter(match=f"{prefix}*", count=500):
            experiment = Experiment.from_json(await self._state.redis.hget(key, EXPERIMENT_FIELD))
            if experiment and any(arm.profile == name for arm in experiment.arms):
                found.append(experiment)
        return sorted(found, key=lambda e: e.channel)

    async def _audit(self, who: str, channel_key: str, *, before: str, after: str) -> None:
        await self._state.audit(
            who=who, channel=channel_key, setting=EXPERIMENT_FIELD, before=before, after=after,
            max_entries=self._settings.audit_max_entries,
        )
