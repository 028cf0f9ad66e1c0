"""Every setting is documented: a description in the tree and its name in the README or docs/."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

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


def test_every_setting_has_a_description_and_is_documented() -> None:
    docs = _documentation()
    missing = []
    for name, field in Settings.model_fields.items():
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
