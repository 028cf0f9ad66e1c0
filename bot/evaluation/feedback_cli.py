"""``bothbot feedback export`` and ``bothbot eval feedback``: users' 👍/👎 from the stored traces."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from redis.exceptions import RedisError

from bot.evaluation.feedback import Rating, format_tallies, rated_answers, tally_feedback
from bot.settings import Settings, mask_url_password
from bot.state import StateStore, connect_redis


class _BadInput(Exception):
    """The command line asks for something impossible; the message says what."""


def register_eval_target(targets: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bothbot eval feedback``."""
    parser = targets.add_parser(
        "feedback",
        help="answers, 👍, 👎 and 👍 rate with a 95 %% interval, per experiment arm and per profile",
        description="Users' ratings of live answers from the stored traces: per experiment arm, and per "
        "profile for answers outside an experiment. The same numbers `/bothbot experiment` shows.",
    )
    _add_filters(parser)
    parser.set_defaults(handler=eval_feedback)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bothbot feedback export``."""
    feedback = subparsers.add_parser("feedback", help="export rated answers (training and evaluation data)")
    commands = feedback.add_subparsers(dest="feedback_command", metavar="COMMAND", required=True)
    export = commands.add_parser(
        "export",
        help="rated answers as JSON Lines (question, answer, chunk_id, source, rating, context, …)",
        description="Write rated answers with their question, cited chunks, the passages the model was shown, "
        "profile, model and arm as JSON Lines, readable by `tune dataset --from-feedback` and `eval answers`.",
    )
    _add_filters(export)
    export.add_argument("--rating", choices=("up", "down"), help="only answers rated up (or down)")
    export.add_argument("--out", type=Path, help="file to write (default: stdout)")
    export.set_defaults(handler=export_feedback)


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--since", metavar="DATE", help="only answers from this day or moment on (ISO 8601, UTC)")
    parser.add_argument("--channel", metavar="KEY", help="one channel, e.g. slack:T123:C456 (see `/bothbot status`)")


async def export_feedback(args: argparse.Namespace, settings: Settings) -> int:
    try:
        since = parse_since(args.since)
        rating: Rating | None = args.rating
        async with _state(settings) as state:
            answers = await rated_answers(state, rating=rating, since=since, channel=args.channel)
    except _BadInput as exc:
        print(f"bothbot feedback export: {exc}", file=sys.stderr)
        return 2
    except RedisError as exc:
        print(f"bothbot feedback export: {_redis_problem(settings, exc)}", file=sys.stderr)
        return 1
    text = "".join(json.dumps(a.to_json(), ensure_ascii=False) + "\n" for a in answers)
    if args.out is None:
        sys.stdout.write(text)
    else:
        try:
            await asyncio.to_thread(_write, args.out, text)
        except OSError as exc:
            print(f"bothbot feedback export: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        print(f"wrote {len(answers)} rated answer{'' if len(answers) == 1 else 's'} to {args.out}", file=sys.stderr)
    return 0


async def eval_feedback(args: argparse.Namespace, settings: Settings) -> int:
    try:
        since = parse_since(args.since)
        async with _state(settings) as state:
            tallies = await tally_feedback(state, channel=args.channel, since=since)
    except _BadInput as exc:
        print(f"bothbot eval feedback: {exc}", file=sys.stderr)
        return 2
    except RedisError as exc:
        print(f"bothbot eval feedback: {_redis_problem(settings, exc)}", file=sys.stderr)
        return 1
    scope = f"channel {args.channel}" if args.channel else "all channels"
    when = f", since {since.isoformat()}" if since else ""
    print(f"Feedback on live answers ({scope}{when}); 👍 rate over rated answers, Wilson 95 % interval")
    print(format_tallies(tallies))
    return 0


def parse_since(value: str | None) -> datetime | None:
    """``2025-03-01`` or ``2025-03-01T12:00[+02:00]``; a moment without a zone is UTC."""
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise _BadInput(f"--since {value!r} is not a date: write YYYY-MM-DD or an ISO 8601 moment") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


@asynccontextmanager
async def _state(settings: Settings) -> AsyncIterator[StateStore]:
    if settings.redis_url is None:
        raise _BadInput(
            "no REDIS_URL is set, so there are no stored answers to read (without it the bot keeps its "
            "state in its own memory). Set REDIS_URL to the Redis the bot uses."
        )
    redis, in_process = connect_redis(settings.redis_url, f"bothbot:{settings.redis_prefix}:feedback")
    state = StateStore(redis, settings.redis_prefix, in_process=in_process)
    try:
        yield state
    finally:
        await state.aclose()


def _redis_problem(settings: Settings, exc: RedisError) -> str:
    return f"cannot read the traces from Redis at {mask_url_password(settings.redis_url or '')}: {exc}"


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
