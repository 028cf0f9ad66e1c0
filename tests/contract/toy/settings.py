"""The toy platform's block of settings."""

from __future__ import annotations

from pydantic import Field

from bot.settings import PlatformSettings


class ToySettings(PlatformSettings):
    toy_room: str = Field(default="main", description="Which in-process toy room to serve (tests only).")
