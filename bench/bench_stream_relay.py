"""Streaming relay: how quickly and how often a streamed answer shows up on Slack and Discord.

Runs the real adapters end to end, as the tests do: the real slack-bolt app over HTTP (signed
Events API request) and the real ``discord.Client`` over the gateway, against the local Slack
and Discord fakes, real Redis, and the OpenAI fake streaming ``--tokens`` tokens at ``--rate``
tokens per second. The fakes note when the model wrote each token and when each platform call
that changed a message was answered (``record_times``), all on ``time.monotonic()``.

Per mode (``slack-native``: chat.startStream/appendStream/stopStream; ``slack-edit``: a
placeholder edited with chat.update; ``discord``: message edits) it prints:

- first text: model's first token → first answer text visible on the platform fake;
- calls: opening calls (messages posted / streams started), updates during generation
  (appends / edits), closing calls (after the model's last token), by method;
- updates per second of generation, the most updates in any 1 s window, the largest gap
  between two visible updates;
- final: model's last token → the last call (the final text and buttons shown).

It prints numbers and the machine (cores, load average) and asserts nothing::

    python bench/bench_stream_relay.py [--tokens 1000] [--rate 50] [--modes slack-native,slack-edit,discord]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import os
import platform
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiohttp
import redis.asyncio as aioredis

from adapters.discord.client import build_client
from adapters.discord.settings import DiscordSettings
from adapters.slack.app import build_slack_bot
from adapters.slack.server import EVENTS_PATH, start_http
from adapters.slack.settings import SlackSettings
from bot.runtime import Runtime
from bot.settings import Settings, load_settings
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI
from tests.fakes.slack_payloads import SIGNING_SECRET, app_mention, event_callback, sign
from tests.fakes.slack_server import BOT_TOKEN, FakeSlack

MODES = ("slack-native", "slack-edit", "discord")
PROFILES = {"base": {"model": "bench-model"}}
WORDS = ("form", "desk", "team", "rule", "file", "note", "page", "user", "plan", "code", "task", "item", "data")
FIRST = "Open"  # in the answer's first token and in no status line or placeholder


def answer_tokens(count: int) -> list[str]:
    """``count`` tokens of exactly 5 characters each, so the fake streams exactly one per chunk:
    ``"Open "``, then ``" form"``, ``" desk"`` …, a paragraph break every 60 tokens."""
    tokens = [FIRST + " "]
    for i in range(1, count):
        word = WORDS[i % len(WORDS)]
        tokens.append("\n\n" + word[:3].capitalize() if i % 60 == 0 else " " + word)
    return tokens[:count]


def squash(text: str) -> str:
    return "".join(text.split())


@dataclass(frozen=True)
class Shown:
    """One platform call that changed a message, as the platform fake saw it."""

    at: float
    method: str
    message: int  # which message of the answer (0 = the first)
    opening: bool  # posted the message / started the stream
    text: str  # what the message showed afterwards


@dataclass
class Result:
    mode: str
    shown: list[Shown]
    token_times: list[float]
    answer: str
    interval: float
    error: str = ""


# ------------------------------------------------------------------------------------- helpers


def settings_for(args: argparse.Namespace, data_dir: Path, prefix: str, model_url: str, **extra: Any) -> Settings:
    generation = args.tokens / args.rate
    budget = min(600.0, max(30.0, generation * 1.5 + 15.0))
    return load_settings(
        redis_url=args.redis,
        redis_prefix=prefix,
        data_dir=data_dir,
        openai_base_url=model_url,
        openai_api_key="sk-bench",
        profiles=PROFILES,
        default_profile="base",
        rag_default=False,  # the relay is measured, not retrieval: the model answers at once
        rate_limit_user=0,
        rate_limit_channel=0,
        model_max_retries=0,
        model_timeout_seconds=budget,
        answer_deadline_seconds=budget,
        log_level="WARNING",
        **extra,
    )


async def clean_redis(url: str, prefix: str) -> None:
    client = aioredis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=500)]
        if keys:
            await client.delete(*keys)
    finally:
        await client.aclose()


def model_fake(tokens: list[str], rate: float) -> FakeOpenAI:
    return FakeOpenAI(
        reply_text="".join(tokens), chunks_per_reply=len(tokens), chunk_interval=1.0 / rate, record_times=True
    )


# ------------------------------------------------------------------------------------- Slack


async def run_slack(args: argparse.Namespace, tmp: Path, *, native: bool) -> Result:
    mode = "slack-native" if native else "slack-edit"
    tokens = answer_tokens(args.tokens)
    prefix = f"bench-relay:{uuid.uuid4().hex[:10]}"
    slack = FakeSlack(streaming=native, record_times=True)
    model = model_fake(tokens, args.rate)
    async with slack, model:
        settings = settings_for(
            args,
            tmp / mode,
            prefix,
            model.base_url,
            slack_bot_token=BOT_TOKEN,
            slack_signing_secret=SIGNING_SECRET,
            slack_api_url=slack.api_url,
            slack_native_streaming=native,
        )
        interval = settings.platform(SlackSettings).slack_edit_interval_seconds
        runtime = await Runtime.start(settings)
        bot = await build_slack_bot(runtime, settings)
        http = await start_http(bot, "127.0.0.1", 0)
        error = ""
        mention = app_mention("how do I get a laptop?")
        try:
            body = json.dumps(event_callback(mention))
            headers = {"Content-Type": "application/json", **sign(body)}
            url = f"http://127.0.0.1:{http.port}{EVENTS_PATH}"
            async with aiohttp.ClientSession() as session, session.post(url, data=body.encode(), headers=headers) as r:
                if r.status != 200:
                    error = f"the event got HTTP {r.status}"
            if not error:
                await bot.wait_processed(1, timeout=args.tokens / args.rate + 60)
        finally:
            await http.aclose()
            await bot.aclose()
            await runtime.aclose()
            await clean_redis(args.redis, prefix)
        messages = sorted(slack.bot_messages(thread_ts=mention["ts"]), key=lambda m: m.ts)
        shown = [
            Shown(c.at, c.method, index, c.method in ("chat.postMessage", "chat.startStream"), c.shown)
            for index, m in enumerate(messages)
            for c in m.changes
        ]
        failed = [c.method for c in slack.calls if c.method.startswith("chat.")]
        succeeded = Counter(s.method for s in shown)
        refused = Counter(failed) - succeeded
        if refused:
            error = (error + "; " if error else "") + f"calls refused or unrecorded: {dict(refused)}"
        return Result(mode, shown, list(model.chunk_times), "".join(tokens), interval, error)


# ------------------------------------------------------------------------------------- Discord


async def run_discord(args: argparse.Namespace, tmp: Path) -> Result:
    tokens = answer_tokens(args.tokens)
    prefix = f"bench-relay:{uuid.uuid4().hex[:10]}"
    discord_fake = await FakeDiscord(record_times=True).start()
    model = model_fake(tokens, args.rate)
    error, thread_id = "", ""
    try:
        async with model:
            settings = settings_for(
                args,
                tmp / "discord",
                prefix,
                model.base_url,
                discord_token=discord_fake.token,
                discord_api_url=discord_fake.base_url,
            )
            interval = settings.platform(DiscordSettings).discord_edit_interval_seconds
            runtime = await Runtime.start(settings)
            client = build_client(runtime)
            task = asyncio.create_task(client.start(discord_fake.token))
            try:
                await discord_fake.wait_for(lambda: discord_fake.identify_count > 0 or task.done(), timeout=30)
                if task.done():
                    task.result()
                # measured once the client is ready (discord.py waits ~2 s for more guilds first)
                await asyncio.wait_for(client.wait_until_ready(), 30)
                alice = discord_fake.new_user("alice")
                question = await discord_fake.send_message(alice, "how do I get a laptop?", mention_bot=True)
                thread_id = question["id"]  # a thread started from a message has the message's id
                timeout = args.tokens / args.rate + 60
                try:
                    await discord_fake.wait_for(lambda: discord_fake.answers(thread_id), timeout=timeout)
                except TimeoutError:
                    error = "no final answer (with buttons) arrived"
            finally:
                await client.close()
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(task, 10)
                await runtime.aclose()
                await clean_redis(args.redis, prefix)
    finally:
        await discord_fake.close()
    messages = discord_fake.bot_messages(thread_id)  # in the order they were posted
    shown = [
        Shown(at, "POST message" if version == 0 else "PATCH message", index, version == 0, str(v.get("content") or ""))
        for index, m in enumerate(messages)
        for version, (at, v) in enumerate(zip(m.times, m.versions, strict=True))
    ]
    return Result("discord", shown, list(model.chunk_times), "".join(tokens), interval, error)


# ------------------------------------------------------------------------------------- report


def is_answer_text(text: str) -> bool:
    return FIRST in text and not text.lstrip().startswith("-# ")


def report(result: Result, args: argparse.Namespace) -> list[str]:
    lines = [f"[{result.mode}]  throttle interval {result.interval:g} s"]
    if result.error:
        lines.append(f"  ERROR: {result.error}")
    times, shown = result.token_times, sorted(result.shown, key=lambda s: s.at)
    if not times or not shown:
        lines.append(f"  nothing to measure (model tokens written: {len(times)}, platform calls: {len(shown)})")
        return lines
    first_token, last_token = times[0], times[-1]
    generation = last_token - first_token
    visible = [s for s in shown if is_answer_text(s.text)]
    first_visible = visible[0].at if visible else float("nan")
    final_at = shown[-1].at
    opening = [s for s in shown if s.opening]
    during = [s for s in shown if not s.opening and first_token <= s.at <= last_token]
    before = [s for s in shown if not s.opening and s.at < first_token]
    closing = [s for s in shown if not s.opening and s.at > last_token]
    updates_per_s = len(during) / generation if generation > 0 else float("nan")
    at = [s.at for s in during]
    peak = max((sum(1 for b in at if a <= b < a + 1.0) for a in at), default=0)
    from_first = [s.at for s in shown if s.at >= first_visible]
    gaps = [b - a for a, b in itertools.pairwise(from_first)]
    largest_gap = max(gaps, default=0.0)
    shown_by_message: dict[int, str] = {}
    for s in shown:
        shown_by_message[s.message] = s.text
    complete = squash(result.answer) in squash("".join(shown_by_message[i] for i in sorted(shown_by_message)))
    by_method = ", ".join(f"{m} {n}" for m, n in sorted(Counter(s.method for s in shown).items()))
    lines += [
        f"  model: {len(times)} tokens in {generation:.2f} s ({(len(times) - 1) / generation if generation else 0:.1f}"
        " tokens/s)",
        f"  first text visible after the model's first token: {first_visible - first_token:.3f} s",
        f"  platform calls: {len(shown)} ({by_method}) in {len(shown_by_message)} message(s)",
        f"    opening {len(opening)}, before the first token {len(before)}, updates during generation"
        f" {len(during)}, closing (after the last token) {len(closing)}",
        f"  updates per second of generation: {updates_per_s:.2f} (most in any 1 s window: {peak})",
        f"  largest gap between two visible updates: {largest_gap:.3f} s",
        f"  final text visible after the model's last token: {final_at - last_token:.3f} s"
        f" (complete answer shown: {'yes' if complete else 'NO'})",
    ]
    if args.verbose:
        for s in shown:
            lines.append(f"    {s.at - first_token:+8.3f} s  msg {s.message}  {s.method:<18} {len(s.text):>6} chars")
    return lines


def load_average() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    python = platform.python_version()
    return f"{platform.node()} · {os.cpu_count()} cores · load average {load_average()} · Python {python}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=1000, help="tokens in the answer (default 1000)")
    parser.add_argument("--rate", type=float, default=50.0, help="tokens per second the model writes (default 50)")
    parser.add_argument("--modes", default=",".join(MODES), help=f"comma-separated, of {', '.join(MODES)}")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/14", help="Redis for the bot's state")
    parser.add_argument("--verbose", "-v", action="store_true", help="list every platform call")
    args = parser.parse_args()
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    unknown = [m for m in modes if m not in MODES]
    if unknown or args.tokens < 1 or args.rate <= 0:
        parser.error(f"unknown mode(s) {unknown}" if unknown else "--tokens ≥ 1 and --rate > 0")
    for name in list(os.environ):  # the machine's own settings must not leak into the bench
        if name.startswith(("BOTHBOT_", "OPENAI_", "SLACK_", "DISCORD_", "QDRANT_", "REDIS_")):
            del os.environ[name]
    logging.basicConfig(level=logging.WARNING)

    print(f"stream relay: {args.tokens} tokens at {args.rate:g} tokens/s; modes {', '.join(modes)}")
    print(f"machine: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)  # no .env or bothbot.toml from wherever the bench was started
        for mode in modes:
            started = time.monotonic()
            if mode == "discord":
                result = await run_discord(args, Path(tmp))
            else:
                result = await run_slack(args, Path(tmp), native=mode == "slack-native")
            print()
            print("\n".join(report(result, args)))
            print(f"  (mode took {time.monotonic() - started:.1f} s; load average now {load_average()})")
    print()
    print(f"machine at the end: {machine()}")


if __name__ == "__main__":
    asyncio.run(main())
