"""The Discord adapter: ``run_discord(settings)`` for ``bothbot discord``; see docs/discord.md.

Modules: ``convert`` (pure: Discord facts → IncomingMessage, command lines, custom ids),
``commands`` (the ``/bothbot`` group), ``render`` (live reply: throttled edits, splitting, sources),
``sinks`` (channel and interaction follow-up targets), ``memory`` (threads and reply chains in
Redis), ``handlers`` (what each event does), ``client`` (discord.py wiring and ``run_discord``).
"""
