"""Every platform's command surface agrees with the command specs (``bot/command_specs.py``).

The specs are the one declaration of the commands; Slack's usage hint, Discord's registered
``/bothbot`` subcommands and Discord's option → command-line mapping are generated from them.
These tests fail when a generated surface and the specs disagree — a command missing or extra,
an argument renamed, a choice or a required flag different, a line the core would read otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from discord import app_commands

from adapters.discord.commands import build_group
from adapters.discord.convert import GROUP_NAME, SlashCommand, slash_command
from adapters.discord.specs import COMMANDS as DISCORD_COMMANDS
from adapters.discord.specs import DISCORD_SPECS
from bot.command_specs import CORE_SPECS, Arg, CommandSpec, specs_for, usage_hint
from bot.commands import USAGE, split_command

ROOT = Path(__file__).resolve().parents[2]


def _sample(arg: Arg) -> str:
    if arg.choices:
        return arg.choices[-1]
    if arg.rest:
        return 'how do I "quote" a  thing?'
    if arg.many:
        return "alpha, beta"
    return "tuned"


def _expected_words(arg: Arg) -> list[str]:
    value = _sample(arg)
    return value.replace(",", " ").split() if arg.many else [value]


def _interaction(spec: CommandSpec, values: dict[str, str]) -> dict[str, Any]:
    options = [{"name": name, "type": 3, "value": value} for name, value in values.items()]
    return {"name": GROUP_NAME, "type": 1, "options": [{"name": spec.name, "type": 1, "options": options}]}


def test_specs_are_well_formed() -> None:
    names = [s.name for s in CORE_SPECS]
    assert len(names) == len(set(names))
    assert [s.name for s in CORE_SPECS if s.question] == ["ask"], "one command takes a question"
    for spec in (*CORE_SPECS, *DISCORD_SPECS):
        assert re.fullmatch(r"[a-z]{2,32}", spec.name)
        assert spec.help and spec.help == spec.help.strip() and not spec.help.endswith(".")
        assert ("(admin)" in spec.usage()) is (spec.who == "admin")
        assert spec.syntax().split()[0] == spec.name
        for arg in spec.args:
            assert re.fullmatch(r"[a-z]{1,32}", arg.name), "a Discord option name"
            assert arg.default is None or arg.default in arg.choices
    assert set(USAGE) == set(names), "the core's usage lines are the core's specs"


def test_platform_commands_are_declared_by_their_platform() -> None:
    assert "replymode" not in {s.name for s in specs_for("slack")}
    assert "replymode" not in {s.name for s in CORE_SPECS}
    assert "replymode" in {s.name for s in DISCORD_COMMANDS}
    assert all(s.platforms == ("discord",) and s.sets for s in DISCORD_SPECS)


def test_slack_usage_hint_in_the_manifest_is_generated_from_the_specs() -> None:
    manifest = (ROOT / "slack-manifest.yaml").read_text(encoding="utf-8")
    hint = re.search(r'usage_hint: "([^"]+)"', manifest)
    assert hint is not None
    assert hint.group(1) == usage_hint(specs_for("slack"))
    assert [part.split()[0] for part in hint.group(1).split(" | ")] == [
        s.name for s in sorted(specs_for("slack"), key=lambda s: (not s.question, s.name == "help"))
    ]


def test_discord_registration_matches_the_specs() -> None:
    async def handler(*_: object) -> None:
        return None

    group = build_group(handler, lambda: ["base", "tuned"])
    assert group.name == GROUP_NAME
    registered = {c.name: c for c in group.commands}
    assert list(registered) == [s.name for s in DISCORD_COMMANDS]
    for spec in DISCORD_COMMANDS:
        command = registered[spec.name]
        assert isinstance(command, app_commands.Command)
        params = command.parameters
        assert [p.name for p in params] == [a.name for a in spec.args], spec.name
        for param, arg in zip(params, spec.args, strict=True):
            assert param.required is arg.required, f"{spec.name} {arg.name}"
            assert [c.value for c in param.choices] == list(arg.choices), f"{spec.name} {arg.name}"
            assert param.max_value == arg.max_length, f"{spec.name} {arg.name}"  # a string range's length
            assert param.autocomplete is (arg.complete is not None), f"{spec.name} {arg.name}"
            assert param.description == arg.help[:100]
        assert len(command.description) <= 100
        assert ("(admins)" in command.description) is (spec.who == "admin")


@pytest.mark.parametrize("spec", DISCORD_COMMANDS, ids=lambda s: s.name)
async def test_each_discord_subcommand_becomes_the_line_the_core_reads(spec: CommandSpec) -> None:
    values = {arg.name: _sample(arg) for arg in spec.args}
    read = slash_command(_interaction(spec, values))
    assert read is not None and read.public is spec.public
    name, args = split_command(read.line)
    assert name == spec.name
    if spec.question:
        assert read.line == f"{spec.name} {_sample(spec.args[0])}", "a question reaches the core verbatim"
    else:
        assert args == [w for arg in spec.args for w in _expected_words(arg)]

    # the registered callback builds the same line from the same options
    seen: list[tuple[str, bool]] = []

    async def handler(_: object, line: str, public: bool) -> None:
        seen.append((line, public))

    command = build_group(handler, lambda: []).get_command(spec.name)
    assert isinstance(command, app_commands.Command)
    await command.callback(None, **values)  # type: ignore[arg-type]
    assert [SlashCommand(*s) for s in seen] == [read]


@pytest.mark.parametrize("spec", [s for s in DISCORD_COMMANDS if s.args], ids=lambda s: s.name)
async def test_left_out_options_read_as_the_specs_say(spec: CommandSpec) -> None:
    read = slash_command(_interaction(spec, {}))
    assert read is not None
    defaults = [a.default for a in spec.args if a.default]
    assert read.line == " ".join([spec.name, *defaults])
