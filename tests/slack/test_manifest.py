"""The app manifest asks Slack for exactly what the adapter handles."""

from __future__ import annotations

import re
from pathlib import Path

from adapters.slack.settings import SlackSettings
from bot.command_specs import specs_for, usage_hint

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = (ROOT / "slack-manifest.yaml").read_text(encoding="utf-8")


def _list_under(key: str) -> list[str]:
    """Items of the YAML block list under ``key:`` (comments stripped)."""
    match = re.search(rf"^(\s*){re.escape(key)}:\s*\n((?:\1\s+- .*\n)+)", MANIFEST, re.MULTILINE)
    assert match, f"{key} not found in slack-manifest.yaml"
    return [line.split("#")[0].strip()[2:].strip() for line in match.group(2).splitlines()]


def test_events_scopes_and_command() -> None:
    assert _list_under("bot_events") == [
        "app_mention",
        "message.channels",
        "message.groups",
        "message.im",
        "message.mpim",
    ]
    scopes = set(_list_under("bot"))
    assert {"app_mentions:read", "chat:write", "commands", "users:read", "im:history", "channels:history"} <= scopes
    default_command = SlackSettings.model_fields["slack_command"].default
    assert f"- command: {default_command}\n" in MANIFEST


def test_one_url_for_events_commands_and_interactivity() -> None:
    urls = re.findall(r"(?:url|request_url): (\S+)", MANIFEST)
    assert len(urls) == 3 and all(u.endswith("/slack/events") for u in urls)
    assert re.search(r"interactivity:\s*\n\s+is_enabled: true", MANIFEST)
    assert "socket_mode_enabled: false" in MANIFEST


def test_usage_hint_is_generated_from_the_command_specs() -> None:
    hint = re.search(r'usage_hint: "([^"]+)"', MANIFEST)
    assert hint, "no usage_hint for the slash command"
    expected = usage_hint(specs_for("slack"))
    assert hint.group(1) == expected, f'set usage_hint: "{expected}" in slack-manifest.yaml'
    assert "experiment [start ARMS|stop]" in hint.group(1)
    assert len(hint.group(1)) <= 1000
