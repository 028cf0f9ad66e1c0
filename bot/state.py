"""Conversation and control state in Redis: dedup, rate limits, history, channel settings, traces, audit.

Every key starts with the configured prefix. Workers keep nothing that matters in memory, so any
number of replicas can share one Redis and see each other's changes on the next message.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

# Fixed-window counter: INCR, set the window on first hit, report the TTL when over the limit.
_RATE_LIMIT_LUA = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if count > tonumber(ARGV[1]) then
  local ttl = redis.call('TTL', KEYS[1])
  if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[2]); ttl = tonumber(ARGV[2]) end
  return ttl
end
return 0
"""

# One 👍/👎 per user on a trace, and the trace's running vote counts (plain integers, so they stay
# JSON like every trace field): a changed vote moves one count, a repeated one moves nothing.
_FEEDBACK_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
local old = redis.call('HGET', KEYS[1], ARGV[1])
local was = old and string.match(old, '"value":%s*"(%a+)"')
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if was ~= ARGV[3] then
  if was == 'up' or was == 'down' then redis.call('HINCRBY', KEYS[1], 'votes_' .. was, -1) end
  redis.call('HINCRBY', KEYS[1], 'votes_' .. ARGV[3], 1)
end
return 1
"""

_READ_BATCH = 500


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # "user" | "assistant"
    content: str
    experiment: str | None = None  # on an assistant turn: the experiment whose arm answered it


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    at: float
    who: str
    channel: str
    setting: str
    before: str
    after: str


def connect_redis(url: str | None, client_name: str = "bothbot") -> tuple[aioredis.Redis, bool]:
    """A client for ``url``, or an in-process Redis (fakeredis with Lua) when url is None.

    Returns the client and whether it is in-process. Real connections retry on connection
    errors with backoff, so a Redis restart costs a short wait, not a lost message.
    """
    if url is None:
        import fakeredis

        return cast(aioredis.Redis, fakeredis.FakeAsyncRedis(decode_responses=True)), True
    retry = Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=6)
    client = aioredis.Redis.from_url(
        url,
        decode_responses=True,
        retry=retry,
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        health_check_interval=30,
        socket_connect_timeout=5,
        client_name=re.sub(r"[^\w:.-]", "_", client_name),
    )
    return client, False


class StateStore:
    """Typed access to bothbot's Redis keys."""

    def __init__(self, redis: aioredis.Redis, prefix: str, *, in_process: bool = False) -> None:
        self.redis = redis
        self.prefix = prefix
        self.in_process = in_process
        self._rate_limit = redis.register_script(_RATE_LIMIT_LUA)
        self._feedback = redis.register_script(_FEEDBACK_LUA)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    async def aclose(self) -> None:
        await self.redis.aclose()

    # --- dedup and limits ---------------------------------------------------------------

    async def claim_event(self, event_id: str, ttl_seconds: int) -> bool:
        """True for the first claim of ``event_id`` across all replicas, False for repeats."""
        return bool(await self.redis.set(self.key("event", event_id), "1", nx=True, ex=ttl_seconds))

    async def hit_rate_limit(self, bucket: str, limit: int, window_seconds: int) -> int:
        """Count one hit; return 0 when allowed, else the seconds until the window resets."""
        if limit <= 0:
            return 0
        result = await self._rate_limit(keys=[self.key("rate", bucket)], args=[limit, window_seconds])
        return int(result)

    # --- channel settings -----------------------------------------------------------------

    async def channel_overrides(self, channel_key: str) -> dict[str, str]:
        return cast(dict[str, str], await self.redis.hgetall(self.key("channel", channel_key)))

    async def set_channel_value(self, channel_key: str, field: str, value: str | None) -> None:
        key = self.key("channel", channel_key)
        if value is None:
            await self.redis.hdel(key, field)
        else:
            await self.redis.hset(key, field, value)

    # --- history ----------------------------------------------------------------------------

    async def history(self, conversation_key: str) -> list[Turn]:
        raw = await self.redis.lrange(self.key("history", conversation_key), 0, -1)
        turns: list[Turn] = []
        for item in raw:
            try:
                data = json.loads(item)
                experiment = data.get("experiment")
                turns.append(
                    Turn(
                        role=str(data["role"]),
                        content=str(data["content"]),
                        experiment=None if experiment is None else str(experiment),
                    )
                )
            except (ValueError, KeyError, TypeError):
                log.warning("skipping a malformed history entry in %s", conversation_key)
        return turns

    async def history_length(self, conversation_key: str) -> int:
        return int(await self.redis.llen(self.key("history", conversation_key)))

    async def append_turns(
        self, conversation_key: str, turns: Sequence[Turn], *, max_turns: int, ttl_seconds: int
    ) -> None:
        pipe = self.redis.pipeline(transaction=True)
        self._queue_turns(pipe, conversation_key, turns, max_turns=max_turns, ttl_seconds=ttl_seconds)
        await pipe.execute()

    def _queue_turns(
        self, pipe: Pipeline, conversation_key: str, turns: Sequence[Turn], *, max_turns: int, ttl_seconds: int
    ) -> None:
        key = self.key("history", conversation_key)
        if max_turns <= 0:
            pipe.delete(key)
            return
        rows = []
        for t in turns:
            row = {"role": t.role, "content": t.content}
            if t.experiment is not None:
                row["experiment"] = t.experiment
            rows.append(json.dumps(row))
        pipe.rpush(key, *rows)
        pipe.ltrim(key, -2 * max_turns, -1)
        pipe.expire(key, ttl_seconds)

    async def forget(self, conversation_key: str) -> bool:
        return bool(await self.redis.delete(self.key("history", conversation_key)))

    # --- threads the bot is part of (adapters.common.memory) ---------------------------------

    async def remember_thread(self, platform: str, thread: str, *, parent: str = "", ttl_seconds: int) -> None:
        """The bot answers in ``thread`` on ``platform`` (``parent``: its parent channel, if any)."""
        await self.redis.set(self.key(platform, "thread", thread), parent or "1", ex=ttl_seconds)

    async def knows_thread(self, platform: str, thread: str) -> bool:
        return bool(await self.redis.exists(self.key(platform, "thread", thread)))

    async def thread_parent(self, platform: str, thread: str) -> str | None:
        """The parent recorded for a known thread (``"1"`` when none was); None for an unknown thread."""
        value = await self.redis.get(self.key(platform, "thread", thread))
        return None if value is None else str(value)

    async def remember_replies(self, platform: str, message_ids: Sequence[str], root: str, *, ttl_seconds: int) -> None:
        """The bot's messages ``message_ids`` answer in the conversation ``root``."""
        pipe = self.redis.pipeline(transaction=False)
        for message_id in message_ids:
            pipe.set(self.key(platform, "reply", message_id), root, ex=ttl_seconds)
        await pipe.execute()

    async def reply_root(self, platform: str, message_id: str) -> str | None:
        value = await self.redis.get(self.key(platform, "reply", message_id))
        return None if value is None else str(value)

    # --- traces and feedback -------------------------------------------------------------------

    def trace_index(self, channel: str | None = None) -> str:
        """The sorted set of trace ids by creation time: one per channel, one for all channels."""
        return self.key("traces", "channel", channel) if channel else self.key("traces", "all")

    async def save_answer(
        self,
        trace_id: str,
        trace: Mapping[str, Any],
        *,
        trace_ttl_seconds: int,
        conversation_key: str | None = None,
        turns: Sequence[Turn] = (),
        max_turns: int = 0,
        history_ttl_seconds: int = 0,
    ) -> None:
        """Every write of one answer in one transaction: history turns (when given), the trace, and the
        trace's place in the channel and global time indexes, each index trimmed to the trace TTL.

        ``trace`` must hold ``channel`` and ``created_at`` (seconds since the epoch).
        """
        created_at = float(trace["created_at"])
        pipe = self.redis.pipeline(transaction=True)
        if conversation_key is not None and turns:
            self._queue_turns(pipe, conversation_key, turns, max_turns=max_turns, ttl_seconds=history_ttl_seconds)
        key = self.key("trace", trace_id)
        pipe.hset(key, mapping={k: json.dumps(v) for k, v in trace.items()})
        pipe.expire(key, trace_ttl_seconds)
        for index in (self.trace_index(str(trace["channel"])), self.trace_index()):
            pipe.zadd(index, {trace_id: created_at})
            pipe.zremrangebyscore(index, "-inf", f"({created_at - trace_ttl_seconds}")
            pipe.expire(index, trace_ttl_seconds)
        await pipe.execute()

    async def save_trace(self, trace_id: str, trace: Mapping[str, Any], ttl_seconds: int) -> None:
        await self.save_answer(trace_id, trace, trace_ttl_seconds=ttl_seconds)

    async def load_trace(self, trace_id: str) -> dict[str, Any] | None:
        raw = cast(dict[str, str], await self.redis.hgetall(self.key("trace", trace_id)))
        if not raw:
            return None
        return {k: json.loads(v) for k, v in raw.items()}

    async def trace_ids(
        self, *, channel: str | None = None, since: float | None = None, until: float | None = None
    ) -> list[str]:
        """Ids of the traces created in [since, until], oldest first (all channels when ``channel`` is None)."""
        low = "-inf" if since is None else repr(since)
        high = "+inf" if until is None else repr(until)
        return cast(list[str], await self.redis.zrangebyscore(self.trace_index(channel), low, high))

    async def load_traces(
        self, trace_ids: Sequence[str], fields: Sequence[str] | None = None
    ) -> list[dict[str, Any] | None]:
        """Many traces in pipelined batches, in order; None for an expired one.

        With ``fields``, only those (absent ones are None): cheaper than whole traces with their passages.
        """
        found: list[dict[str, Any] | None] = []
        for start in range(0, len(trace_ids), _READ_BATCH):
            batch = trace_ids[start : start + _READ_BATCH]
            pipe = self.redis.pipeline(transaction=False)
            for trace_id in batch:
                if fields:
                    pipe.hmget(self.key("trace", trace_id), list(fields))
                else:
                    pipe.hgetall(self.key("trace", trace_id))
            for raw in await pipe.execute():
                found.append(_decode_trace(raw, fields))
        return found

    async def record_feedback(self, trace_id: str, user: str, value: str) -> bool:
        """Store ``value`` from ``user`` on an existing trace; False when the trace is unknown/expired.

        One vote per user: voting again replaces the earlier vote. The trace's ``votes_up`` and
        ``votes_down`` counts follow, atomically.
        """
        feedback = {"user": user, "value": value, "at": time.time()}
        stored = await self._feedback(
            keys=[self.key("trace", trace_id)], args=[f"feedback:{user}", json.dumps(feedback), value]
        )
        return bool(stored)

    # --- audit -----------------------------------------------------------------------------------

    async def audit(
        self, *, who: str, channel: str, setting: str, before: str, after: str, max_entries: int
    ) -> None:
        fields = {"who": who, "at": f"{time.time():.3f}", "channel": channel, "setting": setting,
                  "before": before, "after": after}
        await self.redis.xadd(self.key("audit"), fields, maxlen=max_entries, approximate=True)  # type: ignore[arg-type]

    async def recent_audit(self, count: int, channel: str | None = None) -> list[AuditEntry]:
        """Newest first; with ``channel``, only that channel's entries (scans a bounded window)."""
        window = count if channel is None else count * 20
        rows = cast(list[tuple[str, dict[str, str]]], await self.redis.xrevrange(self.key("audit"), count=window))
        entries = [
            AuditEntry(
                id=entry_id,
                at=float(fields.get("at", 0)),
                who=fields.get("who", ""),
                channel=fields.get("channel", ""),
                setting=fields.get("setting", ""),
                before=fields.get("before", ""),
                after=fields.get("after", ""),
            )
            for entry_id, fields in rows
        ]
        if channel is not None:
            entries = [e for e in entries if e.channel == channel]
        return entries[:count]


def _decode_trace(raw: Any, fields: Sequence[str] | None) -> dict[str, Any] | None:
    if fields:
        values = cast(list[str | None], raw)
        if all(v is None for v in values):
            return None
        return {name: None if v is None else json.loads(v) for name, v in zip(fields, values, strict=True)}
    mapping = cast(dict[str, str], raw)
    return {k: json.loads(v) for k, v in mapping.items()} if mapping else None
