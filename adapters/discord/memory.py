"""What the Discord adapter remembers, shared by every replica and shard (see ``adapters.common.memory``):

- threads the bot answers in (thread id → parent channel id), so follow-ups there are answered
  without a new mention, even after a restart or on another replica;
- the bot's reply messages (message id → conversation root), so replying to an answer in
  ``reply`` mode continues that conversation.
"""

from __future__ import annotations

from adapters.common.memory import ThreadRegistry, ThreadStore

PLATFORM = "discord"


class ConversationMemory(ThreadRegistry):
    """The thread registry under Discord's name."""

    def __init__(self, store: ThreadStore, ttl_seconds: int) -> None:
        super().__init__(store, PLATFORM, ttl_seconds)
