"""Wiring: a bolt ``AsyncApp`` whose listeners turn Slack requests into engine calls.

Listeners ack at once (bolt acks Events API requests before they run; slash commands and button
clicks call ``ack()`` first) and do the work in tracked tasks, so Slack's 3-second limit is never
at risk and shutdown can wait for answers in flight.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import traceback
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

from slack_bolt.async_app import AsyncApp
from slack_bolt.authorization import AuthorizeResult
from slack_bolt.authorization.async_authorize import AsyncAuthorize
from slack_bolt.context.ack.async_ack import AsyncAck
from slack_bolt.context.async_context import AsyncBoltContext
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from adapters.base import RuntimePort
from adapters.common.inflight import InFlight
from adapters.common.memory import STORE_DOWN_ERRORS, ThreadRegistry, lookup
from adapters.common.texts import MEMORY_UNAVAILABLE
from adapters.slack.client import SlackCredentials, api_session, fetch_identity, make_web_client
from adapters.slack.commands import SlackInteractions
from adapters.slack.convert import FEEDBACK_ACTION_PREFIX, BotIdentity, classify_event
from adapters.slack.directory import AdminDirectory
from adapters.slack.render import SlackReplyRenderer, StreamSupport
from adapters.slack.settings import SlackSettings
from adapters.slack.sinks import ReplyTarget
from bot import messages as core_messages
from bot.messages import FinalAnswer, IncomingMessage
from bot.settings import Settings

log = logging.getLogger(__name__)


# --- bolt authorization without a second auth.test -----------------------------------------------


class KnownBot(AsyncAuthorize):
    """Bolt's authorization from what :func:`fetch_identity` found at start-up.

    Left to itself, bolt calls ``auth.test`` again on the first request and, when that fails (a
    server without it), answers every request with an error and runs no listener. The token was
    already checked at start, so each request is authorized with it directly.
    """

    def __init__(self, token: str, identity: BotIdentity) -> None:
        self.token = token
        self.identity = identity

    async def __call__(
        self,
        *,
        context: AsyncBoltContext,
        enterprise_id: str | None,
        team_id: str | None,
        user_id: str | None,
        actor_enterprise_id: str | None = None,
        actor_team_id: str | None = None,
        actor_user_id: str | None = None,
    ) -> AuthorizeResult:
        return AuthorizeResult(
            enterprise_id=enterprise_id,
            team_id=team_id or self.identity.team_id,
            bot_user_id=self.identity.user_id or None,
            bot_id=self.identity.bot_id,
            bot_token=self.token,
            user_id=user_id,
        )


class _DropTokenNotices(logging.Filter):
    """Bolt warns that a token it found in the environment, or on the client, goes unused: by
    design here (the token comes from the settings, authorization from :class:`KnownBot`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return "`token` will be unused" not in message and "will be ignored" not in message


@contextlib.contextmanager
def _without_token_notices(logger: logging.Logger) -> Iterator[None]:
    notices = _DropTokenNotices()
    logger.addFilter(notices)  # a filter, not a level: bolt copies the level into its child loggers
    try:
        yield
    finally:
        logger.removeFilter(notices)


_OWN_CODE = tuple(
    f"{folder}{os.sep}"
    for folder in (Path(__file__).resolve().parents[1], Path(core_messages.__file__).resolve().parent)
)
"""The adapters' and the core's folders: a frame there is our code."""


class _OneLineBoltErrors(logging.Filter):
    """An error inside bolt's own code (its middleware or payload parsing choking on a request of
    an odd shape, which only a signed request reaches) is logged as one line naming where, not as a
    traceback; an error that passes through our listeners keeps its traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if error is None:
            return True
        frames = traceback.extract_tb(error.__traceback__)
        if any(str(Path(frame.filename).resolve()).startswith(_OWN_CODE) for frame in frames):
            return True
        where = f" at {frames[-1].name} ({Path(frames[-1].filename).name}:{frames[-1].lineno})" if frames else ""
        record.msg, record.args = f"{record.getMessage()}: {type(error).__name__}{where}", None
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


_ONE_LINE_BOLT_ERRORS = _OneLineBoltErrors()


class QuietApp(AsyncApp):
    """bolt's ``AsyncApp``, except that a request no listener takes is acknowledged (200) with a
    debug line, where bolt answers 404 and logs the request's body at WARNING."""

    def _handle_unmatched_requests(self, req: AsyncBoltRequest, resp: BoltResponse) -> BoltResponse:
        kind = req.body.get("type") if isinstance(req.body, dict) else None
        log.debug("slack: acknowledged a request nothing handles (type %r)", kind if isinstance(kind, str) else None)
        return BoltResponse(status=200, body="")


# --- the bot ----------------------------------------------------------------------------------


class SlackBot:
    """The bolt app plus what it answers with. Build with :func:`build_slack_bot`."""

    def __init__(
        self,
        *,
        settings: Settings,
        runtime: RuntimePort,
        client: AsyncWebClient,
        identity: BotIdentity,
        signing_secret: str | None,
    ) -> None:
        self.settings = settings
        self.slack = slack = settings.platform(SlackSettings)
        self.signing_secret = signing_secret or ""
        self.runtime = runtime
        self.engine = runtime.engine
        state = runtime.state
        self.client = client
        self.identity = identity
        self.streams = StreamSupport(slack.slack_native_streaming)
        self.admins = AdminDirectory(
            client, state.redis, state.key, slack.slack_admins, slack.slack_admin_cache_seconds,
            compat=slack.slack_compat,
        )
        self.threads = ThreadRegistry(state, "slack", settings.history_ttl_seconds)
        self.inflight = InFlight("slack")  # the listeners ack at once; the work runs in these tasks
        bolt_log = logging.getLogger("slack_bolt")
        bolt_log.addFilter(_ONE_LINE_BOLT_ERRORS)  # its error handlers log through this very logger
        with _without_token_notices(bolt_log):
            self.app = QuietApp(
                name="bothbot",
                client=client,
                signing_secret=signing_secret or "",
                authorize=KnownBot(client.token or "", identity),
                process_before_response=False,
                logger=bolt_log,
                # HTTP mode checks signatures before bolt (``adapters.slack.signing``): bolt's own
                # check logs the raw body of every request that fails it. Socket Mode has none.
                request_verification_enabled=False,
            )
        self.app.event("app_mention")(self._on_event)
        self.app.event("message")(self._on_event)
        self.interactions = SlackInteractions(
            client=client, engine=self.engine, admins=self.admins, identity=identity, answer=self.answer
        )
        self.app.command(slack.slack_command)(self._on_command)
        self.app.action(re.compile(rf"^{FEEDBACK_ACTION_PREFIX}(up|down)$"))(self._on_feedback)
        # Everything else is acknowledged and dropped: bolt would answer it 404 (and leave a Socket
        # Mode envelope unacked), and Slack retries, then disables, subscriptions that fail.
        anything = re.compile(".*")
        self.app.event(anything)(self._on_other)
        self.app.command(anything)(self._on_other_command)
        self.app.action(anything)(self._on_other)
        self.app.shortcut(anything)(self._on_other)
        self.app.view(anything)(self._on_other)
        self.app.options(anything)(self._on_other)

    # --- task tracking -------------------------------------------------------------------

    def _spawn(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        self.inflight.spawn(coro, what)

    @property
    def in_flight(self) -> int:
        """Requests whose work has started and not finished."""
        return self.inflight.in_flight

    @property
    def processed(self) -> int:
        """Requests whose work is finished (answered, ignored or failed)."""
        return self.inflight.processed

    async def wait_processed(self, count: int, timeout: float = 10.0) -> None:
        """Wait until ``count`` requests in all have been fully handled (tests, health checks)."""
        await self.inflight.wait_processed(count, timeout)

    async def drain(self, timeout: float | None = None) -> None:
        """Wait until every answer in flight is done (tests); ``TimeoutError`` after ``timeout``."""
        await self.inflight.wait_idle(timeout)

    async def aclose(self, timeout: float = 10.0) -> None:
        """Finish the answers in flight (at most ``timeout`` seconds; then they are cancelled and
        awaited, so they unwind before the session and Redis go), then close the session."""
        await self.inflight.drain(timeout)
        if self.client.session is not None and not self.client.session.closed:
            await self.client.session.close()

    # --- events ---------------------------------------------------------------------------

    async def _on_event(self, body: dict[str, Any]) -> None:
        self._spawn(self._answer_event(body), "event")

    async def _answer_event(self, body: dict[str, Any]) -> None:
        decision = classify_event(body, self.identity)
        msg = decision.message
        if decision.route == "ignore" or msg is None:
            log.debug("slack: ignored event (%s)", decision.reason)
            return
        if decision.route == "followup":
            try:
                part_of = decision.parent_is_bot or (
                    msg.thread is not None and await self.threads.knows(msg.workspace, msg.channel, msg.thread)
                )
                if not part_of:
                    return
                channel = await lookup(self.engine.channel_settings(msg.channel_key), "channel settings")
            except STORE_DOWN_ERRORS as exc:
                await self._memory_down(msg, exc, told=decision.parent_is_bot)
                return
            if not channel.thread_followups:
                return
        await self.answer(msg)

    async def _memory_down(self, msg: IncomingMessage, exc: Exception, *, told: bool) -> None:
        """The state store could not say whether this thread reply is for the bot.

        Without it the bot can't tell whether it is part of the thread, so it answers only where
        the payload itself shows it is (``told``: the thread's parent is the bot's own post), with
        the short true message, since answering needs the store too (dedup, history). Elsewhere it
        stays silent, as for any thread it is not part of: telling every thread in every channel
        that the bot is down would be noise, and untrue where it was never asked. (The follow-up
        setting of the channel can't be read either; a thread the bot started is answered.)
        """
        if not told:
            log.info("slack: %s: can't tell whether I am part of thread %s; staying silent (%s)",
                     msg.event_id, msg.thread, exc)
            return
        log.warning("slack: cannot answer %s: the state store is unreachable: %s", msg.event_id, exc)
        target = ReplyTarget(channel=msg.channel, thread_ts=msg.thread, team=msg.workspace, user=msg.user)
        renderer = SlackReplyRenderer(self.client, target, streams=self.streams)
        await renderer.fail(MEMORY_UNAVAILABLE)  # best effort: a refusal by Slack is logged there

    async def _on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()  # first, within Slack's 3 seconds; the work follows in a task
        self._spawn(self.interactions.run_command(body), "slash command")

    async def _on_feedback(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        self._spawn(self.interactions.record_feedback(body), "feedback")

    async def _on_other(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack()
        log.debug("slack: acknowledged a request with no use here (%s)", body.get("type"))

    async def _on_other_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        await ack(text=f"I answer {self.slack.slack_command} — try `{self.slack.slack_command} help`.")

    async def answer(self, msg: IncomingMessage) -> FinalAnswer | None:
        """Run one message through the engine and render the reply in its channel/thread."""
        target = ReplyTarget(channel=msg.channel, thread_ts=msg.thread, team=msg.workspace, user=msg.user)

        async def remember_thread() -> None:
            if msg.thread and not msg.is_direct:
                await self.threads.remember(msg.workspace, msg.channel, msg.thread)

        renderer = SlackReplyRenderer(
            self.client,
            target,
            streams=self.streams,
            edit_interval=self.slack.slack_edit_interval_seconds,
            on_posted=remember_thread,
        )
        # aclosing: if Slack fails mid-answer, the engine's stream (and its model call) is closed now
        async with contextlib.aclosing(self.engine.handle(msg)) as events:
            return await renderer.answer(events, ref=msg.event_id)


async def build_slack_bot(
    runtime: RuntimePort,
    settings: Settings,
    *,
    credentials: SlackCredentials | None = None,
    client_factory: Callable[..., AsyncWebClient] = make_web_client,
) -> SlackBot:
    """A ready :class:`SlackBot` on a started runtime (calls ``auth.test`` once)."""
    creds = credentials or SlackCredentials.from_settings(settings)
    session = api_session()  # Web API calls and their 429s counted in the metrics
    slack = settings.platform(SlackSettings)
    client = client_factory(creds.bot_token, slack.slack_api_url, session=session, compat=slack.slack_compat)
    try:
        identity = await fetch_identity(client)
    except BaseException:
        await session.close()
        raise
    if identity.user_id:
        log.info("slack: signed in as bot user %s in workspace %s", identity.user_id, identity.team_id or "?")
    return SlackBot(
        settings=settings,
        runtime=runtime,
        client=client,
        identity=identity,
        signing_secret=creds.signing_secret,
    )


__all__ = [
    "SlackBot",
    "SlackCredentials",
    "build_slack_bot",
    "fetch_identity",
]
