"""Opt-in tolerance of Slack-compatible servers that are not Slack (``BOTHBOT_SLACK_COMPAT``).

Off by default: against Slack the adapter uses slack_sdk's and bolt's public API only. Switched
on (it only changes the clients the adapter builds; nothing is patched process-wide):

- :class:`LenientWebClient`: every failure of a Web API call becomes a :class:`SlackApiError`
  carrying an error code, whatever the server answered — ``text/plain``, an HTML page, no body
  (slack-sdk would hand back a ``str`` body, whose ``.get()`` raises ``AttributeError``);
- :func:`users_info`: a server (or proxy) that rejects ``users.info`` as a GET (404/405) is asked
  again with a form POST, which every Web API method accepts.
"""

from __future__ import annotations

from typing import Any

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse


class LenientWebClient(AsyncWebClient):
    """``AsyncWebClient`` whose every failure is a :class:`SlackApiError` carrying an error code.

    Slack always answers JSON, but a server standing in for it (a test double, a proxy, a route that
    doesn't exist) may answer ``text/plain``, HTML or no body at all. Each of those becomes
    ``{"ok": false, "error": "http_<status>"}`` (``"invalid_response"`` for a 200), so callers see
    one kind of failure with a readable code (see ``client.slack_error``). This overrides
    slack-sdk's ``_request``, which is why it is compat only.
    """

    async def _request(self, *, http_verb: str, api_url: str, req_args: dict[str, Any]) -> dict[str, Any]:
        try:
            response: dict[str, Any] = await super()._request(http_verb=http_verb, api_url=api_url, req_args=req_args)
        except SlackApiError as exc:  # a body that claimed to be JSON and wasn't
            status = int(getattr(exc.response, "status", 0) or 0)
            return {"data": _error_body(status), "headers": {}, "status_code": status}
        data = response.get("data")
        if isinstance(data, bytes) or (isinstance(data, dict) and data):
            return response
        return {**response, "data": _error_body(int(response.get("status_code") or 0))}


def _error_body(status: int) -> dict[str, Any]:
    return {"ok": False, "error": "invalid_response" if status in (0, 200) else f"http_{status}"}


async def users_info(client: AsyncWebClient, user: str) -> AsyncSlackResponse:
    """``users.info`` as slack-sdk sends it (GET), then once more as a form POST after a 404/405."""
    try:
        return await client.users_info(user=user)
    except SlackApiError as exc:
        if exc.response.status_code not in (404, 405):
            raise
    return await client.api_call("users.info", http_verb="POST", data={"user": user})
