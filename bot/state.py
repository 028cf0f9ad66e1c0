"""Conversation and control state in Redis: dedup, rate limits, history, channel settings, traces, audit.

Every key starts with the configured prefix. Workers keep nothing that matters in memory, so any
number of replicas can share one Redis and see each other's changes on the next message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple, cast
from urllib.parse import unquote, urlsplit

import orjson
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

log = logging.getLogger(__name__)

# Fixed-window counter: INCR, set the window on first hit, report the TTL when over the limit.
_RATE_LIMIT_FN = """
local function hit_rate_limit(key, limit, window)
  local count = redis.call('INCR', key)
  if count == 1 then redis.call('EXPIRE', key, window) end
  if count > tonumber(limit) then
    local ttl = redis.call('TTL', key)
    if ttl < 0 then redis.call('EXPIRE', key, window); ttl = tonumber(window) end
    return ttl
  end
  return 0
end
"""
_RATE_LIMIT_LUA = _RATE_LIMIT_FN + "return hit_rate_limit(KEYS[1], ARGV[1], ARGV[2])"

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
_CLAIM_EVENT_FN = """
local function claim_event(key, token, lease_ms)
  local held = redis.call('GET', key)
  if held then return held end
  redis.call('SET', key, token, 'PX', lease_ms)
  return false
end
"""
_CLAIM_EVENT_LUA = _CLAIM_EVENT_FN + "return claim_event(KEYS[1], ARGV[1], ARGV[2])"

# Everything a message needs before it is answered, in one round trip: claim the event (stop when
# another claim holds it), count the rate limits (stop at the first that is over), then read the
# registered profiles, the channel's settings and the conversation's history.
# KEYS: event, profiles, channel, history, rate buckets…  ARGV: token ('' = no event), lease ms,
# read channel ('1'/'0'), read history ('1'/'0'), then limit and window for each rate bucket.
# Returns {held claim or '', seconds to wait or 0, profiles, channel, history}.
_BEGIN_MESSAGE_LUA = _CLAIM_EVENT_FN + _RATE_LIMIT_FN + """
if ARGV[1] ~= '' then
  local held = claim_event(KEYS[1], ARGV[1], ARGV[2])
  if held then return {held} end
end
for i = 5, #KEYS do
  local wait = hit_rate_limit(KEYS[i], ARGV[2 * i - 5], ARGV[2 * i - 4])
  if wait > 0 then return {'', wait} end
end
local channel, history = {}, {}
if ARGV[3] == '1' then channel = redis.call('HGETALL', KEYS[3]) end
if ARGV[4] == '1' then history = redis.call('LRANGE', KEYS[4], 0, -1) end
return {'', 0, redis.call('HGETALL', KEYS[2]), channel, history}
"""

# Renew: extend the lease only while it is still ours (not run out and taken by another replica).
_RENEW_EVENT_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return 0
"""

# Finish: mark done when the claim is ours, or ran out with nobody else taking it since; never
# overwrite another replica's claim.
_FINISH_EVENT_FN = """
local function finish_event(key, token, ttl)
  local held = redis.call('GET', key)
  if held and held ~= token then return 0 end
  redis.call('SET', key, 'done', 'EX', ttl)
  return 1
end
"""
_FINISH_EVENT_LUA = _FINISH_EVENT_FN + "return finish_event(KEYS[1], ARGV[1], ARGV[2])"

# The writes of one answer, each on its own key: the trace (a hash of JSON values, with its TTL),
# the conversation's history (turns appended, the list trimmed to the last max_turns exchanges; a
# max_turns of 0 or less keeps no history), and the trace's place in a time index (entries older
# than the trace TTL dropped).
# The trace's fields come as one argument, names and JSON values separated by NUL bytes (which JSON
# text never holds raw): packing one argument costs the client a fraction of packing forty.
_ANSWER_FNS = """
local function save_trace(key, ttl, packed)
  local fields, from = {}, 1
  while true do
    local at = string.find(packed, '\\0', from, true)
    if not at then fields[#fields + 1] = string.sub(packed, from); break end
    fields[#fields + 1] = string.sub(packed, from, at - 1)
    from = at + 1
  end
  redis.call('HSET', key, unpack(fields))
  redis.call('EXPIRE', key, ttl)
end
local function append_turns(key, max_turns, ttl, rows)
  if tonumber(max_turns) <= 0 then redis.call('DEL', key); return end
  redis.call('RPUSH', key, unpack(rows))
  redis.call('LTRIM', key, -2 * tonumber(max_turns), -1)
  redis.call('EXPIRE', key, ttl)
end
local function index_trace(key, trace_id, at, cutoff, ttl)
  redis.call('ZADD', key, at, trace_id)
  redis.call('ZREMRANGEBYSCORE', key, '-inf', '(' .. cutoff)
  redis.call('EXPIRE', key, ttl)
end
"""
_SAVE_TRACE_LUA = _ANSWER_FNS + "save_trace(KEYS[1], ARGV[1], ARGV[2])"
_APPEND_TURNS_LUA = _ANSWER_FNS + "append_turns(KEYS[1], ARGV[1], ARGV[2], {unpack(ARGV, 3)})"
_INDEX_TRACE_LUA = _ANSWER_FNS + "index_trace(KEYS[1], ARGV[1], ARGV[2], ARGV[3], ARGV[4])"

