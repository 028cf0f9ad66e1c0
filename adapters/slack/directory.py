"""What the Slack adapter remembers in Redis: who is an admin, and which threads the bot is part of.

Both live in the shared Redis (never in process memory), so every replica agrees.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse

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
    ) -> None:
        self.client = client
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
        try:
            return await self.client.users_info(user=user)  # GET, as slack-sdk sends it
        except SlackApiError as exc:
            if exc.response.status_code not in (404, 405):
                raise
        # An API server (or proxy) that only takes POST: every Web API method accepts a form POST.
        return await self.client.api_call("users.info", http_verb="POST", data={"user": user})


class ThreadMemory:
    """Threads the bot has answered in, so follow-ups there need no new mention."""

    def __init__(self, redis: aioredis.Redis, key: KeyFn, ttl_seconds: int) -> None:
        self.redis = redis
        self.key = key
        self.ttl_seconds = ttl_seconds

    def _key(self, team: str, channel: str, thread_ts: str) -> str:
        return self.key("slack", "thread", team, channel, thread_ts)

    async def remember(self, team: str, channel: str, thread_ts: str) -> None:
        await self.redis.set(self._key(team, channel, thread_ts), "1", ex=self.ttl_seconds)

    async def knows(self, team: str, channel: str, thread_ts: str) -> bool:
        return bool(await self.redis.exists(self._key(team, channel, thread_ts)))
