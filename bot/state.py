"""Conversation and control state in Redis: dedup, rate limits, history, channel settings, traces, audit.

Every key starts with the configured prefix. Workers keep nothing that matters in memory, so any
number of replicas can share one Redis and see each other's changes on the next message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote, urlsplit

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

# Event claims, two states on one key: "run:<owner token>" with a short lease while an answer is in
# progress (renewed by its owner), then "done" for the dedup TTL. Each change is one atomic script.
# Claim: take a free key; else say who holds it (the value), so a repeat is logged for what it is.
_CLAIM_EVENT_LUA = """
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

# Renew: extend the lease only while it is still ours (not run out and taken by another replica).
_RENEW_EVENT_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# Finish: mark done when the claim is ours, or ran out with nobody else taking it since; never
# overwrite another replica's claim.
_FINISH_EVENT_LUA = """
local held = redis.call('GET', KEYS[1])
if held and held ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], 'done', 'EX', ARGV[2])
return 1
"""

# Release: free the claim (an answer that failed before showing anything), only when it is ours.
_RELEASE_EVENT_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

EVENT_DONE = "done"

_READ_BATCH = 500


@dataclass(frozen=True, slots=True)
class Turn:
    role: str  # "user" | "assistant"
    content: str
    experiment: str | None = None  # on an assistant turn: the experiment whose arm answered it


@dataclass(frozen=True, slots=True)
class EventClaim:
    """This process answers ``event_id``: the key's value is ``token`` while the answer runs."""

    event_id: str
    token: str


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    at: float
    who: str
    channel: str
    setting: str
    before: str
    after: str


CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
"""URL schemes that name a Redis Cluster (any one node of it), and the plain scheme each stands for."""


SENTINEL_SCHEMES = {"redis+sentinel": False, "rediss+sentinel": True}
"""URL schemes that name a Redis Sentinel deployment, and whether the master is reached over TLS."""


class _SentinelRedis(aioredis.Redis):
    """The master's client from :meth:`Sentinel.master_for`; closing it closes the Sentinel clients too."""

    sentinels: list[aioredis.Redis]

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        for sentinel in getattr(self, "sentinels", []):
            await sentinel.aclose()


def _connect_sentinel(url: str, **options: Any) -> aioredis.Redis:
    """``redis+sentinel://[[user]:password@]host:port[,host:port…]/service[/db]``: the current master of
    ``service`` as the Sentinels name it, found again after a failover. The credentials are the master's."""
    from redis.asyncio.sentinel import Sentinel

    parts = urlsplit(url)
    hosts: list[tuple[str, int]] = []
    for item in parts.netloc.rpartition("@")[2].split(","):
        host, colon, port = item.rpartition(":")
        hosts.append((host, int(port)) if colon else (item, 26379))
    service, _, db = parts.path.strip("/").partition("/")
    if not service or not all(host for host, _ in hosts):
        raise ValueError("a Sentinel URL names its hosts and service: redis+sentinel://host:26379/SERVICE")
    sentinel = Sentinel(hosts, sentinel_kwargs={"socket_connect_timeout": options["socket_connect_timeout"]})
    client = sentinel.master_for(
        service,
        redis_class=_SentinelRedis,
        db=int(db or 0),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=SENTINEL_SCHEMES[parts.scheme.lower()],
        **options,
    )
    client.sentinels = list(sentinel.sentinels)
    return cast(aioredis.Redis, client)


def node_url(url: str) -> str:
    """``url`` with a cluster scheme (``redis+cluster://``) turned into the plain URL of the node it names."""
    scheme, sep, rest = url.partition("://")
    plain = CLUSTER_SCHEMES.get(scheme.lower()) if sep else None
    return f"{plain}://{rest}" if plain else url


def probe_client(url: str, timeout: float) -> aioredis.Redis:
    """A client for one start-up PING of ``url`` with short timeouts and no retries: the node a cluster URL
    names (it answers for the cluster), or the master the Sentinels of a Sentinel URL name."""
    if url.partition("://")[0].lower() in SENTINEL_SCHEMES:
        return _connect_sentinel(url, socket_connect_timeout=timeout, socket_timeout=timeout, retry_on_timeout=False)
    return aioredis.Redis.from_url(
        node_url(url), socket_connect_timeout=timeout, socket_timeout=timeout, retry_on_timeout=False
    )


def connect_redis(url: str | None, client_name: str = "bothbot") -> tuple[aioredis.Redis, bool]:
    """A client for ``url``, or an in-process Redis (fakeredis with Lua) when url is None.

    ``redis+cluster://host:port`` (or ``rediss+cluster://``) names a Redis Cluster by any one of its
    nodes: the client discovers the others and routes each command to the node that holds its slot.
    Every multi-key operation bothbot sends keeps its keys in one hash slot (see :meth:`StateStore.tagged_key`).
    ``redis+sentinel://host:26379[,host2:26379…]/SERVICE[/db]`` (or ``rediss+sentinel://``) asks the
    Sentinels for the master of ``SERVICE``, and again after a failover.

    Returns the client and whether it is in-process. Real connections retry on connection
    errors with backoff, so a Redis restart (or a cluster failover) costs a short wait, not a lost message.
    """
    if url is None:
        import fakeredis

        return cast(aioredis.Redis, fakeredis.FakeAsyncRedis(decode_responses=True)), True
    options: dict[str, Any] = {
        "decode_responses": True,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=6),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 30,
        "socket_connect_timeout": 5,
        "client_name": re.sub(r"[^\w:.-]", "_", client_name),
    }
    if url.partition("://")[0].lower() in SENTINEL_SCHEMES:
        return _connect_sentinel(url, **options), False
    if node_url(url) != url:
        from redis.asyncio.cluster import RedisCluster

        return cast(aioredis.Redis, RedisCluster.from_url(node_url(url), **options)), False
    return aioredis.Redis.from_url(url, **options), False