# All of them at once, and the event marked done, on one Redis (keys in any slot): one atomic script.
# KEYS: trace, history, channel index, global index, event.
# ARGV: trace TTL, trace id, created at, index cutoff, the packed trace fields, m, m history rows,
# max_turns, history TTL, claim token ('' = no event to finish), dedup TTL.
_SAVE_ANSWER_LUA = _ANSWER_FNS + _FINISH_EVENT_FN + """
save_trace(KEYS[1], ARGV[1], ARGV[5])
local at = 6
local m = tonumber(ARGV[at])
if m > 0 then append_turns(KEYS[2], ARGV[at + m + 1], ARGV[at + m + 2], {unpack(ARGV, at + 1, at + m)}) end
index_trace(KEYS[3], ARGV[2], ARGV[3], ARGV[4], ARGV[1])
index_trace(KEYS[4], ARGV[2], ARGV[3], ARGV[4], ARGV[1])
if ARGV[at + m + 3] ~= '' then finish_event(KEYS[5], ARGV[at + m + 3], ARGV[at + m + 4]) end
return 1
"""

# Release: free the claim (an answer that failed before showing anything), only when it is ours.
_RELEASE_EVENT_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

EVENT_DONE = "done"

_READ_BATCH = 500


class Turn(NamedTuple):
    """One message of a conversation's history (a tuple: a history is read whole for every question)."""

    role: str  # "user" | "assistant"
    content: str
    experiment: str | None = None  # on an assistant turn: the experiment whose arm answered it


@dataclass(frozen=True, slots=True)
class EventClaim:
    """This process answers ``event_id``: the key's value is ``token`` while the answer runs."""

    event_id: str
    token: str


@dataclass(frozen=True, slots=True)
class RateLimit:
    """One fixed-window counter a message counts against: at most ``limit`` hits per ``window_seconds``."""

    bucket: str
    limit: int
    window_seconds: int


@dataclass(slots=True)
class MessageStart:
    """What :meth:`StateStore.begin_message` found.

    ``held``: the event is done, or being answered by another claim (nothing else was done).
    ``rate_wait``: seconds until a rate limit's window resets (nothing was read).
    Else ``claim`` (None for a message without an event id), and what was asked to be read.
    """

    held: str | None = None
    claim: EventClaim | None = None
    rate_wait: int = 0
    profiles: dict[str, str] | None = None  # None when not read (held, or rate limited)
    channel: dict[str, str] = field(default_factory=dict)
    history: list[Turn] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: str
    at: float
    who: str
    channel: str
    setting: str
    before: str
    after: str


