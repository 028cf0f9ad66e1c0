"""The one settings tree: environment, ``.env`` and an optional ``bothbot.toml``.

Built once in ``main()`` (or by a test) and passed down; nothing else reads ``os.environ``.
Priority, highest first: constructor arguments, environment, ``.env``, ``bothbot.toml``, defaults.
Standard names are read as they are (``OPENAI_API_KEY``, ``REDIS_URL``, ``SLACK_BOT_TOKEN`` …);
everything else is ``BOTHBOT_<FIELD>`` (nested: ``BOTHBOT_RETRIEVAL__TOP_K``).

Each platform declares its own block (``adapters/<name>/settings.py``, a :class:`PlatformSettings`)
and this module imports none of them: :meth:`Settings.platform` validates a platform's model from
the same sources (constructor arguments, environment, ``.env``, ``bothbot.toml``), once, and the
composition root (``bot/cli.py``) does that for every registered platform at start-up, so a bad
platform setting fails there, named, as any other setting does.
"""

from __future__ import annotations

import difflib
import os
import tomllib
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import Any, ClassVar, Literal, TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from retrieval.config import RetrievalConfig, RetrievalEnvironment

DEFAULT_CONFIG_FILE = "bothbot.toml"
IMPLICIT_PROFILE = "default"


class ConfigError(Exception):
    """Invalid configuration; the message names the setting and the fix."""


def env_alias(name: str, field: str | None = None) -> AliasChoices:
    """A field read from the standard variable ``name`` (``SLACK_BOT_TOKEN``) instead of ``BOTHBOT_<FIELD>``."""
    return AliasChoices(field or name.lower(), name)


def url_password(url: str | None) -> str | None:
    """The password inside ``scheme://user:password@host``, if any."""
    if not url or "://" not in url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:  # a malformed netloc ([ without ]): no password to find
        return None


def mask_url_password(url: str) -> str:
    """``url`` with its password as ``**********`` (the raw text of it, percent-encoded or not)."""
    if not url_password(url):
        return url
    scheme, rest = url.split("://", 1)
    netloc_end = min((i for i in (rest.find(c) for c in "/?#") if i >= 0), default=len(rest))
    netloc = rest[:netloc_end]
    userinfo, at, host = netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not at or not colon:
        return url
    return f"{scheme}://{user}:**********@{host}{rest[netloc_end:]}"


def split_env_list(value: str) -> tuple[str, ...]:
    """A list from an environment variable: ``"1, 2"``, ``"1;2"`` or ``"[1,2]"`` → ``("1", "2")``."""
    parts = (p.strip().strip("\"'") for p in value.strip().strip("[]").replace(";", ",").split(","))
    return tuple(p for p in parts if p)


def check_url(value: str | None, setting: str, schemes: tuple[str, ...]) -> str | None:
    """``value`` if it is a URL with one of ``schemes`` (empty → None), else an error naming ``setting``."""
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
        return check_url(value, "base_url", ("http", "https"))


class ChannelDefaults(BaseModel):
    """Defaults for one channel (key ``platform:workspace:channel``) before any admin changes them.

    Besides the core's fields, a platform may declare settings of its channels
    (:attr:`PlatformSettings.channel_options`, e.g. Discord's ``reply_mode``); they are kept in
    :attr:`options` and checked against the declarations by :meth:`Settings.check_channel_options`.
    """

    model_config = ConfigDict(extra="allow", frozen=True)

    profile: str | None = None
    rag: bool | None = None
    kbs: tuple[str, ...] | None = None
    thread_followups: bool | None = Field(
        default=None, description="Answer follow-ups in a thread the bot is part of without a new mention."
    )

    @model_validator(mode="after")
    def _options_are_words(self) -> ChannelDefaults:
        for name, value in (self.model_extra or {}).items():
            if not isinstance(value, str):
                raise ValueError(f"{name}={value!r}: a platform's channel setting is one word (reply_mode = 'reply')")
        return self

    @property
    def options(self) -> dict[str, str]:
        """The platform-declared settings given for this channel (``reply_mode = "reply"``)."""
        return {name: str(value) for name, value in (self.model_extra or {}).items()}


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


class SettingsBase(BaseSettings):
    """The sources every settings model reads, in priority order: see the module docstring."""

    model_config = SettingsConfigDict(
        env_prefix="BOTHBOT_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
        populate_by_name=True,
        validate_default=True,
    )

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


P = TypeVar("P", bound="PlatformSettings")


