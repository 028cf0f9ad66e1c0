"""The one serving lifecycle (``adapters.serve``), with a real platform written for the test.

check every platform → start one runtime → serve each → on a signal (or one platform ending) each
stops taking events and drains while the runtime is still open → the runtime closes.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import adapters
from adapters.base import RuntimePort
from adapters.serve import resolve, serve_platforms
from bot.cli import build_parser
from bot.settings import ConfigError, PlatformSettings, Settings
from tests.conftest import TEST_REDIS_URL


class EchoSettings(PlatformSettings):
    echo_greeting: str = "hello"


class Echo:
    """A platform that only records what the lifecycle does to it."""

    settings_model = EchoSettings

    def __init__(self, name: str, *, refuse: bool = False, crash: bool = False) -> None:
        self.name = name
        self.refuse = refuse
        self.crash = crash
        self.events: list[str] = []
        self.serving = asyncio.Event()
        self.sigint_handler: object = None

    def check(self, settings: Settings) -> None:
        self.events.append("checked")
        if self.refuse:
            raise ConfigError(f"ECHO_TOKEN is not set ({self.name})")

    async def serve(self, runtime: RuntimePort, stop: asyncio.Event) -> None:
        self.events.append(f"serving ({runtime.settings.platform(EchoSettings).echo_greeting})")
        self.serving.set()
        try:
            if self.crash:
                raise RuntimeError(f"{self.name} lost its connection")
            await stop.wait()
            self.events.append("stopped taking events")
            self.sigint_handler = signal.getsignal(signal.SIGINT)
            await runtime.state.redis.ping()  # draining still has the runtime
            self.events.append("drained")
        finally:
            self.events.append("closed")


async def _serve(settings: Settings, *platforms: Echo) -> asyncio.Task[None]:
    """Start the lifecycle and return once every platform is serving."""
    task = asyncio.create_task(serve_platforms(settings, platforms))
    serving = asyncio.ensure_future(asyncio.gather(*(p.serving.wait() for p in platforms)))
    await asyncio.wait([task, serving], return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        serving.cancel()
        task.result()  # raises what stopped it
        raise AssertionError("serve returned before it was stopped")
    return task


ROOT = Path(__file__).resolve().parents[1]
SERVED = ["checked", "serving (hi)", "stopped taking events", "drained", "closed"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_signal_stops_every_platform_gracefully(
    make_settings: Callable[..., Settings], sig: signal.Signals
) -> None:
    settings = make_settings(echo_greeting="hi")
    slack, discord = Echo("one"), Echo("two")
    task = await _serve(settings, slack, discord)
    os.kill(os.getpid(), sig)
    await asyncio.wait_for(task, 30)
    assert slack.events == discord.events == SERVED
    if sig is signal.SIGINT:  # a second Ctrl-C would raise KeyboardInterrupt: stop at once
        assert slack.sigint_handler is signal.default_int_handler
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers removed at the end


async def test_a_bad_setting_stops_everything_before_anything_opens(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    fine, refusing = Echo("fine"), Echo("refusing", refuse=True)
    with pytest.raises(ConfigError, match="ECHO_TOKEN"):
        await serve_platforms(make_settings(), [fine, refusing])
    assert fine.events == ["checked"] and refusing.events == ["checked"]
    assert not (tmp_path / "data").exists()  # the runtime (and its knowledge base) never started


async def test_one_platform_ending_stops_the_others_and_its_error_is_raised(
    make_settings: Callable[..., Settings],
) -> None:
    steady, crashing = Echo("steady"), Echo("crashing", crash=True)
    with pytest.raises(RuntimeError, match="crashing lost its connection"):
        await asyncio.wait_for(serve_platforms(make_settings(echo_greeting="hi"), [steady, crashing]), 30)
    assert steady.events == SERVED
    assert crashing.events == ["checked", "serving (hi)", "closed"]


def test_platform_commands_come_from_the_registry() -> None:
    parser = build_parser()
    for name in adapters.names():
        assert parser.parse_args([name]).platforms == [name]
    assert parser.parse_args(["serve", "discord", "slack"]).platforms == ["discord", "slack"]
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "teams"])


def test_serve_names_unknown_platforms() -> None:
    with pytest.raises(ValueError, match="serve takes one or more of: slack, discord"):
        resolve(["slack", "teams"])
    with pytest.raises(ValueError, match="got none"):
        resolve([])
    assert [p.name for p in resolve(["discord", "discord"])] == ["discord"]


STUCK = """
import asyncio, sys
from adapters.serve import serve_platforms
from bot.settings import PlatformSettings, load_settings

class Stuck:
    name = "stuck"
    settings_model = PlatformSettings

    def check(self, settings):
        pass

    async def serve(self, runtime, stop):
        print("serving", flush=True)
        try:
            await stop.wait()
            print("draining", flush=True)
            await asyncio.Event().wait()  # an answer that never finishes
        finally:
            print("closed", flush=True)

settings = load_settings(redis_url=sys.argv[1], redis_prefix=sys.argv[2], data_dir=sys.argv[3])
try:
    asyncio.run(serve_platforms(settings, [Stuck()]))
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
"""


async def test_a_second_ctrl_c_stops_at_once(tmp_path: Path, redis_prefix: str, redis_cleanup: object) -> None:
    """The first Ctrl-C drains (here: forever); the second cuts the answers off and exits 130."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", STUCK, TEST_REDIS_URL, redis_prefix, str(tmp_path / "data"),
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"serving\n"
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.stdout.readline(), 30) == b"draining\n"
        proc.send_signal(signal.SIGINT)
        rest, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 130, stderr.decode()
        assert rest.decode().split() == ["closed", "interrupted"]  # the stuck answer was cancelled, then exit
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