POOL_CONNECTIONS = 100
"""Connections to one Redis server; each answer holds one while it talks to Redis (twice per answer)."""
POOL_WAIT_SECONDS = 10.0
"""How long a command waits for a free connection when all :data:`POOL_CONNECTIONS` are busy."""
POOL_CONNECTIONS_UNQUEUED = 1000
"""Connections per node for cluster and Sentinel clients, whose pools fail instead of waiting when full."""

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
    A plain URL (and the in-process Redis) gets a pool of at most :data:`POOL_CONNECTIONS` connections
    in which a command waits (up to :data:`POOL_WAIT_SECONDS`) for a free one, so a burst of
    conversations queues instead of failing; a cluster or Sentinel client may open up to
    :data:`POOL_CONNECTIONS_UNQUEUED` per node.
    """
    if url is None:
        import fakeredis

        fake = fakeredis.FakeAsyncRedis(
            decode_responses=True,
            connection_pool_class=aioredis.BlockingConnectionPool,
            max_connections=POOL_CONNECTIONS,
            timeout=POOL_WAIT_SECONDS,
        )
        return cast(aioredis.Redis, fake), True
    options: dict[str, Any] = {
        "decode_responses": True,
        "retry": Retry(ExponentialBackoff(cap=2.0, base=0.05), retries=6),
        "retry_on_error": [RedisConnectionError, RedisTimeoutError],
        "health_check_interval": 30,
        "socket_connect_timeout": 5,
        "client_name": re.sub(r"[^\w:.-]", "_", client_name),
    }
    if url.partition("://")[0].lower() in SENTINEL_SCHEMES:
        return _connect_sentinel(url, max_connections=POOL_CONNECTIONS_UNQUEUED, **options), False
    if node_url(url) != url:
        cluster = RedisCluster.from_url(node_url(url), max_connections=POOL_CONNECTIONS_UNQUEUED, **options)
        return cast(aioredis.Redis, cluster), False
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=POOL_CONNECTIONS, timeout=POOL_WAIT_SECONDS, **options
    )
    return aioredis.Redis.from_pool(pool), False


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
        self._begin_message = redis.register_script(_BEGIN_MESSAGE_LUA)
        self._save_answer = redis.register_script(_SAVE_ANSWER_LUA)
        self._save_trace = redis.register_script(_SAVE_TRACE_LUA)
        self._append_turns = redis.register_script(_APPEND_TURNS_LUA)
        self._index_trace = redis.register_script(_INDEX_TRACE_LUA)
        # a cluster keeps keys in many slots: one script or transaction may only touch one of them
        self.cluster = isinstance(redis, RedisCluster)

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

    # --- the start of a message ------------------------------------------------------------

    async def begin_message(
        self,
        *,
        event_id: str | None,
        lease_seconds: float,
        profiles_key: str,
        rate_limits: Sequence[RateLimit] = (),
        channel_key: str | None = None,
        conversation_key: str | None = None,
    ) -> MessageStart:
        """Claim ``event_id`` (as :meth:`claim_event`), count ``rate_limits`` in order (as
        :meth:`hit_rate_limit`, stopping at the first that is over), and read the hash at
        ``profiles_key``, the channel's overrides and the conversation's history: one round trip
        (one script). On a Redis Cluster the keys live in different slots, so the same steps are
        made one after another (claim, each limit, then the reads in one pipeline).
        """
        limits = [r for r in rate_limits if r.limit > 0]
        claim = _new_claim(event_id) if event_id else None
        begin = self._begin_message_steps if self.cluster else self._begin_message_script
        start = await begin(claim, lease_seconds, profiles_key, limits, channel_key, conversation_key)
        if start.held is not None:
            log.info("event %s is %s", event_id, _held_as(start.held))
        return start

    async def _begin_message_script(
        self,
        claim: EventClaim | None,
        lease_seconds: float,
        profiles_key: str,
        limits: Sequence[RateLimit],
        channel_key: str | None,
        conversation_key: str | None,
    ) -> MessageStart:
        keys = [
            self.key("event", claim.event_id if claim else "_"),
            profiles_key,
            self.key("channel", channel_key or "_"),
            self.key("history", conversation_key or "_"),
            *(self.key("rate", r.bucket) for r in limits),
        ]
        args: list[str | int] = [
            claim.token if claim else "",
            _ms(lease_seconds),
            "1" if channel_key is not None else "0",
            "1" if conversation_key is not None else "0",
        ]
        for r in limits:
            args += [r.limit, r.window_seconds]
        found = cast(list[Any], await self._begin_message(keys=keys, args=args))
        if found[0]:
            return MessageStart(held=str(found[0]))
        if int(found[1]):
            return MessageStart(claim=claim, rate_wait=int(found[1]))
        return MessageStart(
            claim=claim,
            profiles=_pairs(found[2]),
            channel=_pairs(found[3]),
            history=self._turns(found[4], conversation_key or ""),
        )

    async def _begin_message_steps(
        self,
        claim: EventClaim | None,
        lease_seconds: float,
        profiles_key: str,
        limits: Sequence[RateLimit],
        channel_key: str | None,
        conversation_key: str | None,
    ) -> MessageStart:
        if claim is not None:
            key = self.key("event", claim.event_id)
            held = await self._claim_event(keys=[key], args=[claim.token, _ms(lease_seconds)])
            if held:
                return MessageStart(held=str(held))
        for r in limits:
            wait = await self.hit_rate_limit(r.bucket, r.limit, r.window_seconds)
            if wait:
                return MessageStart(claim=claim, rate_wait=wait)
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(profiles_key)
        if channel_key is not None:
            pipe.hgetall(self.key("channel", channel_key))
        if conversation_key is not None:
            pipe.lrange(self.key("history", conversation_key), 0, -1)
        found = iter(await pipe.execute())
        return MessageStart(
            claim=claim,
            profiles=dict(next(found)),
            channel=dict(next(found)) if channel_key is not None else {},
            history=self._turns(cast(list[str], next(found)), conversation_key) if conversation_key is not None else [],
        )

    # --- dedup and limits ---------------------------------------------------------------

    async def claim_event(self, event_id: str, lease_seconds: float) -> EventClaim | None:
        """Claim ``event_id`` as *in progress* for ``lease_seconds`` (one round trip); None when another
        claim holds it: in progress elsewhere with its lease alive, or done.

        The owner keeps the claim with :meth:`renew_event` while it answers, then calls
        :meth:`finish_event` (done, kept for the dedup TTL) or :meth:`release_event` (a retry may answer).
        """
        claim = _new_claim(event_id)
        held = await self._claim_event(keys=[self.key("event", event_id)], args=[claim.token, _ms(lease_seconds)])
        if held:
            log.info("event %s is %s", event_id, _held_as(str(held)))
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
        raw = cast(list[str], await self.redis.lrange(self.key("history", conversation_key), 0, -1))
        return self._turns(raw, conversation_key)

    @staticmethod
    def _turns(raw: Sequence[str], conversation_key: str) -> list[Turn]:
        turns: list[Turn] = []
        for item in raw:
            try:
                data = orjson.loads(item)
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
        """Append ``turns``, keep the last ``max_turns`` exchanges (none when it is 0 or less): one script."""
        if turns:
            rows = _turn_rows(turns)
            await self._append_turns(keys=[self.key("history", conversation_key)], args=[max_turns, ttl_seconds, *rows])

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
        finish: EventClaim | None = None,
        dedup_ttl_seconds: int = 0,
    ) -> None:
        """Every write of one answer: the trace, the history turns (when given), the trace's place in
        the channel and global time indexes (each trimmed to the trace TTL), and, with ``finish``, the
        event marked done (as :meth:`finish_event`, for ``dedup_ttl_seconds``).

        On one Redis it is one script (one round trip), atomic: nobody sees it half done, and a lost
        connection leaves all of it or none, so an answer is never saved without its event marked
        done. On a Redis Cluster the keys live in different slots, so it is not: the trace (hash +
        TTL) is written whole by one script first, so an index entry never points at a trace that was
        not written; then the history turns, each index and the event, one script each, together. A
        failure part way there leaves a saved trace missing from an index (found by id, not in
        exports) or missing its history turns, never a half-written trace or history.

        ``trace`` must hold ``channel`` and ``created_at`` (seconds since the epoch).
        """
        created_at = float(trace["created_at"])
        fields = b"\0".join(item for name, value in trace.items() for item in (name.encode(), orjson.dumps(value)))
        rows = _turn_rows(turns) if conversation_key is not None else []
        history_key = self.key("history", conversation_key or "_")
        indexes = (self.trace_index(str(trace["channel"])), self.trace_index())
        timing: list[str | int] = [trace_id, repr(created_at), repr(created_at - trace_ttl_seconds), trace_ttl_seconds]
        event_key = self.key("event", finish.event_id if finish else "_")
        if not self.cluster:
            await self._save_answer(
                keys=[self.key("trace", trace_id), history_key, *indexes, event_key],
                args=[
                    trace_ttl_seconds, *timing[:3], fields, len(rows), *rows,
                    max_turns, history_ttl_seconds, finish.token if finish else "", dedup_ttl_seconds,
                ],
            )
            return
        await self._save_trace(keys=[self.key("trace", trace_id)], args=[trace_ttl_seconds, fields])
        writes = [self._index_trace(keys=[index], args=timing) for index in indexes]
        if rows:
            writes.append(self._append_turns(keys=[history_key], args=[max_turns, history_ttl_seconds, *rows]))
        if finish is not None:
            writes.append(self._finish_event(keys=[event_key], args=[finish.token, dedup_ttl_seconds]))
        await asyncio.gather(*writes)

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


def _new_claim(event_id: str) -> EventClaim:
    """A claim on ``event_id`` with a fresh owner token (the value its key holds while in progress)."""
    return EventClaim(event_id, f"run:{secrets.token_hex(16)}")


def _held_as(value: str) -> str:
    return "already answered" if value == EVENT_DONE else "being answered"


def _turn_rows(turns: Sequence[Turn]) -> list[bytes]:
    """History turns as stored: one JSON object per list entry."""
    rows = []
    for t in turns:
        row = {"role": t.role, "content": t.content}
        if t.experiment is not None:
            row["experiment"] = t.experiment
        rows.append(orjson.dumps(row))
    return rows


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    """A hash as a script returns it (field, value, field, value…) → a dict."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))
