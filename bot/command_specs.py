"""Every command, declared once: name, arguments (with their choices), who may use it, help text.

The core's :class:`~bot.commands.CommandRunner` dispatches from these specs, and each platform's
command surface is generated from them: Slack's usage text and manifest ``usage_hint``
(:func:`usage_hint`), Discord's ``/bothbot`` subcommands and its option → command-line mapping
(``adapters/discord/commands.py``, ``adapters/discord/convert.py``). ``tests/contract/
test_command_surface.py`` fails when a platform's surface and these specs disagree.

A platform contributes commands of its own the same way (Discord's ``replymode``): a spec with
``platforms=("discord",)``, handed to :meth:`CommandRunner.add` by the adapter. Such a spec is
declarative — ``sets`` names the channel setting its one choice argument writes — so no adapter
code runs inside the core.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from bot.experiments import ARM_SYNTAX

Who = Literal["anyone", "admin"]
"""``admin``: the command changes a setting and only an admin may make the change (its read-only
forms — no arguments, ``show`` — stay open to anyone)."""


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument of a command, in the order the command line takes them."""

    name: str
    help: str
    choices: tuple[str, ...] = ()
    required: bool = False
    rest: bool = False  # free text: the rest of the line, verbatim (a question)
    many: bool = False  # several words; spaces or commas separate them
    default: str | None = None  # what a platform form sends when the argument is left out
    max_length: int | None = None
    metavar: str | None = None  # how usage text names it (default: its name)
    complete: Literal["profiles"] | None = None  # a platform may offer these values as completions

    def syntax(self) -> str:
        shown = "|".join(self.choices) if self.choices else (self.metavar or self.name)
        if not self.choices and self.rest:
            shown = f"<{shown}>"
        return shown if self.required else f"[{shown}]"


@dataclass(frozen=True, slots=True)
class CommandSpec:
    name: str
    help: str  # one line, lower case, no final full stop: "show this channel's model, or switch it"
    args: tuple[Arg, ...] = ()
    who: Who = "anyone"
    public: bool = False  # the answer is shown to the channel, not only to the caller
    question: bool = False  # the free-text argument is a question the engine answers
    platforms: tuple[str, ...] | None = None  # None: every platform
    sets: str | None = None  # a channel setting the one choice argument writes (platform specs)
    confirm: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # choice → reply
    syntax_text: str | None = None  # usage syntax when it reads better than the generated one
    hint_text: str | None = None  # a shorter syntax for Slack's one-line usage hint
    detail: str = ""  # appended to the usage line
    title: str | None = None  # a platform menu's description, when ``help`` reads oddly there

    def __post_init__(self) -> None:
        if self.sets is not None and (len(self.args) != 1 or not self.args[0].choices):
            raise ValueError(f"command {self.name!r}: `sets` needs exactly one argument with choices")
        if sum(a.rest for a in self.args) > 1 or any(a.rest for a in self.args[:-1]):
            raise ValueError(f"command {self.name!r}: only the last argument may take the rest of the line")

    def syntax(self) -> str:
        if self.syntax_text is not None:
            return self.syntax_text
        return " ".join([self.name, *(a.syntax() for a in self.args)])

    def hint(self) -> str:
        return self.hint_text or self.syntax()

    def usage(self) -> str:
        admin = " (admin)" if self.who == "admin" else ""
        return f"{self.syntax()} — {self.help}{admin}{self.detail}"

    def on(self, platform: str) -> bool:
        return self.platforms is None or platform in self.platforms


ON_OFF = ("on", "off")

CORE_SPECS: tuple[CommandSpec, ...] = (
    CommandSpec("help", "this list", title="what bothbot can do"),
    CommandSpec(
        "ask",
        "ask a question",
        (Arg("question", "Your question", required=True, rest=True, max_length=4000),),
        public=True,
        question=True,
    ),
    CommandSpec(
        "model",
        "show this channel's model, or switch it",
        (Arg("profile", "Model profile to use in this channel", complete="profiles"),),
        who="admin",
    ),
    CommandSpec("models", "list the model profiles"),
    CommandSpec(
        "rag",
        "answer from the knowledge base or from the model alone",
        (Arg("state", "on: answer from the knowledge base; off: from the model alone", choices=ON_OFF),),
        who="admin",
        syntax_text="rag on|off",
    ),
    CommandSpec(
        "kb",
        "show this channel's knowledge bases, or set them",
        (Arg("names", "Knowledge base names, separated by spaces or commas", many=True, metavar="name ..."),),
        who="admin",
        hint_text="kb [names]",
    ),
    CommandSpec(
        "followups",
        "answer thread follow-ups without a new mention",
        (Arg("state", "on: answer follow-ups in the bot's threads without a mention", choices=ON_OFF,
             required=True),),
        who="admin",
    ),
    CommandSpec("reset", "forget this conversation"),
    CommandSpec("status", "this channel's settings and knowledge base size"),
    CommandSpec("audit", "recent setting changes in this channel"),
    CommandSpec(
        "experiment",
        "show this channel's experiment with 👍 rates per arm, or start/stop one",
        (
            Arg("action", "show (default), start or stop", choices=("show", "start", "stop"), default="show"),
            Arg(
                "arms",
                "For start: two or more arms, PROFILE, PROFILE:rag or PROFILE:norag, e.g. `tuned base:norag`",
                many=True,
                max_length=400,
                metavar="ARM ...",
            ),
        ),
        who="admin",
        syntax_text="experiment [start ARM ARM … | stop]",
        hint_text="experiment [start ARMS|stop]",
        detail=f"; an arm is {ARM_SYNTAX}, e.g. `experiment start tuned base:norag`",
    ),
)


def specs_for(platform: str, extra: Iterable[CommandSpec] = ()) -> tuple[CommandSpec, ...]:
    """The commands a platform offers, in help order: the core's, then its own."""
    specs = [s for s in (*CORE_SPECS, *extra) if s.on(platform)]
    names = [s.name for s in specs]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"commands declared twice: {', '.join(duplicated)}")
    return tuple(specs)


def by_name(specs: Iterable[CommandSpec]) -> dict[str, CommandSpec]:
    return {s.name: s for s in specs}


def usage_hint(specs: Iterable[CommandSpec]) -> str:
    """Slack's one-line ``usage_hint``, question first and ``help`` last, as the manifest shows it."""
    ordered = sorted(specs, key=lambda s: (not s.question, s.name == "help"))
    return " | ".join(s.hint() for s in ordered)
