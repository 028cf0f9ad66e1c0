"""Slack adapter: bolt ``AsyncApp`` in Socket Mode or over the HTTP Events API; see docs/slack.md.

Light on purpose (the registry imports it to read ``SUMMARY`` and ``SETTINGS``). Modules:
``settings`` (the Slack block of the settings), ``client`` (tokens, Web API client, identity),
``convert`` (pure: payload → IncomingMessage), ``app`` (the bolt app and its listeners),
``commands`` (``/bothbot`` and feedback), ``render``/``sinks``/``blocks``/``mrkdwn`` (live
replies), ``directory`` (admins, threads), ``server`` (HTTP and Socket Mode, ``run_slack``),
``platform`` (``PLATFORM``: check and serve, for ``adapters.serve``).
"""

from adapters.slack.settings import SlackSettings

SUMMARY = "run the Slack adapter (Socket Mode with SLACK_APP_TOKEN, else HTTP)"
SETTINGS = SlackSettings
PAYLOAD_LOGGERS = ("slack_sdk", "slack_bolt")  # at DEBUG: message text, tokens, webhook URLs

__all__ = ["PAYLOAD_LOGGERS", "SETTINGS", "SUMMARY", "SlackSettings"]
