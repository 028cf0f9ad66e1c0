"""The commands Discord offers: the core's specs plus Discord's own (``replymode``).

``replymode`` is declared here, by the platform that has it (Slack has no reply mode); the client
hands it to the core's runner (``runtime.engine.commands.add``), which executes it from the spec.
The ``/bothbot`` subcommands (``commands.py``) and the option → command-line mapping
(``convert.py``) are both generated from :data:`COMMANDS`.
"""

from __future__ import annotations

from types import MappingProxyType

from bot.command_specs import Arg, CommandSpec, by_name, specs_for

REPLYMODE = CommandSpec(
    "replymode",
    "answer mentions in a new thread or as a reply",
    (Arg("mode", "thread: a new thread on the question; reply: a reply to it", choices=("thread", "reply"),
         required=True),),
    who="admin",
    platforms=("discord",),
    sets="reply_mode",
    confirm=MappingProxyType({
        "thread": "Mentions here are now answered in a thread.",
        "reply": "Mentions here are now answered as a reply.",
    }),
)

DISCORD_SPECS: tuple[CommandSpec, ...] = (REPLYMODE,)
"""Discord's own commands, added to the core's runner when a client is built."""

COMMANDS: tuple[CommandSpec, ...] = specs_for("discord", DISCORD_SPECS)
"""Every ``/bothbot`` subcommand, in help order."""

BY_NAME = by_name(COMMANDS)
