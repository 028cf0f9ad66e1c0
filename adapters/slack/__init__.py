"""Slack adapter: bolt ``AsyncApp`` in Socket Mode or over the HTTP Events API.

``run_slack(settings)`` is what ``bothbot slack`` runs; ``build_slack_bot(runtime, settings)`` and
``start_http`` are the building blocks tests and other entry points use.
"""

from adapters.slack.app import SlackBot, build_slack_bot
from adapters.slack.client import SlackCredentials
from adapters.slack.server import build_http_app, run_slack, start_http, start_socket_mode

__all__ = [
    "SlackBot",
    "SlackCredentials",
    "build_http_app",
    "build_slack_bot",
    "run_slack",
    "start_http",
    "start_socket_mode",
]