class StateStore:
    """Typed access to bothbot's Redis keys."""

    def __init__(self, redis: aioredis.Redis, prefix: str, *, in_process: bool = False) -> None:
        self.redis = redis
        self.prefix = prefix
        self.in_process = in_process
        self._rate_limit = redis.register_script(_RATE_LIMIT_LUA)
        self._feedback = redis.register_script(_FEEDBACK_LUA)
        self._claim_event = redis.register_script(_CLAIM_EVENT_LUA)
        self._renew_event = redis.register_script(_RENEW_EVENT_LUA)
        self._finish_event = redis.register_script(_FINISH_EVENT_LUA)
        self._release_event = redis.register_script(_RELEASE_EVENT_LUA)

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def tagged_key(self, group: str, tag: str, *parts: str) -> str:
        """``{prefix}:{group}:{{tag}}:{parts}``: keys with the same ``group`` and ``tag`` share a Redis
        Cluster hash slot, so one transaction, Lua script or MGET may use them together.

        Braces inside ``tag`` are replaced (they would end the hash tag early or empty it). A prefix
        that itself holds a ``{…}`` tag puts every key in one slot: correct, but not spread over shards.
        """
        safe = tag.replace("{", "(").replace("}", ")") or "_"
        return ":".join((self.prefix, group, "{" + safe + "}", *parts))

    async def aclose(self) -> None:
        await self.redis.aclose()

    # --- dedup and limits ---------------------------------------------------------------

    async def claim_event(self, event_id: str, lease_seconds: float) -> EventClaim | None:
        """Claim ``event_id`` as *in progress* for ``lease_seconds`` (one round trip); None when another
        claim holds it: in progress elsewhere with its lease alive, or done.

        The owner keeps the claim with :meth:`renew_event` while it answers, then calls
        :meth:`finish_event` (done, kept for the dedup TTL) or :meth:`release_event` (a retry may answer).
        """
        claim = EventClaim(event_id, f"run:{uuid.uuid4().hex}")
        held = await self._claim_event(keys=[self.key("event", event_id)], args=[claim.token, _ms(lease_seconds)])
        if held:
            log.info("event %s is %s", event_id, "already answered" if held == EVENT_DONE else "being answered")
            return None
        return claim

    async def renew_event(self, claim: EventClaim, lease_seconds: float) -> bool:
        """Extend the lease; False when it is no longer ours (it ran out and may be another's now)."""
        renewed = await self._renew_event(
            keys=[self.key("event", claim.event_id)], args=[claim.token, _ms(lease_seconds)]
        )
        return bool(renewed)

    async def finish_event(self, claim: EventClaim, ttl_seconds: int) -> bool:
        """Mark the event *done* for ``ttl_seconds``; False when another replica holds it now."""
        done = await self._finish_event(keys=[self.key("event", claim.event_id)], args=[claim.token, ttl_seconds])
        return bool(done)

    async def release_event(self, claim: EventClaim) -> bool:
        """Free the claim so a retry of the event is answered; False when it was no longer ours."""
        return bool(await self._release_event(keys=[self.key("event", claim.event_id)], args=[claim.token]))

    async def event_state(self, event_id: str) -> str | None:
        """``"done"``, ``"run:<token>"`` while being answered, or None (never claimed, or run out)."""
        value = await self.redis.get(self.key("event", event_id))
        return None if value is None else str(value)

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
        """Every write of one answer: the trace, the history turns (when given), and the trace's place in
        the channel and global time indexes, each index trimmed to the trace TTL.

        The keys live in different Redis Cluster slots, so this is not one transaction. What holds:
        the trace (hash + TTL) is written whole in one transaction before anything else, so an index
        entry never points at a trace that was not written; then the history turns (one transaction on
        their list) and each index (one transaction per index) go together. A failure part way leaves
        a saved trace missing from an index (found by id, not in exports) or missing its history turns,
        never a half-written trace or history.

        ``trace`` must hold ``channel`` and ``created_at`` (seconds since the epoch).
        """
        created_at = float(trace["created_at"])
        key = self.key("trace", trace_id)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(key, mapping={k: json.dumps(v) for k, v in trace.items()})
        pipe.expire(key, trace_ttl_seconds)
        await pipe.execute()
        writes = []
        if conversation_key is not None and turns:
            history = self.redis.pipeline(transaction=True)
            self._queue_turns(history, conversation_key, turns, max_turns=max_turns, ttl_seconds=history_ttl_seconds)
            writes.append(history)
        for index in (self.trace_index(str(trace["channel"])), self.trace_index()):
            entry = self.redis.pipeline(transaction=True)
            entry.zadd(index, {trace_id: created_at})
            entry.zremrangebyscore(index, "-inf", f"({created_at - trace_ttl_seconds}")
            entry.expire(index, trace_ttl_seconds)
            writes.append(entry)
        await asyncio.gather(*(write.execute() for write in writes))

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


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
