"""The one settings tree: environment, ``.env`` and an optional ``bothbot.toml``.

Built once in ``main()`` (or by a test) and passed down; nothing else reads ``os.environ``.
Priority, highest first: constructor arguments, environment, ``.env``, ``bothbot.toml``, defaults.
Standard names are read as they are (``OPENAI_API_KEY``, ``REDIS_URL``, ``SLACK_BOT_TOKEN`` …);
everything else is ``BOTHBOT_<FIELD>`` (nested: ``BOTHBOT_RETRIEVAL__TOP_K``).
"""

from __future__ import annotations

import os
import tomllib
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from retrieval.config import RetrievalConfig, RetrievalEnvironment

DEFAULT_CONFIG_FILE = "bothbot.toml"
IMPLICIT_PROFILE = "default"


class ConfigError(Exception):
    """Invalid configuration; the message names the setting and the fix."""


def _env(name: str, field: str | None = None) -> AliasChoices:
    return AliasChoices(field or name.lower(), name)


def url_password(url: str | None) -> str | None:
    """The password inside ``scheme://user:password@host``, if any."""
    if not url or "://" not in url:
        return None
    return urlsplit(url).password


def mask_url_password(url: str) -> str:
    password = url_password(url)
    return url.replace(f":{password}@", ":**********@", 1) if password else url


def _check_url(value: str | None, setting: str, schemes: tuple[str, ...]) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value)
    if parts.scheme not in schemes or not (parts.netloc or parts.path):
        raise ValueError(
            f"{setting}={value!r} is not a valid URL; expected one starting with "
            + " or ".join(f"{s}://" for s in schemes)
        )
    return value


class ModelProfile(BaseModel):
    """One model a channel can point at: base, fine-tuned (``ft:…``), LoRA adapter, Ollama model…"""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = Field(min_length=1, description="Model id sent to the endpoint.")
    base_url: str | None = Field(default=None, description="OpenAI-compatible endpoint; default OPENAI_BASE_URL.")
    api_key_env: str | None = Field(default=None, description="Environment variable holding this profile's key.")
    api_key: SecretStr | None = Field(default=None, exclude=True, description="Resolved key (never printed).")
    system_prompt: str | None = Field(default=None, description="Replaces the default system prompt.")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=800, ge=1, le=100_000, description="Completion token limit.")
    description: str = Field(default="", description="Shown by `models`.")
    retires_on: date | None = Field(
        default=None, description="The day the model stops answering; `models` and `status` warn 30 days ahead."
    )
    price_input_per_mtok: float | None = Field(
        default=None, ge=0, description="Price of a million prompt tokens, for cost in `eval answers` reports."
    )
    price_output_per_mtok: float | None = Field(
        default=None, ge=0, description="Price of a million completion tokens, for cost in `eval answers` reports."
    )

    @field_validator("base_url")
    @classmethod
    def _valid_base_url(cls, value: str | None) -> str | None:
        return _check_url(value, "base_url", ("http", "https"))


