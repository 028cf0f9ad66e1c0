"""Every setting is documented: a description in the tree and its name in the README or docs/."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices, BaseModel

import adapters
from bot.settings import Settings
from retrieval.config import RetrievalConfig

TOML_ONLY = ("profiles", "channels")
ROOT = Path(__file__).resolve().parents[2]


def _documentation() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def _env_name(name: str, alias: object) -> str:
    if isinstance(alias, AliasChoices):
        return str(alias.choices[-1])
    return f"BOTHBOT_{name.upper()}"


def _models() -> list[type[BaseModel]]:
    """The core tree and every registered platform's block."""
    return [Settings, *(adapters.settings_model(name) for name in adapters.names())]


def test_every_setting_has_a_description_and_is_documented() -> None:
    docs = _documentation()
    missing = []
    for name, field in [(n, f) for model in _models() for n, f in model.model_fields.items()]:
        assert field.description, f"{name} has no description"
        if name in TOML_ONLY:
            assert f"[{name}" in docs, f"[{name}] is not shown in the docs"
            continue
        env = _env_name(name, field.validation_alias)
        if env not in docs:
            missing.append(env)
    for name, field in RetrievalConfig.model_fields.items():
        assert field.description, f"retrieval.{name} has no description"
        if f"BOTHBOT_RETRIEVAL__{name.upper()}" not in docs:
            missing.append(f"BOTHBOT_RETRIEVAL__{name.upper()}")
    assert missing == []


def test_every_channel_setting_a_platform_declares_is_documented() -> None:
    docs = _documentation()
    for name in adapters.names():
        for option, values in adapters.settings_model(name).channel_options.items():
            assert f"{option} = " in docs, f"{name}'s channel setting {option} is not shown in a [channels] example"
            assert all(value in docs for value in values)


def test_docs_slack_lists_every_command_of_the_manifest_usage_hint() -> None:
    manifest = (ROOT / "slack-manifest.yaml").read_text(encoding="utf-8")
    [hint] = [line.split(":", 1)[1].strip().strip('"') for line in manifest.splitlines() if "usage_hint:" in line]
    commands = [part.split()[0] for part in hint.split(" | ")]
    slack_doc = (ROOT / "docs" / "slack.md").read_text(encoding="utf-8")
    assert [c for c in commands if f"| `{c}" not in slack_doc] == []
    assert len(commands) >= 10
