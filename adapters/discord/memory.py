"""What the Discord adapter remembers in Redis, shared by every replica and shard.

- threads the bot answers in (thread id → parent channel id), so follow-ups there are answered
  without a new mention, even after a restart or on another replica;
- the bot's reply messages (message id → conversation root), so replying to an answer in
  ``reply`` mode continues that conversation.

Entries expire with the conversation history they point into, refreshed on every answer.
"""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis


class ConversationMemory:
    def __init__(self, redis: aioredis.Redis, key: Callable[..., str], ttl_seconds: int) -> None:
        self._redis = redis
        self._key = key  # StateStore.key(*parts) -> the deployment's prefixed key
        self._ttl = ttl_seconds

    async def remember_thread(self, thread_id: str, parent_id: str) -> None:
        await self._redis.set(self._key("discord", "thread", thread_id), parent_id, ex=self._ttl)

    async def thread_parent(self, thread_id: str) -> str | None:
        value = await self._redis.get(self._key("discord", "thread", thread_id))
        return None if value is None else str(value)

    async def remember_replies(self, message_ids: list[str], root: str) -> None:
        if not message_ids:
            return
        pipe = self._redis.pipeline(transaction=False)
        for message_id in message_ids:
            pipe.set(self._key("discord", "reply", message_id), root, ex=self._ttl)
        await pipe.execute()

    async def reply_root(self, message_id: str) -> str | None:
        value = await self._redis.get(self._key("discord", "reply", message_id))
        return None if value is None else str(value)
