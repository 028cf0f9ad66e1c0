"""Bad configuration ends in one clear line naming the setting and the fix, exit code 2, no traceback."""

from __future__ import annotations

import json
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

_OURS = ("BOTHBOT_", "OPENAI_", "REDIS_", "QDRANT_", "SLACK_", "DISCORD_", "PORT")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(_OURS)}
    clean.update(extra or {})
    return clean


def _run(
    args: list[str], cwd: Path, env: dict[str, str] | None = None, stdin: str = "hello\n"
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd, input=stdin, capture_output=True, text=True, env=_env(env), timeout=60, check=False,
    )


def _closed_port() -> int:
    with socket.socket() as sock:  # bound, never listening, closed: nothing answers there
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


class _WrongPass(socketserver.BaseRequestHandler):
    """A Redis that refuses every credential, as one with requirepass does."""

    def handle(self) -> None:
        while self.request.recv(4096):
            self.request.sendall(b"-WRONGPASS invalid username-password pair or user is disabled.\r\n")


@pytest.fixture
def password_redis() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _WrongPass)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _assert_clean_failure(result: subprocess.CompletedProcess[str], setting: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert setting in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("bothbot: ")


@pytest.mark.parametrize(
    "url",
    [
        "redis://127.0.0.1:{closed}/0",  # nothing listening
        "redis://127.0.0.1:6379/99",  # a database number Redis does not have
        "redis://host:notaport",  # not a URL redis-py can use
    ],
)
def test_chat_with_a_bad_redis_url_says_so(isolated_env: Path, url: str) -> None:
    result = _run(["chat"], isolated_env, {"REDIS_URL": url.format(closed=_closed_port())})
    _assert_clean_failure(result, "REDIS_URL")


def test_a_wrong_redis_password_is_named_and_not_printed(isolated_env: Path, password_redis: int) -> None:
    result = _run(["chat"], isolated_env, {"REDIS_URL": f"redis://:s3cret-pw@127.0.0.1:{password_redis}/0"})
    _assert_clean_failure(result, "REDIS_URL")
    assert "password" in result.stderr
    assert "s3cret-pw" not in result.stderr + result.stdout


@pytest.mark.parametrize("args", [["tune", "list"], ["eval", "feedback"]])
def test_tune_and_eval_with_an_unreachable_redis_say_so(isolated_env: Path, args: list[str]) -> None:
    result = _run(args, isolated_env, {"REDIS_URL": f"redis://127.0.0.1:{_closed_port()}/0"})
    _assert_clean_failure(result, "REDIS_URL")


def test_discord_with_an_unreachable_api_says_so(isolated_env: Path) -> None:
    env = {"DISCORD_TOKEN": "not-a-real-token", "DISCORD_API_URL": f"http://127.0.0.1:{_closed_port()}/api"}
    result = _run(["discord"], isolated_env, env, stdin="")
    _assert_clean_failure(result, "DISCORD_API_URL")


def test_slack_with_an_unreachable_api_says_so(isolated_env: Path) -> None:
    env = {
        "SLACK_BOT_TOKEN": "xoxb-not-real",
        "SLACK_APP_TOKEN": "xapp-not-real",
        "SLACK_API_URL": f"http://127.0.0.1:{_closed_port()}/api/",
    }
    result = _run(["slack"], isolated_env, env, stdin="")
    _assert_clean_failure(result, "SLACK_API_URL")


def test_config_masks_every_url_password(isolated_env: Path) -> None:
    (isolated_env / "bothbot.toml").write_text(
        '[profiles.base]\nmodel = "m"\n'
        '[profiles.own]\nmodel = "m"\nbase_url = "http://user:profile-pw@models.example/v1"\n'
    )
    env = {
        "OPENAI_BASE_URL": "http://user:top-pw@llm.example/v1",
        "REDIS_URL": "redis://:redis-pw@127.0.0.1:6379/15",
    }
    result = _run(["config"], isolated_env, env, stdin="")
    assert result.returncode == 0, result.stderr
    for secret in ("profile-pw", "top-pw", "redis-pw"):
        assert secret not in result.stdout
    data = json.loads(result.stdout)
    assert data["profiles"]["base"]["base_url"] == "http://user:**********@llm.example/v1"
    assert data["profiles"]["own"]["base_url"] == "http://user:**********@models.example/v1"


def test_profile_base_url_passwords_are_redacted_from_logs(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.settings import load_settings

    settings = load_settings(
        profiles={"own": {"model": "m", "base_url": "http://user:profile-pw@models.example/v1"}}
    )
    assert "profile-pw" in settings.secret_values()


def test_chat_into_a_pipe_closed_early_exits_quietly(isolated_env: Path) -> None:
    (isolated_env / "questions.txt").write_text("".join("/help\n" for _ in range(300)))
    result = subprocess.run(  # `bothbot chat | head -1`: the reader leaves after one line
        ["bash", "-c", f"{sys.executable} -m bot chat < questions.txt | head -1; exit ${{PIPESTATUS[0]}}"],
        cwd=isolated_env, capture_output=True, text=True, env=_env(), timeout=60, check=False,
    )
    assert len(result.stdout.splitlines()) == 1
    assert "Traceback" not in result.stderr, result.stderr
    assert "BrokenPipe" not in result.stderr
    assert "never awaited" not in result.stderr
    assert result.returncode == 0


def test_a_misspelt_toml_key_is_named_with_the_closest_one(isolated_env: Path) -> None:
    (isolated_env / "bothbot.toml").write_text(
        'defualt_profile = "base"\nslack_command = "/ask"\n[profiles.base]\nmodel = "m"\n'
    )
    result = _run(["config"], isolated_env, stdin="")
    assert result.returncode == 2
    assert "defualt_profile" in result.stderr
    assert "did you mean 'default_profile'?" in result.stderr
    assert "slack_command" not in result.stderr  # a platform's key is a known key
    assert "Traceback" not in result.stderr


def test_known_toml_keys_of_core_and_platforms_pass(isolated_env: Path) -> None:
    (isolated_env / "bothbot.toml").write_text(
        'default_profile = "base"\ndiscord_message_content = false\nslack_command = "/ask"\nrag_default = true\n'
        'redis_url = ""\n[retrieval]\ntop_k = 4\n[profiles.base]\nmodel = "m"\n[channels."slack:T1:C1"]\nrag = false\n'
    )
    result = _run(["config"], isolated_env, stdin="")
    assert result.returncode == 0, result.stderr


def test_a_profile_without_key_or_endpoint_is_warned_about_at_start_up(isolated_env: Path) -> None:
    (isolated_env / "bothbot.toml").write_text('[profiles.lonely]\nmodel = "m"\n')
    result = _run(["chat"], isolated_env, stdin="/quit\n")
    assert result.returncode == 0, result.stderr
    [warning] = [line for line in result.stderr.splitlines() if "lonely" in line]
    assert "WARNING" in warning
    assert "OPENAI_API_KEY" in warning and "[profiles.lonely]" in warning


def test_a_profile_with_an_endpoint_is_not_warned_about(isolated_env: Path) -> None:
    (isolated_env / "bothbot.toml").write_text('[profiles.local]\nmodel = "m"\nbase_url = "http://127.0.0.1:1/v1"\n')
    result = _run(["chat"], isolated_env, stdin="/quit\n")
    assert result.returncode == 0, result.stderr
    assert "local has no API key" not in result.stderr


def test_the_kb_command_refuses_a_name_ingest_would_refuse(isolated_env: Path) -> None:
    result = _run(["chat"], isolated_env, stdin="/kb bad/name\n")
    assert "'bad/name' is not a valid knowledge base name" in result.stdout
