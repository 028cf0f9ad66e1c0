"""``BOTHBOT_SLACK_COMPAT`` is opt-in, and a failed capability is retried after a while, never disabled for good."""

from __future__ import annotations

import aiohttp
import redis.asyncio as aioredis
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import make_web_client
from adapters.slack.compat import LenientWebClient
from adapters.slack.directory import AdminDirectory
from adapters.slack.render import CAPABILITY_RETRY_SECONDS, StreamSupport
from tests.fakes.slack_minimal import MinimalSlack

BOT_TOKEN = "xoxb-compat-test"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_failed_stream_or_edit_is_tried_again_after_the_retry_time() -> None:
    clock = Clock()
    streams = StreamSupport(True, clock=clock)
    streams.failed("T1", "http_404")  # one proxy error page
    streams.edits_failed("T1", "http_404")
    assert not streams.usable("T1") and not streams.edits_usable("T1")
    assert streams.usable("T2") and streams.edits_usable("T2"), "other workspaces are unaffected"
    clock.now += CAPABILITY_RETRY_SECONDS - 1
    assert not streams.usable("T1") and not streams.edits_usable("T1")
    clock.now += 1
    assert streams.usable("T1") and streams.edits_usable("T1"), "tried again, not off until restart"
    streams.failed("T1", "ratelimited")  # not a sign the method is missing
    assert streams.usable("T1")


def test_disabled_streaming_stays_disabled() -> None:
    assert not StreamSupport(False).usable("T1")


async def test_the_default_client_is_slack_sdks_own() -> None:
    async with aiohttp.ClientSession() as session:
        assert type(make_web_client(BOT_TOKEN, "http://127.0.0.1:9/api/", session=session)) is AsyncWebClient
        lenient = make_web_client(BOT_TOKEN, "http://127.0.0.1:9/api/", session=session, compat=True)
        assert isinstance(lenient, LenientWebClient)


async def test_users_info_is_retried_as_a_post_only_with_compat(
    redis_cleanup: aioredis.Redis, redis_prefix: str
) -> None:
    def key(*parts: str) -> str:
        return ":".join((redis_prefix, *parts))

    async with MinimalSlack(unknown="404") as slack, aiohttp.ClientSession() as session:
        for compat, expected in ((False, 1), (True, 2)):
            before = len(slack.called("users.info"))
            client = make_web_client(BOT_TOKEN, slack.api_url, session=session, compat=compat)
            directory = AdminDirectory(client, redis_cleanup, key, (), 0, compat=compat)
            assert await directory.is_admin("T1", "U1") is False  # unknown: not an admin
            assert len(slack.called("users.info")) - before == expected