class ChannelDefaults(BaseModel):
    """Defaults for one channel (key ``platform:workspace:channel``) before any admin changes them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    profile: str | None = None
    rag: bool | None = None
    kbs: tuple[str, ...] | None = None
    thread_followups: bool | None = Field(
        default=None, description="Answer follow-ups in a thread the bot is part of without a new mention."
    )
    reply_mode: Literal["thread", "reply"] | None = Field(
        default=None, description="Discord: answer a mention in a new thread or as a reply."
    )


class _TomlSource(PydanticBaseSettingsSource):
    """Reads ``bothbot.toml`` from ``BOTHBOT_CONFIG`` or the working directory, if there is one."""

    def __init__(self, settings_cls: type[BaseSettings], init_kwargs: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        explicit = init_kwargs.get("config_file") or os.environ.get("BOTHBOT_CONFIG")
        path = Path(explicit) if explicit else Path(DEFAULT_CONFIG_FILE)
        self.data: dict[str, Any] = {}
        if explicit and not path.is_file():
            raise ConfigError(f"BOTHBOT_CONFIG={path}: file not found. Fix the path or unset BOTHBOT_CONFIG.")
        if path.is_file():
            try:
                self.data = tomllib.loads(path.read_text(encoding="utf-8"))
            except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
                raise ConfigError(f"{path}: malformed TOML ({exc}). Fix the file or remove it.") from exc
            self.data["config_file"] = str(path)

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.data)


class Settings(BaseSettings):
    """Every setting of a bothbot process. See the README's settings table."""

    model_config = SettingsConfigDict(
        env_prefix="BOTHBOT_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

    # --- where things live ---
    config_file: str | None = Field(
        default=None,
        validation_alias=_env("BOTHBOT_CONFIG", "config_file"),
        description="Path of bothbot.toml (default: ./bothbot.toml if present).",
    )
    data_dir: Path = Field(default=Path(".bothbot"), description="Embedded knowledge base and local state.")
    redis_url: str | None = Field(
        default=None,
        validation_alias=_env("REDIS_URL"),
        description="redis://… for any real deployment; unset = in-process state (lost at exit).",
    )
    redis_prefix: str = Field(default="bothbot", min_length=1, description="Prefix of every Redis key.")
    qdrant_url: str | None = Field(
        default=None, validation_alias=_env("QDRANT_URL"), description="Qdrant server; unset = embedded engine."
    )
    qdrant_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("QDRANT_API_KEY"), description="API key of the Qdrant server."
    )

    # --- models ---
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=_env("OPENAI_API_KEY"), description="Default key of every profile."
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=_env("OPENAI_BASE_URL"), description="Any OpenAI-compatible endpoint."
    )
    default_model: str = Field(
        default="gpt-4o-mini", description="Model of the implicit profile used when bothbot.toml has none."
    )
    default_profile: str | None = Field(default=None, description="Profile of channels nobody has switched.")
    profiles: dict[str, ModelProfile] = Field(default_factory=dict, description="Model profiles ([profiles.NAME]).")
    channels: dict[str, ChannelDefaults] = Field(
        default_factory=dict, description="Per-channel defaults ([channels.\"platform:workspace:channel\"])."
    )
    model_timeout_seconds: float = Field(default=30.0, gt=0, le=600, description="Per model request.")
    model_max_retries: int = Field(default=2, ge=0, le=10, description="Retries on 429/5xx/timeouts.")
    tune_poll_seconds: float = Field(
        default=10.0, gt=0, le=600,
        description="How often `bothbot tune follow` asks a hosted fine-tuning API about a job (openai backend).",
    )

    # --- conversation ---
    rag_default: bool = Field(default=True, description="Retrieval on for channels nobody has switched.")
    default_kbs: tuple[str, ...] = Field(default=("default",), description="Knowledge bases a channel searches.")
    history_max_turns: int = Field(default=10, ge=0, le=200, description="Turns of history kept per thread.")
    history_token_budget: int = Field(default=3000, ge=0, description="History tokens sent to the model.")
    history_ttl_seconds: int = Field(default=7 * 24 * 3600, ge=60, description="A thread idle this long is forgotten.")
    trace_ttl_seconds: int = Field(default=30 * 24 * 3600, ge=60, description="How long answer traces are kept.")
    dedup_ttl_seconds: int = Field(default=3600, ge=10, description="How long an event id is remembered.")
    max_question_chars: int = Field(default=12_000, ge=100, description="Longer messages are refused, politely.")
    rate_limit_user: int = Field(default=30, ge=0, description="Questions per user per window (0 = off).")
    rate_limit_channel: int = Field(default=120, ge=0, description="Questions per channel per window (0 = off).")
    rate_limit_window_seconds: int = Field(default=60, ge=1, description="Length of a rate-limit window.")
    audit_max_entries: int = Field(default=10_000, ge=10, description="Audit stream is trimmed to about this.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level (stderr).")

    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig, description="Retrieval tuning ([retrieval]).")

    # --- slack ---
    slack_bot_token: SecretStr | None = Field(
        default=None, validation_alias=_env("SLACK_BOT_TOKEN"), description="xoxb-… bot token."
    )
    slack_app_token: SecretStr | None = Field(
        default=None, validation_alias=_env("SLACK_APP_TOKEN"), description="xapp-… enables Socket Mode."
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None, validation_alias=_env("SLACK_SIGNING_SECRET"), description="HTTP mode: verifies requests."
    )
    slack_api_url: str = Field(
        default="https://slack.com/api/", validation_alias=_env("SLACK_API_URL"), description="Slack Web API base URL."
    )
    port: int = Field(default=3000, ge=0, le=65535, validation_alias=_env("PORT"), description="HTTP mode port.")
    slack_command: str = Field(default="/bothbot", description="Slash command name.")
    slack_admins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Slack user ids that are admins (env: comma-separated, U123,U456)."
    )
    slack_http_host: str = Field(default="0.0.0.0", description="HTTP mode: address to listen on.")
    slack_native_streaming: bool = Field(
        default=True, description="Try chat.startStream first; off = always post a placeholder and edit it."
    )
    slack_edit_interval_seconds: float = Field(
        default=1.0, ge=0.0, le=30.0, description="Least time between two edits/appends of a streamed answer."
    )
    slack_admin_cache_seconds: int = Field(
        default=300, ge=0, description="How long a users.info admin/owner answer is cached in Redis."
    )

    @field_validator("slack_admins", mode="before")
    @classmethod
    def _split_slack_admins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.replace(";", ",").split(",") if part.strip())
        return value

    @field_validator("slack_command")
    @classmethod
    def _valid_slack_command(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("/") or len(value) < 2 or " " in value:
            raise ValueError(f"slack_command={value!r} must look like /bothbot (a slash, then a name)")
        return value
    # --- end slack ---

    # --- discord ---
    discord_token: SecretStr | None = Field(
        default=None, validation_alias=_env("DISCORD_TOKEN"), description="Bot token."
    )
    discord_api_url: str = Field(
        default="https://discord.com/api/v10",
        validation_alias=_env("DISCORD_API_URL"),
        description="Discord REST API base URL.",
    )
    discord_gateway_url: str | None = Field(
        default=None,
        validation_alias=_env("DISCORD_GATEWAY_URL"),
        description="ws(s):// gateway; unset = the URL {DISCORD_API_URL}/gateway returns.",
    )
    discord_admin_roles: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="Role ids allowed to change settings (env: comma-separated, 123,456)."
    )
    discord_message_content: bool = Field(default=False, description="Use the privileged message-content intent.")
    discord_shard_count: int | None = Field(
        default=None, ge=1, description="Total shards across all processes; set = AutoShardedClient."
    )
    discord_shard_ids: Annotated[tuple[int, ...] | None, NoDecode] = Field(
        default=None, description="Shards this process runs, e.g. 0,1 (needs discord_shard_count); unset = all."
    )
    discord_edit_interval_seconds: float = Field(
        default=1.0, ge=0.0, le=10.0, description="Minimum time between edits of a streaming Discord reply."
    )
    discord_sync_commands: bool = Field(
        default=True, description="Register /bothbot with Discord at start-up (bulk overwrite, idempotent)."
    )
    discord_thread_archive_minutes: Literal[60, 1440, 4320, 10080] = Field(
        default=1440, description="Auto-archive time of the threads the bot opens for answers."
    )

    @field_validator("discord_admin_roles", mode="before")
    @classmethod
    def _split_discord_roles(cls, value: Any) -> Any:
        return cls._discord_split(value) if isinstance(value, str) else value

    @field_validator("discord_shard_ids", mode="before")
    @classmethod
    def _split_discord_shards(cls, value: Any) -> Any:
        return (cls._discord_split(value) or None) if isinstance(value, str) else value

    @staticmethod
    def _discord_split(value: str) -> tuple[str, ...]:
        """``"1, 2"``, ``"1;2"`` or ``"[1,2]"`` from an environment variable → ``("1", "2")``."""
        parts = (p.strip().strip("\"'") for p in value.strip().strip("[]").replace(";", ",").split(","))
        return tuple(p for p in parts if p)

    @field_validator("discord_gateway_url")
    @classmethod
    def _valid_discord_gateway(cls, value: str | None) -> str | None:
        return _check_url(value, "DISCORD_GATEWAY_URL", ("ws", "wss"))
    # --- end discord ---

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        init_kwargs: dict[str, Any] = getattr(init_settings, "init_kwargs", {})
        return (init_settings, env_settings, dotenv_settings, _TomlSource(settings_cls, init_kwargs))

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str | None) -> str | None:
        if value in (None, "", "memory://"):
            return None
        return _check_url(value, "REDIS_URL", ("redis", "rediss", "unix"))

    @field_validator("qdrant_url")
    @classmethod
    def _valid_qdrant_url(cls, value: str | None) -> str | None:
        if value == ":memory:":  # qdrant-client's in-process local mode: tests and experiments only
            return value
        return _check_url(value, "QDRANT_URL", ("http", "https"))

    @field_validator("openai_base_url")
    @classmethod
    def _valid_openai_url(cls, value: str | None) -> str | None:
        return _check_url(value, "OPENAI_BASE_URL", ("http", "https"))

    @field_validator("slack_api_url", "discord_api_url")
    @classmethod
    def _valid_platform_url(cls, value: str) -> str:
        checked = _check_url(value, "platform API URL", ("http", "https"))
        if checked is None:
            raise ValueError("the platform API URL must not be empty")
        return checked

    @model_validator(mode="after")
    def _resolve_profiles(self) -> Settings:
        if not self.profiles and (self.openai_api_key or self.openai_base_url):
            self.profiles = {IMPLICIT_PROFILE: ModelProfile(model=self.default_model)}
        self.profiles = {name: self.resolve_profile(name, profile) for name, profile in self.profiles.items()}
        if self.default_profile is None and self.profiles:
            self.default_profile = IMPLICIT_PROFILE if IMPLICIT_PROFILE in self.profiles else next(iter(self.profiles))
        if self.default_profile is not None and self.default_profile not in self.profiles:
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ValueError(
                f"default_profile={self.default_profile!r} is not a profile (known: {known}). "
                f"Add [profiles.{self.default_profile}] to bothbot.toml or set default_profile to one of them."
            )
        for key_name, channel in self.channels.items():
            if channel.profile is not None and channel.profile not in self.profiles:
                raise ValueError(
                    f"channels.{key_name}.profile={channel.profile!r} is not a profile. "
                    "Use one defined under [profiles]."
                )
        return self

    def resolve_profile(self, name: str, profile: ModelProfile) -> ModelProfile:
        """The profile with its key (``api_key_env``, else OPENAI_API_KEY) and endpoint filled in.

        Used for TOML profiles at start-up and for profiles registered in Redis when they are read.
        """
        key = profile.api_key
        if profile.api_key_env:
            raw = os.environ.get(profile.api_key_env)
            if not raw:
                raw = dotenv_values(".env").get(profile.api_key_env)
            if not raw:
                raise ValueError(
                    f"profiles.{name}.api_key_env names {profile.api_key_env}, which is not set. "
                    f"Set {profile.api_key_env} or remove api_key_env from the profile."
                )
            key = SecretStr(raw)
        return profile.model_copy(
            update={"api_key": key or self.openai_api_key, "base_url": profile.base_url or self.openai_base_url}
        )

    def retrieval_environment(self) -> RetrievalEnvironment:
        return RetrievalEnvironment(
            config=self.retrieval,
            data_dir=self.data_dir,
            qdrant_url=self.qdrant_url,
            qdrant_api_key=self.qdrant_api_key.get_secret_value() if self.qdrant_api_key else None,
            openai_base_url=self.openai_base_url,
            openai_api_key=self.openai_api_key.get_secret_value() if self.openai_api_key else None,
        )

    def secret_values(self) -> list[str]:
        """Every secret this process knows, for log redaction."""
        secrets = [
            self.openai_api_key,
            self.qdrant_api_key,
            self.slack_bot_token,
            self.slack_app_token,
            self.slack_signing_secret,
            self.discord_token,
            self.retrieval.embedding_api_key,
            *(p.api_key for p in self.profiles.values()),
        ]
        values = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        passwords = (url_password(u) for u in (self.redis_url, self.qdrant_url, self.openai_base_url))
        return values + [p for p in passwords if p]


def load_settings(**overrides: Any) -> Settings:
    """Build the settings tree or raise :class:`ConfigError` with a message naming the fix."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "settings"
            msg = err["msg"].removeprefix("Value error, ")
            lines.append(f"{loc}: {msg}")
        raise ConfigError("invalid settings:\n  " + "\n  ".join(lines)) from None
