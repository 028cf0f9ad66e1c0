"""The Discord block of the settings, as read from the environment the docs describe."""

from __future__ import annotations

import pytest

from adapters.discord.settings import DiscordSettings
from adapters.discord.specs import DISCORD_SPECS
from bot.settings import ConfigError, load_settings


def test_discord_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_TOKEN", "tok")
    monkeypatch.setenv("DISCORD_API_URL", "http://127.0.0.1:9/api/v10")
    monkeypatch.setenv("DISCORD_GATEWAY_URL", "ws://127.0.0.1:9/gateway")
    monkeypatch.setenv("BOTHBOT_DISCORD_ADMIN_ROLES", "111, 222")
    monkeypatch.setenv("BOTHBOT_DISCORD_SHARD_COUNT", "4")
    monkeypatch.setenv("BOTHBOT_DISCORD_SHARD_IDS", "2,3")
    monkeypatch.setenv("BOTHBOT_DISCORD_MESSAGE_CONTENT", "true")

    settings = load_settings()
    s = settings.platform(DiscordSettings)

    assert s.discord_token is not None and s.discord_token.get_secret_value() == "tok"
    assert (s.discord_api_url, s.discord_gateway_url) == ("http://127.0.0.1:9/api/v10", "ws://127.0.0.1:9/gateway")
    assert s.discord_admin_roles == ("111", "222")
    assert (s.discord_shard_count, s.discord_shard_ids) == (4, (2, 3))
    assert s.discord_message_content is True
    assert "tok" in settings.secret_values()


def test_defaults() -> None:
    s = load_settings().platform(DiscordSettings)
    assert s.discord_api_url == "https://discord.com/api/v10"
    assert s.discord_gateway_url is None
    assert s.discord_admin_roles == ()
    assert s.discord_shard_ids is None
    assert s.discord_edit_interval_seconds == 1.0


def test_gateway_url_must_be_a_websocket_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DISCORD_GATEWAY_URL", "https://gateway.discord.gg")
    with pytest.raises(ConfigError, match="DISCORD_GATEWAY_URL"):
        load_settings().platform(DiscordSettings)


def test_the_platform_commands_write_channel_settings_the_platform_declares() -> None:
    """``/bothbot replymode`` (a spec) and ``reply_mode`` (a declared channel setting) agree."""
    for spec in DISCORD_SPECS:
        assert spec.sets is not None
        assert spec.args[0].choices == DiscordSettings.channel_options[spec.sets]
