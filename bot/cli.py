"""The ``bothbot`` command (also ``python -m bot``): chat, ingest, eval, config, serve and one per platform.

This is the composition root: the one module of ``bot/`` that imports ``adapters`` (the platform
registry and the serving lifecycle), to build the platform commands and each platform's settings
block. Everything else in ``bot/`` is platform-neutral (tests/test_architecture.py checks it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

import adapters
import retrieval.cli as retrieval_cli
from adapters.console.chat import run_chat
from adapters.serve import serve
from bot.evaluation import cli as evaluation_cli
from bot.logs import configure_logging
from bot.runtime import Runtime, check_redis
from bot.settings import ConfigError, Settings, load_settings, mask_url_password
from bot.tune import cli as tune_cli
from retrieval.errors import RetrievalError

log = logging.getLogger("bothbot")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bothbot",
        description="Answers questions in Slack, Discord and the terminal from your team's own documents.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    chat = sub.add_parser("chat", help="chat in the terminal (or answer lines piped on stdin)")
    chat.add_argument("--channel", default="console", help="channel id (settings and history are per channel)")
    chat.add_argument("--user", default="local", help="user id (the local user is an admin)")

    sub.add_parser("config", help="print the effective settings, secrets masked")
    for name in adapters.names():  # `bothbot slack`, `bothbot discord`: the same as `bothbot serve <name>`
        sub.add_parser(name, help=adapters.summary(name)).set_defaults(platforms=[name])
    several = sub.add_parser(
        "serve", help="run several adapters in one process (one embedded knowledge base, one runtime)"
    )
    several.add_argument("platforms", nargs="+", choices=adapters.names(), metavar="PLATFORM",
                         help=" and/or ".join(adapters.names()))
    retrieval_cli.register(sub)
    evaluation = sub.add_parser("eval", help="measure answer or retrieval quality")
    targets = evaluation.add_subparsers(dest="eval_target", metavar="TARGET", required=True)
    retrieval_cli.register_eval(targets)
    evaluation_cli.register_eval_targets(targets)
    evaluation_cli.register_commands(sub)
    tune_cli.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings()
        models = {name: adapters.settings_model(name) for name in adapters.names()}
        for model in models.values():  # every platform's block: checked now, shown by `config`, redacted
            settings.platform(model)
        settings.check_channel_options(models)  # [channels."platform:…"]: the core's keys or its platform's
        settings.check_toml_keys(models)  # bothbot.toml's top-level keys: the core's or a platform's
    except ConfigError as exc:
        print(f"bothbot: {exc}", file=sys.stderr)
        return 2
    configure_logging(
        settings.log_level,
        settings.secret_values(),
        payload_loggers=adapters.payload_loggers(),
        fmt=settings.log_format,
    )
    try:
        return asyncio.run(_dispatch(args, settings))
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `bothbot chat | head`: the reader has gone; stop quietly
        _silence_stdout()
        return 0
    except (ConfigError, RetrievalError) as exc:
        print(f"bothbot: {exc}", file=sys.stderr)
        return 2


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's final flush of a closed pipe says nothing."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no real file descriptor (a test's StringIO): nothing to flush there
        pass


async def _dispatch(args: argparse.Namespace, settings: Settings) -> int:
    handler = getattr(args, "retrieval_handler", None)
    if handler is not None:
        code: int = await handler(args, settings.retrieval_environment())
        return code
    command_handler = getattr(args, "handler", None)
    if command_handler is not None:  # tune, eval answers/feedback, feedback: async (args, settings) -> int
        if getattr(args, "tune_command", None) != "validate":  # the one that reads only a file
            await check_redis(settings.redis_url)  # they open Redis: a wrong REDIS_URL fails here, named
        result: int = await command_handler(args, settings)
        return result
    if args.command == "config":
        print(render_config(settings))
        return 0
    if args.command == "chat":
        return await _chat(args, settings)
    platforms: list[str] | None = getattr(args, "platforms", None)
    if platforms is not None:  # `bothbot serve …` and `bothbot <platform>`: one lifecycle
        await serve(settings, platforms)
        return 0
    raise AssertionError(f"unhandled command {args.command}")  # argparse rejects unknown ones


def render_config(settings: Settings) -> str:
    """The effective settings as JSON; every secret is printed as ``**********``."""
    data: dict[str, Any] = settings.model_dump(mode="json")
    for block in settings.platforms:  # flat, as they always were: slack_bot_token, discord_token …
        data.update(block.model_dump(mode="json"))
    for name, profile in settings.profiles.items():
        data["profiles"][name]["api_key"] = "**********" if profile.api_key else None
    return json.dumps(_mask_urls(data), indent=2, sort_keys=True)


def _mask_urls(value: Any) -> Any:
    """``value`` with the password of every URL in it masked, however deep (profiles' base_url…)."""
    if isinstance(value, dict):
        return {key: _mask_urls(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_urls(item) for item in value]
    if isinstance(value, str) and "://" in value:
        return mask_url_password(value)
    return value


async def _chat(args: argparse.Namespace, settings: Settings) -> int:
    runtime = await Runtime.start(settings, serve_ingest=True)
    try:
        interactive = sys.stdin.isatty()
        banner = runtime.describe()
        if not interactive and runtime.state.in_process:
            print(banner[0], file=sys.stderr)
        return await run_chat(
            runtime.engine,
            channel=args.channel,
            user=args.user,
            stdin=sys.stdin,
            stdout=sys.stdout,
            stderr=sys.stderr,
            interactive=interactive,
            banner=banner,
        )
    finally:
        await runtime.aclose()
