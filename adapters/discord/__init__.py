"""The Discord adapter: ``run_discord(settings)`` for ``bothbot discord``; see docs/discord.md.

Modules: ``convert`` (pure: Discord facts → IncomingMessage, slash commands → command lines,
custom ids), ``payloads`` (pure: sparse gateway events completed with Discord's defaults),
``commands`` (the ``/bothbot`` group as registered), ``render`` (live reply: throttled edits,
splitting, sources), ``sinks`` (channel and interaction follow-up targets, 429s), ``memory``
(threads and reply chains in Redis), ``handlers`` (what each event does), ``client`` (discord.py
wiring, ``run_discord`` and ``stop_discord``).
"""
