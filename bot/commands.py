"""Admin and user commands, parsed and executed once for every platform.

Adapters map their native slash command onto a command line (``"model tuned"``) and say whether
the caller is an admin. Changes need an admin and write an audit entry (who, when, channel,
before → after) to a Redis stream.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.channels import ChannelConfig, ChannelSettings
from bot.command_specs import CORE_SPECS, CommandSpec, specs_for
from bot.evaluation.feedback import tally_feedback
from bot.experiments import Experiment, ExperimentError, Experiments, parse_arms
from bot.messages import IncomingMessage
from bot.model_client import ModelRouter
from bot.profiles import TOML_ORIGIN, retirement_warning
from bot.settings import Settings
from bot.state import StateStore
from retrieval.api import KnowledgeBase, kb_name_problem

USAGE = {spec.name: spec.usage() for spec in CORE_SPECS}
"""The core's commands' usage lines (a platform's own commands add theirs to its ``help``)."""


@dataclass(frozen=True, slots=True)
class CommandResult:
    text: str
    refused: bool = False


def command_rest(line: str) -> str:
    """The line after its first word, as typed: ``"ask  How do I…?"`` → ``"How do I…?"``."""
    parts = line.strip().split(None, 1)
    return parts[1].strip() if len(parts) > 1 else ""


def split_command(line: str) -> tuple[str, list[str]]:
    """``"model  tuned"`` → ``("model", ["tuned"])``; quotes group words; empty → ``("help", [])``."""
    try:
        parts = shlex.split(line)
    except ValueError:
        parts = line.split()
    if not parts:
        return "help", []
    return parts[0].lower().lstrip("/"), parts[1:]


def usage_line(name: str, spec: CommandSpec | None = None) -> str:
    return f"Usage: {spec.usage() if spec is not None else USAGE[name]}"


class CommandRunner:
    def __init__(
        self,
        settings: Settings,
        state: StateStore,
        channels: ChannelConfig,
        router: ModelRouter,
        knowledge: KnowledgeBase,
    ) -> None:
        self._settings = settings
        self._state = state
        self._channels = channels
        self._router = router
        self._knowledge = knowledge
        self._experiments = Experiments(settings, state)
        self._platform_specs: list[CommandSpec] = []
        self._handlers: dict[str, Callable[[IncomingMessage, list[str]], Awaitable[CommandResult]]] = {
            "help": self._help,
            "model": self._model,
            "models": self._models,
            "rag": self._rag,
            "kb": self._kb,
            "followups": self._followups,
            "reset": self._reset,
            "status": self._status,
            "audit": self._audit,
            "experiment": self._experiment,
        }
        questions = {s.name for s in CORE_SPECS if s.question}
        missing = {s.name for s in CORE_SPECS} - questions - set(self._handlers)
        undeclared = set(self._handlers) - {s.name for s in CORE_SPECS}
        if missing or undeclared:  # pragma: no cover - a programming error, caught by every test
            raise RuntimeError(f"command specs and handlers disagree: {sorted(missing | undeclared)}")

    def add(self, spec: CommandSpec) -> None:
        """A platform's own command (declarative: it ``sets`` one channel setting); adding it again is a no-op."""
        if spec.sets is None:
            raise ValueError(f"platform command {spec.name!r} must declare the channel setting it sets")
        if spec in self._platform_specs:
            return
        specs_for(spec.platforms[0] if spec.platforms else "", [*self._platform_specs, spec])  # no clash
        self._platform_specs.append(spec)

    def specs(self, platform: str) -> tuple[CommandSpec, ...]:
        """The commands offered on ``platform``, in help order."""
        return specs_for(platform, self._platform_specs)

    def spec(self, platform: str, name: str) -> CommandSpec | None:
        return next((s for s in self.specs(platform) if s.name == name), None)

    async def run(self, msg: IncomingMessage, name: str, args: list[str]) -> CommandResult:
        spec = self.spec(msg.platform, name)
        if spec is None or spec.question:
            names = ", ".join(sorted(s.name for s in self.specs(msg.platform)))
            return CommandResult(f"Unknown command `{name[:40]}`. Commands: {names}. Try `help`.", refused=True)
        if spec.sets is not None:
            return await self._set_choice(msg, spec, args)
        return await self._handlers[name](msg, args)

    # --- read-only -----------------------------------------------------------------------

    async def _help(self, msg: IncomingMessage, args: list[str]) -> CommandResult:
        return CommandResult("Commands:\n" + "\n".join(f"• {s.usage()}" for s in self.specs(msg.platform)))

    async def _models(self, msg: IncomingMessage, args: list[str]) -> CommandResult:
        if args:
            return CommandResult(usage_line("models"), refused=True)
        current = (await self._channels.get(msg.channel_key)).profile
        if not self._router.profiles:
            return CommandResult(
                "No model profiles are configured: answers are retrieval-only. "
                "Set OPENAI_API_KEY / OPENAI_BASE_URL or add [profiles.NAME] to bothbot.toml."
            )
        lines = []
        warnings = []
        for name, profile in sorted(self._router.profiles.items()):
            marks = [m for m, on in (("this channel", name == current),
                                     ("default", name == self._settings.default_profile)) if on]
            suffix = f" ({', '.join(marks)})" if marks else ""
            ready = "" if self._router.usable(name) else " — no endpoint or key"
            origin = self._router.registered.get(name, TOML_ORIGIN).describe()
            lines.append(f"• {name}: {profile.model}{suffix}{ready} — {origin}")
            warning = retirement_warning(name, profile)
            if warning and msg.is_admin:
                warnings.append(warning)
        return CommandResult("Model profiles:\n" + "\n".join(lines + warnings))

    async def _model(self, msg: IncomingMessage, args: list[str]) -> CommandResult:
        if len(args) > 1:
            return CommandResult(usage_line("model"), refused=True)
        channel = await self._channels.get(msg.channel_key)
        if not args:
            if channel.profile is None:
                return CommandResult("This channel has no model: answers are retrieval-only.")
            model = self._router.profiles[channel.profile].model
            running = f" An experiment is running here: {channel.experiment.label}." if channel.experiment else ""
            return CommandResult(f"This channel uses profile `{channel.profile}` (model `{model}`).{running}")
        target = args[0]
        if target not in self._router.profiles:
            known = ", ".join(f"`{p}`" for p in sorted(self._router.profiles)) or "none configured"
            return CommandResult(f"No profile `{target[:60]}`. Profiles: {known}.", refused=True)
        refusal = self._need_admin(msg, "switch this channel's model")
        if refusal:
            return refusal
        if channel.experiment:
            return CommandResult(
                f"An experiment is running here ({channel.experiment.label}); stop it with `experiment stop` "
                "before switching the model. Nothing was changed.",
                refused=True,
            )
        await self._change(msg, "profile", channel.profile or "", target)
        model = self._router.profiles[target].model
        return CommandResult(
            f"This channel now uses profile `{target}` (model `{model}`), was `{channel.profile or 'none'}`."
        )

    async def _status(self, msg: IncomingMessage, args: list[str]) -> CommandResult:
        channel = await self._channels.get(msg.channel_key)
        warning = None
        if channel.profile:
            profile = self._router.profiles[channel.profile]
            model_line = f"• model: profile `{channel.profile}` (`{profile.model}`)"
            warning = retirement_warning(channel.profile, profile) if msg.is_admin else None
        else:
            model_line = "• model: none — answers are retrieval-only"
        chunks = await self._knowledge.count(list(channel.kbs))
        turns = await self._state.history_length(msg.conversation_key) // 2
        state = "in-process (not shared, lost at exit)" if self._state.in_process else "Redis"
        return CommandResult(
            "\n".join(
                [
                    f"Channel `{msg.channel_key}`",
                    model_line,
                    f"• retrieval: {'on' if channel.rag else 'off'}",
                    f"• knowledge bases: {', '.join(channel.kbs)} ({chunks} chunks)",
                    f"• thread follow-ups: {'on' if channel.thread_followups else 'off'}"
                    + "".join(f"; {name}: {value}" for name, value in self._platform_options(msg, channel)),
                    *([f"• experiment: {channel.experiment.label} since {_when(channel.experiment.started_at)} "
                       "— new conversations are split between these arms; see `experiment`"]
                      if channel.experiment else []),
                    f"• this conversation: {turns} turn{'' if turns == 1 else 's'} remembered",
                    f"• state: {state}",
                    *([warning] if warning else []),
                ]
            )
        )

    async def _audit(self, msg: IncomingMessage, args: list[str]) -> CommandResult:
        entries = await self._state.recent_audit(10, channel=msg.channel_key)
        if not entries:
            return CommandResult("No setting changes recorded for this channel.")
        lines = [
            f"• {_when(e.at)} {e.who}: "
            f"{e.setting} `{e.before or '-'}` → `{e.after or '-'}`"
            for e in entries
        ]
        return CommandResult("Recent changes:\n" + "\n".join(lines))

    async def _reset(self, msg: IncomingMessage, args: list[str]) -> CommandResult:
        forgot = await self._state.forget(msg.conversation_key)
        return CommandResult("Forgot this conversation." if forgot else "Nothing to forget in this conversation.")

    # --- experiments ----------------------------------------------------------------------------

    async def _experiment(self, msg: IncomingMessage, args: list[str]) -> CommandResult:
        action = args[0].lower() if args else "show"
        if action == "show" and len(args) <= 1:
            return await self._experiment_show(msg)
        if action == "stop" and len(args) == 1:
            refusal = self._need_admin(msg, "stop an experiment")
            if refusal:
                return refusal
            try:
                stopped = await self._experiments.stop(msg.channel_key, _who(msg))
            except ExperimentError as exc:
                return CommandResult(str(exc), refused=True)
            profile = stopped.before_profile or "its default profile"
            return CommandResult(
                f"Stopped experiment `{stopped.id}`; this channel is back on {profile}.\n"
                + await self._experiment_results(stopped)
            )
        if action != "start":
            return CommandResult(usage_line("experiment"), refused=True)
        refusal = self._need_admin(msg, "start an experiment")
        if refusal:
            return refusal
        try:
            arms = parse_arms(args[1:], self._router.profiles)
            experiment = await self._experiments.start(msg.channel_key, arms, _who(msg))
        except ExperimentError as exc:
            return CommandResult(str(exc), refused=True)
        return CommandResult(
            f"Started experiment `{experiment.id}`: new conversations here are split between "
            f"{', '.join(f'`{a.label}`' for a in arms)} (sticky per thread). "
            "Conversations begun before keep the channel's model. See the numbers with `experiment`; "
            "end it with `experiment stop`."
        )

    async def _experiment_show(self, msg: IncomingMessage) -> CommandResult:
        running = (await self._channels.get(msg.channel_key)).experiment
        if running is not None:
            head = (
                f"Experiment `{running.id}` running since {_when(running.started_at)} "
                f"(started by {running.started_by})"
            )
            return CommandResult(f"{head}:\n{await self._experiment_results(running)}")
        last = await self._experiments.last_stopped(msg.channel_key)
        if last is None:
            return CommandResult(f"No experiment in this channel. {usage_line('experiment')}")
        return CommandResult(
            f"No experiment running. The last one, `{last.id}`, ran {_when(last.started_at)} → "
            f"{_when(last.stopped_at or last.started_at)}:\n{await self._experiment_results(last)}"
        )

    async def _experiment_results(self, experiment: Experiment) -> str:
        tallies = await tally_feedback(self._state, experiment=experiment)
        return "\n".join(f"• {t.group.removeprefix('arm ')}: {t.summary()}" for t in tallies)

    # --- changes (admin) -------------------------------------------------------------------

    async def _on_off(self, msg: IncomingMessage, args: list[str], name: str, field: str, what: str,
                      current: bool) -> CommandResult:
        if len(args) != 1 or args[0].lower() not in ("on", "off"):
            return CommandResult(usage_line(name), refused=True)
        refusal = self._need_admin(msg, f"turn {what} on or off")
        if refusal:
            return refusal
        value = args[0].lower()
        await self._change(msg, field, "on" if current else "off", value)
        return CommandResult(f"{what.capitalize()} is now {value} in this channel.")

    async def _rag(self, msg: IncomingMessage, args: list[str]) -> CommandResult:
        channel = await self._channels.get(msg.channel_key)
        if not args:
            return CommandResult(f"Retrieval is {'on' if channel.rag else 'off'} here. {usage_line('rag')}")
        return await self._on_off(msg, args, "rag", "rag", "retrieval", channel.rag)

    async def _followups(self, msg: IncomingMessage, args: list[str]) -> CommandResult:
        channel = await self._channels.get(msg.channel_key)
        return await self._on_off(
            msg, args, "followups", "thread_followups", "thread follow-ups", channel.thread_followups
        )

    def _platform_options(self, msg: IncomingMessage, channel: ChannelSettings) -> list[tuple[str, str]]:
        """The channel settings of this platform's own commands (Discord: ``reply mode: thread``)."""
        return [
            (spec.sets.replace("_", " "), channel.options.get(spec.sets, spec.args[0].choices[0]))
            for spec in self._platform_specs
            if spec.sets is not None and spec.on(msg.platform)
        ]

    async def _set_choice(self, msg: IncomingMessage, spec: CommandSpec, args: list[str]) -> CommandResult:
        """A platform command that writes one channel setting (Discord's ``replymode thread|reply``)."""
        [arg] = spec.args
        if len(args) != 1 or args[0].lower() not in arg.choices:
            return CommandResult(usage_line(spec.name, spec), refused=True)
        refusal = self._need_admin(msg, f"change the {spec.sets.replace('_', ' ') if spec.sets else spec.name}")
        if refusal:
            return refusal
        value = args[0].lower()
        channel = await self._channels.get(msg.channel_key)
        before = channel.options.get(spec.sets or "", arg.choices[0])  # unset: the first choice, the default
        await self._change(msg, spec.sets or "", before, value)
        return CommandResult(spec.confirm.get(value) or f"{spec.name} is now {value} in this channel.")

    async def _kb(self, msg: IncomingMessage, args: list[str]) -> CommandResult:
        channel = await self._channels.get(msg.channel_key)
        available = await self._knowledge.list_kbs()
        if not args:
            return CommandResult(
                f"This channel searches: {', '.join(channel.kbs)}. "
                f"Knowledge bases: {', '.join(available) or 'none yet (run `bothbot ingest PATH`)'}."
            )
        names = tuple(dict.fromkeys(n for a in args for n in a.split(",") if n))
        invalid = [problem for n in names if (problem := kb_name_problem(n))]
        if invalid:
            return CommandResult(f"{invalid[0]}. Nothing was changed.", refused=True)
        unknown = [n for n in names if n not in available]
        if unknown:
            return CommandResult(
                f"Unknown knowledge base(s): {', '.join(unknown)}. Known: {', '.join(available) or 'none'}.",
                refused=True,
            )
        refusal = self._need_admin(msg, "change this channel's knowledge bases")
        if refusal:
            return refusal
        await self._change(msg, "kbs", ",".join(channel.kbs), ",".join(names))
        return CommandResult(f"This channel now searches: {', '.join(names)}.")

    # --- helpers ------------------------------------------------------------------------------

    def _need_admin(self, msg: IncomingMessage, action: str) -> CommandResult | None:
        if msg.is_admin:
            return None
        return CommandResult(f"Only an admin can {action}. Nothing was changed.", refused=True)

    async def _change(self, msg: IncomingMessage, field: str, before: str, after: str) -> None:
        await self._state.set_channel_value(msg.channel_key, field, after)
        await self._state.audit(
            who=_who(msg),
            channel=msg.channel_key,
            setting=field,
            before=before,
            after=after,
            max_entries=self._settings.audit_max_entries,
        )


def _who(msg: IncomingMessage) -> str:
    """The caller as the audit stream names them: ``slack:U123 (Ann)``."""
    return f"{msg.platform}:{msg.user}" + (f" ({msg.user_name})" if msg.user_name else "")


def _when(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(at))
