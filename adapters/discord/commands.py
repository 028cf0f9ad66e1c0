"""``/bothbot <subcommand>``: the command as it is registered with Discord, generated from the specs.

Each :class:`~bot.command_specs.CommandSpec` in :data:`~adapters.discord.specs.COMMANDS` becomes one
subcommand: its arguments become options (choices as a fixed list, ``max_length`` as a length
range, a ``profiles`` completion as autocomplete), in the spec's order. This group is what
``tree.sync()`` registers. Running a command does not go through these callbacks: the client's
tree only answers autocomplete, and ``DiscordAdapter.on_interaction`` reads every command with
``convert.slash_command``, which also understands shapes that differ from this registration. The
callbacks build the same lines (``convert.spec_line``), so the group stays usable with a plain
``CommandTree``.

No ``default_permissions`` gate: everyone may use the read-only subcommands and ``ask``; the
core refuses changes from non-admins, and that check is in the bot, where it can be tested, not
only in Discord's client.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, Literal

import discord
from discord import app_commands

from adapters.discord.convert import GROUP_NAME, option_text, spec_line
from adapters.discord.specs import COMMANDS
from bot.command_specs import Arg, CommandSpec

CommandHandler = Callable[[discord.Interaction, str, bool], Awaitable[None]]
"""``(interaction, command line, public)``: ``public`` answers are visible to the channel (``ask``)."""

DESCRIPTION_LIMIT = 100
"""Discord's limit on a command's or an option's description."""


def description(spec: CommandSpec) -> str:
    """A subcommand's description: the spec's help, capitalised, admin-only changes marked."""
    text = spec.title or spec.help
    text = text[:1].upper() + text[1:] + (" (admins)" if spec.who == "admin" else "")
    if spec.public:
        text += " (the answer is visible to the channel)"
    return text[:DESCRIPTION_LIMIT]


def _annotation(arg: Arg) -> Any:
    if arg.choices:
        kind: Any = Literal[arg.choices]  # a fixed list of choices in Discord's client
    elif arg.max_length is not None:
        kind = app_commands.Range[str, 1, arg.max_length]
    else:
        kind = str
    return kind if arg.required or arg.default is not None else kind | None


def _parameter(arg: Arg) -> inspect.Parameter:
    default = inspect.Parameter.empty if arg.required else arg.default
    return inspect.Parameter(arg.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=_annotation(arg))


def _subcommand(spec: CommandSpec, handler: CommandHandler, profiles: Callable[[], Iterable[str]]) -> Any:
    async def callback(interaction: discord.Interaction, **options: Any) -> None:
        values = {name: option_text(value) for name, value in options.items() if value is not None}
        await handler(interaction, spec_line(spec, values), spec.public)

    interaction = inspect.Parameter("interaction", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                    annotation=discord.Interaction)
    callback.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [interaction, *(_parameter(a) for a in spec.args)]
    )
    callback.__qualname__ = callback.__name__ = f"bothbot_{spec.name}"
    described = app_commands.describe(**{a.name: a.help[:DESCRIPTION_LIMIT] for a in spec.args})(callback)
    command: app_commands.Command[Any, ..., None] = app_commands.Command(
        name=spec.name, description=description(spec), callback=described
    )
    for arg in spec.args:
        if arg.complete == "profiles":
            command.autocomplete(arg.name)(_completer(profiles))
    return command


def _completer(profiles: Callable[[], Iterable[str]]) -> Any:
    async def complete(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = sorted(p for p in profiles() if current.lower() in p.lower())
        return [app_commands.Choice(name=n, value=n) for n in names[:25]]

    return complete


def build_group(
    handler: CommandHandler,
    profiles: Callable[[], Iterable[str]],
    specs: Sequence[CommandSpec] = COMMANDS,
) -> app_commands.Group:
    group = app_commands.Group(
        name=GROUP_NAME,
        description="Ask bothbot, or change how it answers in this channel",
        allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=False),
        allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
    )
    for spec in specs:
        group.add_command(_subcommand(spec, handler, profiles))
    return group
