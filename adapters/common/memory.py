"""Which threads the bot is part of, and which conversation a reply to one of its answers continues.

Kept in the shared state store (never in process memory), so every replica and shard agrees and
a restart forgets nothing. Entries expire with the conversation history they point into and are
refreshed on every answer.

A thread is named by its platform and the parts that identify it there (Slack: workspace,
channel, thread ts; Discord: the thread's channel id). A thread may record its parent channel.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


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
        return await self._store.knows_thread(self.platform, self._thread(thread))

    async def parent(self, *thread: str) -> str | None:
        """The parent channel recorded for a thread the bot is part of; None when it is not."""
        return await self._store.thread_parent(self.platform, self._thread(thread))

    async def remember_replies(self, message_ids: Sequence[str], root: str) -> None:
        """The bot's answer messages ``message_ids`` belong to the conversation ``root``."""
        if message_ids:
            await self._store.remember_replies(self.platform, message_ids, root, ttl_seconds=self.ttl_seconds)

    async def reply_root(self, message_id: str) -> str | None:
        return await self._store.reply_root(self.platform, message_id)
