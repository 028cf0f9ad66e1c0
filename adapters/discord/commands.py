"""``/bothbot <subcommand>``: the command as it is registered with Discord.

This group is what ``tree.sync()`` registers (typed options, choices, autocomplete of profiles).
Running a command does not go through these callbacks: the client's tree only answers
autocomplete, and ``DiscordAdapter.on_interaction`` reads every command with
``convert.slash_command``, which also understands shapes that differ from this registration.
The callbacks build the same lines, so the group stays usable with a plain ``CommandTree``.

No ``default_permissions`` gate: everyone may use the read-only subcommands and ``ask``; the
core refuses changes from non-admins, and that check is in the bot, where it can be tested, not
only in Discord's client.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Literal

import discord
from discord import app_commands

from adapters.discord.convert import GROUP_NAME, command_line, experiment_line

CommandHandler = Callable[[discord.Interaction, str, bool], Awaitable[None]]
"""``(interaction, command line, public)``: ``public`` answers are visible to the channel (``ask``)."""


def build_group(handler: CommandHandler, profiles: Callable[[], Iterable[str]]) -> app_commands.Group:
    group = app_commands.Group(
        name=GROUP_NAME,
        description="Ask bothbot, or change how it answers in this channel",
        allowed_contexts=app_commands.AppCommandContext(guild=True, dm_channel=True, private_channel=False),
        allowed_installs=app_commands.AppInstallationType(guild=True, user=False),
    )

    @group.command(name="ask", description="Ask a question (the answer is visible to the channel)")
    @app_commands.describe(question="Your question")
    async def ask(interaction: discord.Interaction, question: app_commands.Range[str, 1, 4000]) -> None:
        await handler(interaction, command_line("ask", question), True)

    @group.command(name="model", description="Show this channel's model, or switch it (admins)")
    @app_commands.describe(profile="Model profile to use in this channel")
    async def model(interaction: discord.Interaction, profile: str | None = None) -> None:
        await handler(interaction, command_line("model", profile), False)

    @model.autocomplete("profile")
    async def _profiles(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        names = sorted(p for p in profiles() if current.lower() in p.lower())
        return [app_commands.Choice(name=n, value=n) for n in names[:25]]

    @group.command(name="models", description="List the model profiles")
    async def models(interaction: discord.Interaction) -> None:
        await handler(interaction, "models", False)

    @group.command(name="rag", description="Answer from the knowledge base (on) or the model alone (off)")
    async def rag(interaction: discord.Interaction, state: Literal["on", "off"] | None = None) -> None:
        await handler(interaction, command_line("rag", state), False)

    @group.command(name="kb", description="Show this channel's knowledge bases, or set them (admins)")
    @app_commands.describe(names="Knowledge base names, separated by spaces or commas")
    async def kb(interaction: discord.Interaction, names: str | None = None) -> None:
        line = "kb" if not names else "kb " + " ".join(n for n in names.replace(",", " ").split() if n)
        await handler(interaction, line, False)

    @group.command(name="followups", description="Answer thread follow-ups without a new mention (admins)")
    async def followups(interaction: discord.Interaction, state: Literal["on", "off"]) -> None:
        await handler(interaction, command_line("followups", state), False)

    @group.command(name="replymode", description="Answer mentions in a new thread or as a reply (admins)")
    async def replymode(interaction: discord.Interaction, mode: Literal["thread", "reply"]) -> None:
        await handler(interaction, command_line("replymode", mode), False)

    @group.command(name="reset", description="Forget this conversation")
    async def reset(interaction: discord.Interaction) -> None:
        await handler(interaction, "reset", False)

    @group.command(name="status", description="This channel's settings and knowledge base size")
    async def status(interaction: discord.Interaction) -> None:
        await handler(interaction, "status", False)

    @group.command(name="audit", description="Recent setting changes in this channel")
    async def audit(interaction: discord.Interaction) -> None:
        await handler(interaction, "audit", False)

    @group.command(name="experiment", description="Show this channel's experiment, or start/stop one (admins)")
    @app_commands.describe(
        action="show (default), start or stop",
        arms="For start: two or more arms, PROFILE, PROFILE:rag or PROFILE:norag, e.g. `tuned base:norag`",
    )
    async def experiment(
        interaction: discord.Interaction,
        action: Literal["show", "start", "stop"] = "show",
        arms: app_commands.Range[str, 1, 400] | None = None,
    ) -> None:
        await handler(interaction, experiment_line(action, arms), False)

    @group.command(name="help", description="What bothbot can do")
    async def help_(interaction: discord.Interaction) -> None:
        await handler(interaction, "help", False)

    return group
