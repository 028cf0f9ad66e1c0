"""Starting the adapter as an operator does: ``run_slack(settings)`` and the ``bothbot slack`` command."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest

from adapters.slack.client import SlackCredentials
from adapters.slack.server import run_slack
from bot.settings import ConfigError, Settings
from tests.conftest import TUNED_MODEL
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import SIGNING_SECRET, app_mention, event_callback, message_event, sign, slash_command
from tests.fakes.slack_server import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.processes import bothbot_command, free_port, slack_http_env, wait_healthy


def test_missing_bot_token_names_the_setting(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="SLACK_BOT_TOKEN"):
        SlackCredentials.from_settings(make_settings(slack_signing_secret="s"))


def test_http_mode_needs_the_signing_secret(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="SLACK_SIGNING_SECRET") as caught:
        SlackCredentials.from_settings(make_settings(slack_bot_token="xoxb-1"))
    assert "SLACK_APP_TOKEN" in str(caught.value)


def test_app_token_must_be_an_app_level_token(make_settings: Callable[..., Settings]) -> None:
    with pytest.raises(ConfigError, match="SLACK_APP_TOKEN"):
        SlackCredentials.from_settings(make_settings(slack_bot_token="xoxb-1", slack_app_token="xoxb-2"))


def test_mode_follows_the_tokens(make_settings: Callable[..., Settings]) -> None:
    socket_mode = SlackCredentials.from_settings(make_settings(slack_bot_token="xoxb-1", slack_app_token="xapp-1"))
    http = SlackCredentials.from_settings(make_settings(slack_bot_token="xoxb-1", slack_signing_secret="s"))
    assert socket_mode.socket_mode and not http.socket_mode


async def test_rejected_bot_token_is_a_clear_error(
    make_settings: Callable[..., Settings], slack: FakeSlack
) -> None:
    slack.fail_next("auth.test", "invalid_auth")
    settings = make_settings(
        slack_bot_token=BOT_TOKEN, slack_signing_secret="s", slack_api_url=slack.api_url, port=0
    )
    with pytest.raises(ConfigError, match=r"SLACK_BOT_TOKEN \(invalid_auth\)"):
        await run_slack(settings)


async def test_unreachable_api_url_is_a_clear_error(make_settings: Callable[..., Settings]) -> None:
    port = free_port()  # nothing listens there
    settings = make_settings(
        slack_bot_token=BOT_TOKEN, slack_signing_secret="s", slack_api_url=f"http://127.0.0.1:{port}/api/", port=0
    )
    with pytest.raises(ConfigError, match="SLACK_API_URL") as caught:
        await run_slack(settings)
    assert BOT_TOKEN not in str(caught.value)


async def test_run_slack_in_socket_mode_until_stopped(
    slack_settings: Callable[..., Settings], slack: FakeSlack, openai_server: FakeOpenAI
) -> None:
    settings = slack_settings(slack_app_token=APP_TOKEN, slack_signing_secret=None)
    stop = asyncio.Event()
    task = asyncio.create_task(run_slack(settings, stop=stop))
    try:
        await slack.wait_for(lambda: slack.connections == 1 or task.done())
        mention = app_mention("hello over the socket")
        await slack.send_envelope("events_api", event_callback(mention))
        await slack.wait_for(lambda: any(m.buttons() for m in slack.bot_messages("C1", thread_ts=mention["ts"])))
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)
    await slack.wait_for(lambda: slack.connections == 0)


async def test_bothbot_slack_command_in_http_mode(
    slack: FakeSlack, openai_server: FakeOpenAI, redis_prefix: str, tmp_path: Path, redis_cleanup: object
) -> None:
    """The command the docs give, configured by environment only, answering signed requests."""
    port = free_port()
    (tmp_path / "bothbot.toml").write_text(
        'default_profile = "base"\n\n[profiles.base]\nmodel = "base-model"\n\n'
        f'[profiles.tuned]\nmodel = "{TUNED_MODEL}"\n',
        encoding="utf-8",
    )
    env = slack_http_env(
        slack_api_url=slack.api_url, openai_base_url=openai_server.base_url, redis_prefix=redis_prefix,
        home=tmp_path, port=port, BOTHBOT_SLACK_ADMINS="UADMIN,UOTHER",
    )  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *bothbot_command("slack"),
        env=env,
        cwd=str(tmp_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        await wait_healthy(f"{base}/healthz", process)
        async with aiohttp.ClientSession() as session:

            async def post(body: str, content_type: str, **headers: str) -> int:
                all_headers = {"Content-Type": content_type, **sign(body), **headers}
                async with session.post(f"{base}/slack/events", data=body, headers=all_headers) as response:
                    return response.status

            mention = app_mention("first over http")
            body = json.dumps(event_callback(mention))
            assert await post(body, "application/json") == 200
            assert await post(body, "application/json", **{"X-Slack-Retry-Num": "1"}) == 200
            await slack.wait_for(lambda: any(m.buttons() for m in slack.bot_messages("C1", mention["ts"])), 20)

            from urllib.parse import urlencode

            command = slash_command("model tuned", user="UADMIN", response_url=slack.response_url("cli"))
            assert await post(urlencode(command), "application/x-www-form-urlencoded") == 200
            await slack.wait_for(lambda: slack.responses, 20)
            dm = message_event("tuned now?", channel="D5", channel_type="im")
            assert await post(json.dumps(event_callback(dm)), "application/json") == 200
            await slack.wait_for(lambda: any(m.buttons() for m in slack.bot_messages("D5")), 20)
            tuned = event_callback(app_mention("and in the channel?"))
            assert await post(json.dumps(tuned), "application/json") == 200
            await slack.wait_for(lambda: len([m for m in slack.bot_messages("C1") if m.buttons()]) == 2, 20)
            assert await post(body, "application/json", **{"X-Slack-Retry-Num": "2"}) == 200
            forged = {"Content-Type": "application/json", **sign(body, secret="wrong")}
            async with session.post(f"{base}/slack/events", data=body, headers=forged) as response:
                assert response.status == 401

        assert len(slack.bot_messages("C1", mention["ts"])) == 1
        models = [r.body["model"] for r in openai_server.chat_requests]
        assert models == ["base-model", "base-model", TUNED_MODEL]  # the DM kept the default
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
        output = await asyncio.wait_for(process.communicate(), 20)
    log = output[0].decode(errors="replace")
    assert process.returncode == 0, log
    assert BOT_TOKEN not in log and SIGNING_SECRET not in log
