"""What the Slack adapter remembers in Redis: who is an admin (the threads the bot is part of are
kept by the shared thread registry, ``adapters.common.memory``).

It lives in the shared Redis (never in process memory), so every replica agrees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

from adapters.slack import compat
from adapters.slack.client import WEB_API_ERRORS, slack_error
from adapters.slack.convert import workspace_admin

log = logging.getLogger(__name__)

KeyFn = Callable[..., str]


class AdminDirectory:
    """Admin = a configured user id, or a Slack workspace admin/owner (``users.info``, cached)."""

    def __init__(
        self,
        client: AsyncWebClient,
        redis: aioredis.Redis,
        key: KeyFn,
        configured: Iterable[str],
        ttl_seconds: int,
        *,
        compat: bool = False,
    ) -> None:
        self.client = client
        self.compat = compat
        self.redis = redis
        self.key = key
        self.configured = frozenset(configured)
        self.ttl_seconds = ttl_seconds

    async def is_admin(self, team: str, user: str) -> bool:
        if user in self.configured:
            return True
        cache_key = self.key("slack", "admin", team, user)
        cached = await self.redis.get(cache_key) if self.ttl_seconds > 0 else None
        if cached is not None:
            return cached in ("1", b"1")
        try:
            response = await self._users_info(user)
        except WEB_API_ERRORS as exc:
            # Unknown means not an admin; not cached, so the next command asks again.
            log.warning("users.info for %s failed (%s); treating as non-admin", user, slack_error(exc))
            return False
        admin = workspace_admin(response.data if isinstance(response.data, dict) else {})
        if self.ttl_seconds > 0:  # 0 = ask Slack every time
            await self.redis.set(cache_key, "1" if admin else "0", ex=self.ttl_seconds)
        return admin

    async def _users_info(self, user: str) -> AsyncSlackResponse:
        if self.compat:  # BOTHBOT_SLACK_COMPAT: a server that only takes POST is asked again
            return await compat.users_info(self.client, user)
        return await self.client.users_info(user=user)
