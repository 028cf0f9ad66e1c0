"""Which threads the bot is part of, and which conversation a reply to one of its answers continues.

Kept in the shared state store (never in process memory), so every replica and shard agrees and
a restart forgets nothing. Entries expire with the conversation history they point into and are
refreshed on every answer.

A thread is named by its platform and the parts that identify it there (Slack: workspace,
channel, thread ts; Discord: the thread's channel id). A thread may record its parent channel.

The lookups (:meth:`ThreadRegistry.knows`, ``parent``, ``reply_root``, and :func:`lookup` for the
adapters' other "is this for me?" reads) are what an adapter asks before it decides to answer, so
they are bounded: when the store does not answer within :data:`LOOKUP_TIMEOUT_SECONDS` (Redis down,
or unreachable), they raise :class:`StoreUnavailable` instead of waiting out the client's retries,
and the adapter tells the user (``texts.MEMORY_UNAVAILABLE``) when the platform's own payload shows
the message is for the bot, or stays silent when it cannot tell.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Protocol, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

T = TypeVar("T")

LOOKUP_TIMEOUT_SECONDS = 2.0
"""The longest an adapter waits on the state store to decide whether a message is for the bot.

A lookup takes about a millisecond. When Redis is down, the client (``bot.state.connect_redis``)
retries with backoff for about five seconds (connection refused; far longer when connects hang),
which rides out a quick restart but leaves the user waiting. Its retries come at about 0.1, 0.3,
0.7 and 1.5 s, so a restart within ~1.5 s is still ridden out; past this bound the lookup fails
with :class:`StoreUnavailable` and the user hears why within a couple of seconds."""


class StoreUnavailable(Exception):
    """The state store did not answer a lookup: unreachable, or slower than the lookup bound."""


STORE_DOWN_ERRORS: tuple[type[Exception], ...] = (StoreUnavailable, RedisConnectionError, RedisTimeoutError)
"""What an unreachable state store raises: a bounded lookup's :class:`StoreUnavailable`, or the
Redis client's own errors once its retries are spent (the engine's reads and writes)."""


async def lookup(read: Awaitable[T], what: str, *, timeout: float = LOOKUP_TIMEOUT_SECONDS) -> T:
    """``await read``, a state-store read, bounded: :class:`StoreUnavailable` when the store is
    unreachable or gives no answer within ``timeout`` seconds (``what`` names it in the error)."""
    try:
        async with asyncio.timeout(timeout):
            return await read
    except TimeoutError as exc:  # also redis-py's socket timeouts surfacing as the builtin
        raise StoreUnavailable(f"{what}: no answer from the state store within {timeout:g} s") from exc
    except (RedisConnectionError, RedisTimeoutError) as exc:
        raise StoreUnavailable(f"{what}: {exc}") from exc


class ThreadStore(Protocol):
    """The state-store methods the registry uses (``bot.state.StateStore`` has them)."""

    async def remember_thread(self, platform: str, thread: str, *, parent: str = "", ttl_seconds: int) -> None: ...

    async def knows_thread(self, platform: str, thread: str) -> bool: ...

    async def thread_parent(self, platform: str, thread: str) -> str | None: ...

    async def remember_replies(
        self, platform: str, message_ids: Sequence[str], root: str, *, ttl_seconds: int
    ) -> None: ...

    async def reply_root(self, platform: str, message_id: str) -> str | None: ...


class ThreadRegistry:
    """One platform's threads and answer messages, for ``ttl_seconds`` after the last answer."""

    def __init__(self, store: ThreadStore, platform: str, ttl_seconds: int) -> None:
        self._store = store
        self.platform = platform
        self.ttl_seconds = ttl_seconds

    @staticmethod
    def _thread(parts: Sequence[str]) -> str:
        return ":".join(parts)

    async def remember(self, *thread: str, parent: str = "") -> None:
        """The bot answers in ``thread`` (optionally: whose parent channel is ``parent``)."""
        name = self._thread(thread)
        await self._store.remember_thread(self.platform, name, parent=parent, ttl_seconds=self.ttl_seconds)

    async def knows(self, *thread: str) -> bool:
        """Whether the bot is part of ``thread``; :class:`StoreUnavailable` when the store can't say."""
        return await lookup(self._store.knows_thread(self.platform, self._thread(thread)), "thread lookup")

    async def parent(self, *thread: str) -> str | None:
        """The parent channel recorded for a thread the bot is part of; None when it is not;
        :class:`StoreUnavailable` when the store can't say."""
        return await lookup(self._store.thread_parent(self.platform, self._thread(thread)), "thread lookup")

    async def remember_replies(self, message_ids: Sequence[str], root: str) -> None:
        """The bot's answer messages ``message_ids`` belong to the conversation ``root``."""
        if message_ids:
            await self._store.remember_replies(self.platform, message_ids, root, ttl_seconds=self.ttl_seconds)

    async def reply_root(self, message_id: str) -> str | None:
        """The conversation an answer message belongs to; None for another message;
        :class:`StoreUnavailable` when the store can't say."""
        return await lookup(self._store.reply_root(self.platform, message_id), "reply lookup")
