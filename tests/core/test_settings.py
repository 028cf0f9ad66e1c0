"""The settings tree: TOML profiles, env names, clear errors, masked output."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from adapters.discord.settings import DiscordSettings
from adapters.slack.settings import SlackSettings
from bot.channels import ChannelConfig
from bot.cli import main
from bot.logs import configure_logging
from bot.model_client import ModelRouter
from bot.settings import ConfigError, load_settings
from bot.state import StateStore, connect_redis
from tests.conftest import TEST_REDIS_URL

TOML = """
default_profile = "base"
[profiles.base]
model = "gpt-4o-mini"
[profiles.tuned]
model = "ft:gpt-4o-mini-2024-07-18:acme:support:abc123"
temperature = 0.2
[profiles.local]
model = "llama3"
base_url = "http://127.0.0.1:11434/v1"
api_key_env = "LOCAL_KEY"
[channels."slack:T1:C9"]
profile = "tuned"
rag = false
"""


def test_toml_profiles_inherit_openai_endpoint_and_key(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated_env / "bothbot.toml").write_text(TOML)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env-0001")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("LOCAL_KEY", "local-secret-0002")
    settings = load_settings()
    assert settings.default_profile == "base"
    tuned = settings.profiles["tuned"]
    assert tuned.model == "ft:gpt-4o-mini-2024-07-18:acme:support:abc123"
    assert tuned.base_url == "http://127.0.0.1:9/v1"
    assert tuned.api_key is not None and tuned.api_key.get_secret_value() == "sk-from-env-0001"
    local = settings.profiles["local"]
    assert local.base_url == "http://127.0.0.1:11434/v1"
    assert local.api_key is not None and local.api_key.get_secret_value() == "local-secret-0002"
    assert settings.channels["slack:T1:C9"].profile == "tuned"


def test_config_file_from_env_and_env_beats_toml(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text("rate_limit_user = 3\n" + TOML)
    monkeypatch.setenv("BOTHBOT_CONFIG", str(path))
    monkeypatch.setenv("LOCAL_KEY", "x-key")
    monkeypatch.setenv("BOTHBOT_RATE_LIMIT_USER", "7")
    settings = load_settings()
    assert settings.config_file == str(path)
    assert settings.rate_limit_user == 7
    assert "tuned" in settings.profiles


@pytest.mark.parametrize(
    ("toml", "env", "expected"),
    [
        ('default_profile = "nope"\n[profiles.base]\nmodel = "m"\n', {}, "default_profile='nope' is not a profile"),
        ("[profiles.base\nmodel = 1", {}, "malformed TOML"),
        ("", {"REDIS_URL": "http://localhost:6379"}, "REDIS_URL='http://localhost:6379' is not a valid URL"),
        ("", {"OPENAI_BASE_URL": "localhost:8000"}, "OPENAI_BASE_URL='localhost:8000' is not a valid URL"),
        ('[profiles.a]\nmodel = "m"\napi_key_env = "MISSING_KEY"\n', {}, "MISSING_KEY, which is not set"),
        ('[profiles.a]\nmodel = "m"\nbogus = 1\n', {}, "profiles.a.bogus"),
    ],
)
def test_invalid_settings_name_the_setting(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, toml: str, env: dict[str, str], expected: str
) -> None:
    (isolated_env / "bothbot.toml").write_text(toml)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=r".*") as info:
        load_settings()
    assert expected in str(info.value)


def test_cli_reports_bad_config_and_exits_2(
    isolated_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated_env / "bothbot.toml").write_text('default_profile = "ghost"\n')
    assert main(["config"]) == 2
    err = capsys.readouterr().err
    assert "default_profile='ghost'" in err
    assert "Traceback" not in err


def test_config_output_masks_every_secret(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (isolated_env / "bothbot.toml").write_text(TOML)
    secrets = {
        "OPENAI_API_KEY": "sk-live-abcdef123456",
        "LOCAL_KEY": "local-key-987654",
        "SLACK_BOT_TOKEN": "xoxb-secret-token-1",
        "SLACK_APP_TOKEN": "xapp-secret-token-2",
        "SLACK_SIGNING_SECRET": "signing-secret-3",
        "DISCORD_TOKEN": "discord-secret-4",
        "QDRANT_API_KEY": "qdrant-secret-5",
        "BOTHBOT_RETRIEVAL__EMBEDDING_API_KEY": "embed-secret-6",
    }
    monkeypatch.setenv("REDIS_URL", "redis://:redis-pass-7@127.0.0.1:6379/0")
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert '"tuned"' in out
    assert "ft:gpt-4o-mini-2024-07-18:acme:support:abc123" in out
    for value in [*secrets.values(), "redis-pass-7"]:
        assert value not in out
    assert "redis://:**********@127.0.0.1:6379/0" in out
    shown = json.loads(out)  # the platforms' blocks are shown flat, as when the core declared them
    assert shown["slack_bot_token"] == shown["discord_token"] == "**********"
    assert (shown["slack_command"], shown["port"], shown["discord_api_url"]) == (
        "/bothbot", 3000, "https://discord.com/api/v10"
    )


def test_logs_never_carry_secrets() -> None:
    stream = io.StringIO()
    handler = configure_logging("INFO", ["sk-live-abcdef123456"], stream)
    try:
        log = logging.getLogger("bothbot.test")
        log.warning("calling with key %s", "sk-live-abcdef123456")
        try:
            raise RuntimeError("bad key sk-live-abcdef123456")
        except RuntimeError:
            log.exception("failed")
    finally:
        logging.getLogger().removeHandler(handler)
    text = stream.getvalue()
    assert "calling with key ***" in text
    assert "bad key ***" in text
    assert "sk-live-abcdef123456" not in text


def test_a_platform_block_reads_the_same_sources_in_the_same_order(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (isolated_env / "bothbot.toml").write_text('slack_command = "/fromtoml"\nport = 4000\nslack_admins = ["U1"]\n')
    monkeypatch.setenv("PORT", "5000")
    (isolated_env / ".env").write_text("SLACK_BOT_TOKEN=xoxb-from-dotenv\n")
    settings = load_settings(slack_admins="U7, U8")
    slack = settings.platform(SlackSettings)
    assert slack.slack_command == "/fromtoml"  # TOML
    assert slack.port == 5000  # environment beats TOML
    assert slack.slack_admins == ("U7", "U8")  # arguments beat everything
    assert slack.slack_bot_token is not None and slack.slack_bot_token.get_secret_value() == "xoxb-from-dotenv"
    assert settings.platform(SlackSettings) is slack  # validated once
    assert "xoxb-from-dotenv" in settings.secret_values()  # a validated block's secrets are redacted


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"BOTHBOT_SLACK_COMMAND": "askdocs"}, "slack_command='askdocs' must look like /bothbot"),
        ({"PORT": "70000"}, "port"),
        ({"DISCORD_GATEWAY_URL": "https://gateway.discord.gg"}, "DISCORD_GATEWAY_URL"),
        ({"BOTHBOT_DISCORD_THREAD_ARCHIVE_MINUTES": "5"}, "discord_thread_archive_minutes"),
    ],
)
def test_a_bad_platform_setting_stops_any_command_naming_it(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    env: dict[str, str], expected: str,
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["config"]) == 2  # validated by the composition root for every command, as before
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("channel", "expected"),
    [
        ('reply_mode = "sideways"', "channels.discord:G1:C1.reply_mode: 'sideways' is not one of thread, reply"),
        ('replymode = "reply"', "channels.discord:G1:C1.replymode: not a setting of discord channels"),
        ("reply_mode = 1", "a platform's channel setting is one word"),
        ('reply_mode = "reply"', "channels.slack:T1:C1.reply_mode: not a setting of slack channels"),
    ],
)
def test_channel_settings_a_platform_declares_are_checked(
    isolated_env: Path, capsys: pytest.CaptureFixture[str], channel: str, expected: str
) -> None:
    key = "slack:T1:C1" if "slack" in expected else "discord:G1:C1"
    (isolated_env / "bothbot.toml").write_text(f'[channels."{key}"]\n{channel}\n')
    assert main(["config"]) == 2
    assert expected in capsys.readouterr().err


async def test_a_platform_channel_setting_from_toml_under_an_admin_change(
    isolated_env: Path, redis_prefix: str, redis_cleanup: object
) -> None:
    (isolated_env / "bothbot.toml").write_text('[channels."discord:G1:C1"]\nreply_mode = "reply"\n')
    settings = load_settings(redis_url=TEST_REDIS_URL, redis_prefix=redis_prefix)
    assert settings.platform(DiscordSettings).channel_options["reply_mode"] == ("thread", "reply")
    settings.check_channel_options({"discord": DiscordSettings, "slack": SlackSettings})
    redis, in_process = connect_redis(settings.redis_url, "test")
    state = StateStore(redis, redis_prefix, in_process=in_process)
    try:
        config = ChannelConfig(settings, state, ModelRouter({}, timeout_seconds=1, max_retries=0))
        assert dict((await config.get("discord:G1:C1")).options) == {"reply_mode": "reply"}
        assert dict((await config.get("discord:G1:C2")).options) == {}
        await state.set_channel_value("discord:G1:C1", "reply_mode", "thread")
        await state.set_channel_value("discord:G1:C1", "rag", "off")  # a core field stays out of options
        assert dict((await config.get("discord:G1:C1")).options) == {"reply_mode": "thread"}
    finally:
        await state.aclose()


def test_platform_payload_loggers_stay_quiet_at_debug(
    isolated_env: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """At DEBUG the platforms' client libraries would log raw payloads; each platform names them."""
    monkeypatch.setenv("BOTHBOT_LOG_LEVEL", "DEBUG")
    assert main(["config"]) == 0
    capsys.readouterr()
    for name in ("slack_bolt", "slack_sdk", "discord.gateway", "discord.http", "discord.webhook"):
        assert logging.getLogger(name).level == logging.INFO
    assert logging.getLogger().level == logging.DEBUG
    logging.getLogger().setLevel(logging.WARNING)