class PlatformSettings(SettingsBase):
    """One platform's block of settings (``adapters/<name>/settings.py``); same sources as :class:`Settings`.

    Field names are the platform's top-level names (``slack_bot_token``, ``discord_token``), so the
    environment variables, ``bothbot.toml`` keys, ``bothbot config`` output and
    ``load_settings(**overrides)`` arguments are exactly those of the time the core declared them.
    """

    channel_options: ClassVar[Mapping[str, tuple[str, ...]]] = MappingProxyType({})
    """Settings this platform adds to its channels: name → allowed values, the first the default
    (``[channels."discord:…"] reply_mode = "reply"``, written by a platform command too)."""

    def secret_values(self) -> list[str]:
        """This platform's secrets (every ``SecretStr`` field that is set), for log redaction."""
        values = (getattr(self, name) for name in type(self).model_fields)
        return [v.get_secret_value() for v in values if isinstance(v, SecretStr) and v.get_secret_value()]


class Settings(SettingsBase):
    """Every setting of a bothbot process. See the README's settings table.

    A platform's own block: ``settings.platform(SlackSettings)`` (see :class:`PlatformSettings`).
    """

    _inputs: dict[str, Any] = PrivateAttr(default_factory=dict)
    _platforms: dict[type[PlatformSettings], PlatformSettings] = PrivateAttr(default_factory=dict)

    def __init__(self, **values: Any) -> None:
        super().__init__(**values)
        self._inputs = dict(values)  # platform models read the same constructor arguments

    # --- where things live ---
    config_file: str | None = Field(
        default=None,
        validation_alias=env_alias("BOTHBOT_CONFIG", "config_file"),
        description="Path of bothbot.toml (default: ./bothbot.toml if present).",
    )
    data_dir: Path = Field(default=Path(".bothbot"), description="Embedded knowledge base and local state.")
    redis_url: str | None = Field(
        default=None,
        validation_alias=env_alias("REDIS_URL"),
        description="redis://… for any real deployment (redis+cluster://node:port for a Redis Cluster, "
        "redis+sentinel://sentinel:26379/SERVICE for Sentinel); "
        "unset = in-process state (lost at exit).",
    )
    redis_prefix: str = Field(default="bothbot", min_length=1, description="Prefix of every Redis key.")
    qdrant_url: str | None = Field(
        default=None, validation_alias=env_alias("QDRANT_URL"), description="Qdrant server; unset = embedded engine."
    )
    qdrant_api_key: SecretStr | None = Field(
        default=None, validation_alias=env_alias("QDRANT_API_KEY"), description="API key of the Qdrant server."
    )

    # --- models ---
    openai_api_key: SecretStr | None = Field(
        default=None, validation_alias=env_alias("OPENAI_API_KEY"), description="Default key of every profile."
    )
    openai_base_url: str | None = Field(
        default=None, validation_alias=env_alias("OPENAI_BASE_URL"), description="Any OpenAI-compatible endpoint."
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
    answer_deadline_seconds: float = Field(
        default=45.0, gt=0, le=600,
        description="Total time one answer's model call may take, every retry included; then the user is told.",
    )
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
    event_lease_seconds: float = Field(
        default=20.0, ge=0.5, le=300,
        description="An event being answered is claimed this long, renewed while the answer runs; "
        "a replica that dies frees it for the platform's retry when it runs out.",
    )
    max_question_chars: int = Field(default=12_000, ge=100, description="Longer messages are refused, politely.")
    rate_limit_user: int = Field(default=30, ge=0, description="Questions per user per window (0 = off).")
    rate_limit_channel: int = Field(default=120, ge=0, description="Questions per channel per window (0 = off).")
    rate_limit_window_seconds: int = Field(default=60, ge=1, description="Length of a rate-limit window.")
    audit_max_entries: int = Field(default=10_000, ge=10, description="Audit stream is trimmed to about this.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(default="INFO", description="Log level (stderr).")
    log_format: Literal["text", "json"] = Field(
        default="text",
        description="Log lines on stderr: text, or json (one object a line: time, level, logger, message, trace_id).",
    )
    health_port: int | None = Field(
        default=None, ge=0, le=65535,
        description="Port of /healthz, /readyz and /metrics for every platform (Socket Mode, Discord); "
        "unset = off (Slack HTTP mode serves them on PORT anyway); 0 = any free port (logged).",
    )
    health_host: str = Field(default="0.0.0.0", description="Address the health port listens on.")

    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig, description="Retrieval tuning ([retrieval]).")


    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_log_level(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("log_format", mode="before")
    @classmethod
    def _lower_log_format(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("health_port", mode="before")
    @classmethod
    def _empty_health_port(cls, value: object) -> object:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("redis_url")
    @classmethod
    def _valid_redis_url(cls, value: str | None) -> str | None:
        if value in (None, "", "memory://"):
            return None
        return check_url(value, "REDIS_URL", (
            "redis", "rediss", "unix", "redis+cluster", "rediss+cluster", "redis+sentinel", "rediss+sentinel"
        ))

    @field_validator("qdrant_url")
    @classmethod
    def _valid_qdrant_url(cls, value: str | None) -> str | None:
        if value == ":memory:":  # qdrant-client's in-process local mode: tests and experiments only
            return value
        return check_url(value, "QDRANT_URL", ("http", "https"))

    @field_validator("openai_base_url")
    @classmethod
    def _valid_openai_url(cls, value: str | None) -> str | None:
        return check_url(value, "OPENAI_BASE_URL", ("http", "https"))

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

    def platform(self, model: type[P]) -> P:
        """The platform block ``model`` validated from this tree's sources (once; then cached).

        Raises :class:`ConfigError` naming the setting, as :func:`load_settings` does.
        """
        found = self._platforms.get(model)
        if not isinstance(found, model):
            try:
                found = model(**self._inputs)
            except ValidationError as exc:
                raise _config_error(exc) from None
            self._platforms[model] = found
        return found

    def check_channel_options(self, platforms: Mapping[str, type[PlatformSettings]]) -> None:
        """Every ``[channels."platform:…"]`` key is the core's or one its platform declares, with an
        allowed value (``platforms``: name → settings model, from the registry).

        The composition root calls this at start-up: a misspelt key, or another platform's setting,
        then fails there, named, instead of being ignored.
        """
        core = list(ChannelDefaults.model_fields)
        for key, channel in self.channels.items():
            platform = key.split(":", 1)[0]
            model = platforms.get(platform)
            declared = model.channel_options if model is not None else {}
            for name, value in channel.options.items():
                allowed = declared.get(name)
                if allowed is None:
                    known = ", ".join([*core, *declared])
                    problem = f"not a setting of {platform} channels (known: {known})"
                elif value not in allowed:
                    problem = f"{value!r} is not one of {', '.join(allowed)}"
                else:
                    continue
                raise ConfigError(f"invalid settings:\n  channels.{key}.{name}: {problem}")

    def check_toml_keys(self, platforms: Mapping[str, type[PlatformSettings]]) -> None:
        """Every top-level key of ``bothbot.toml`` is a setting of the core or of a registered platform.

        The composition root calls this at start-up, so a typo (``defualt_profile``) fails there,
        named, with the closest known key, instead of being ignored.
        """
        if not self.config_file:
            return
        path = Path(self.config_file)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
            return  # the source reported it already, or the file went away since
        known = set(_field_names(type(self)))
        for model in platforms.values():
            known.update(_field_names(model))
        unknown = sorted(key for key in data if key not in known)
        if not unknown:
            return
        lines = []
        for key in unknown:
            close = difflib.get_close_matches(key, sorted(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}?" if close else "remove it or check the README's settings table"
            lines.append(f"{key}: not a setting ({hint})")
        raise ConfigError(f"{path}: unknown key(s):\n  " + "\n  ".join(lines))

    @property
    def platforms(self) -> tuple[PlatformSettings, ...]:
        """The platform blocks validated so far (the composition root validates every registered one)."""
        return tuple(self._platforms.values())

    def secret_values(self) -> list[str]:
        """Every secret this process knows, for log redaction (platform blocks included)."""
        secrets = [
            self.openai_api_key,
            self.qdrant_api_key,
            self.retrieval.embedding_api_key,
            *(p.api_key for p in self.profiles.values()),
        ]
        values = [s.get_secret_value() for s in secrets if s is not None and s.get_secret_value()]
        urls = [self.redis_url, self.qdrant_url, self.openai_base_url, *(p.base_url for p in self.profiles.values())]
        passwords = dict.fromkeys(url_password(u) for u in urls)
        platforms = [value for block in self._platforms.values() for value in block.secret_values()]
        return values + [p for p in passwords if p] + platforms


def _field_names(model: type[BaseSettings]) -> list[str]:
    """The names a settings model reads from ``bothbot.toml``: its fields (and their lower-case aliases)."""
    names: list[str] = []
    for name, info in model.model_fields.items():
        names.append(name)
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.extend(a for a in alias.choices if isinstance(a, str) and a.islower())
    return names


def load_settings(**overrides: Any) -> Settings:
    """Build the settings tree or raise :class:`ConfigError` with a message naming the fix."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise _config_error(exc) from None


def _config_error(exc: ValidationError) -> ConfigError:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "settings"
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}")
    return ConfigError("invalid settings:\n  " + "\n  ".join(lines))
