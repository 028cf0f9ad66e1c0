"""The Discord adapter (``bothbot discord``); see docs/discord.md.

Light on purpose (the registry imports it to read ``SUMMARY`` and ``SETTINGS``). Modules:
``settings`` (the Discord block of the settings), ``convert`` (pure: Discord facts →
IncomingMessage, slash commands → command lines, custom ids), ``payloads`` (pure: sparse gateway
events completed with Discord's defaults), ``commands`` (the ``/bothbot`` group as registered),
``render`` (live reply: throttled edits, splitting, sources), ``sinks`` (channel and interaction
follow-up targets, 429s), ``memory`` (threads and reply chains in Redis), ``handlers`` (what each
event does), ``client`` (discord.py wiring, ``run_discord`` and ``stop_discord``), ``platform``
(``PLATFORM``: check and serve, for ``adapters.serve``).
"""

from adapters.discord.settings import DiscordSettings

SUMMARY = "run the Discord adapter"
SETTINGS = DiscordSettings
PAYLOAD_LOGGERS = ("discord.gateway", "discord.http", "discord.webhook")  # at DEBUG: message text, tokens, webhook URLs

__all__ = ["PAYLOAD_LOGGERS", "SETTINGS", "SUMMARY", "DiscordSettings"]
