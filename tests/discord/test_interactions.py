"""Slash commands and feedback buttons: INTERACTION_CREATE in, callbacks and follow-ups out."""

from __future__ import annotations

from tests.conftest import TUNED_MODEL
from tests.discord.conftest import StartBot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI

DEFERRED_CHANNEL_MESSAGE = 5
EPHEMERAL = 1 << 6


async def _answered(fake: FakeDiscord, interaction: dict[str, object]) -> str:
    [followup] = await fake.wait_for(lambda: fake.followups_for(interaction))
    return followup.content


async def test_a_command_is_deferred_and_answered_privately(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    # Who may switch a channel's model, and that only that channel changes: tests/contract.
    await start_bot()
    admin = discord_fake.new_user("ada")

    command = await discord_fake.slash(admin, "model", "tuned", channel_id=discord_fake.general["id"], admin=True)

    text = await _answered(discord_fake, command)
    assert "now uses profile `tuned`" in text
    [callback] = discord_fake.callbacks_for(command)
    assert callback["type"] == DEFERRED_CHANNEL_MESSAGE
    assert callback["data"]["flags"] & EPHEMERAL
    assert discord_fake.followups_for(command)[0].payload["flags"] & EPHEMERAL


async def test_configured_admin_role_may_switch_the_model(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot(discord_admin_roles=(discord_fake.admin_role_id,))
    carol = discord_fake.new_user("carol")

    command = await discord_fake.slash(carol, "model", "tuned", admin=False, roles=[discord_fake.admin_role_id])

    assert "now uses profile `tuned`" in await _answered(discord_fake, command)


async def test_ask_is_deferred_then_answered_in_a_public_follow_up(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    openai_server.reply_text = "Deferred, then answered."
    await start_bot()
    alice = discord_fake.new_user("alice")

    command = await discord_fake.slash(alice, "ask", "what happens?", option="question")

    followup = await discord_fake.wait_for(
        lambda: [m for m in discord_fake.followups_for(command) if m.payload["components"]]
    )
    assert followup[0].content == "Deferred, then answered."
    [callback] = discord_fake.callbacks_for(command)
    assert callback["type"] == DEFERRED_CHANNEL_MESSAGE
    assert not (callback.get("data") or {}).get("flags", 0) & EPHEMERAL
    # the callback (ack) came before any follow-up
    paths = [r.path for r in discord_fake.requests if command["token"] in r.path]
    assert paths[0].endswith("/callback")


async def test_feedback_click_is_stored_against_the_trace(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot()
    alice = discord_fake.new_user("alice")
    question = await discord_fake.send_message(alice, "rate me", mention_bot=True)
    [answer] = await discord_fake.wait_for(lambda: discord_fake.answers(question["id"]))
    up = answer.payload["components"][0]["components"][0]["custom_id"]
    trace_id = up.rsplit(":", 1)[1]

    click = await discord_fake.click(alice, answer, up)

    [callback] = await discord_fake.wait_for(lambda: discord_fake.callbacks_for(click))
    assert callback["type"] == 4
    assert callback["data"]["flags"] & EPHEMERAL
    assert "recorded" in callback["data"]["content"]
    trace = await bot.runtime.state.load_trace(trace_id)
    assert trace is not None
    stored = await bot.runtime.state.redis.hgetall(bot.runtime.state.key("trace", trace_id))
    assert any(f"discord:{alice['id']}" in k or f"discord:{alice['id']}" in v for k, v in stored.items())


async def test_feedback_click_after_a_restart_is_still_understood(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    first = await start_bot()
    alice = discord_fake.new_user("alice")
    question = await discord_fake.send_message(alice, "rate me later", mention_bot=True)
    [answer] = await discord_fake.wait_for(lambda: discord_fake.answers(question["id"]))
    await first.client.close()
    await first.runtime.aclose()
    await start_bot()  # a new process: no view was ever registered in this client

    down = answer.payload["components"][0]["components"][1]["custom_id"]
    click = await discord_fake.click(alice, answer, down)

    [callback] = await discord_fake.wait_for(lambda: discord_fake.callbacks_for(click))
    assert "recorded" in callback["data"]["content"]


async def test_commands_are_registered_as_one_group(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot()
    [group] = await discord_fake.wait_for(lambda: discord_fake.commands)  # registered in the background
    assert group["name"] == "bothbot"
    subcommands = {o["name"] for o in group["options"]}
    assert {"model", "models", "rag", "kb", "reset", "status", "audit", "ask", "help"} <= subcommands
    assert group.get("default_member_permissions") is None  # the bot enforces the admin check itself


async def test_admin_command_in_a_thread_changes_the_parent_channel(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot()
    alice = discord_fake.new_user("alice")
    admin = discord_fake.new_user("ada")
    question = await discord_fake.send_message(alice, "first", mention_bot=True)
    thread_id = question["id"]
    await discord_fake.wait_for(lambda: discord_fake.answers(thread_id))

    command = await discord_fake.slash(admin, "model", "tuned", channel_id=thread_id, admin=True)
    assert "now uses profile `tuned`" in await _answered(discord_fake, command)
    again = await discord_fake.send_message(alice, "top level again", mention_bot=True)

    await discord_fake.wait_for(lambda: discord_fake.answers(again["id"]))
    assert openai_server.chat_requests[-1].body["model"] == TUNED_MODEL


async def test_non_admin_may_read_but_not_change(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot()
    mallory = discord_fake.new_user("mallory")

    refused = await discord_fake.slash(mallory, "rag", "off", option="state")
    status = await discord_fake.slash(mallory, "status")

    assert "Only an admin" in await _answered(discord_fake, refused)
    assert "`base`" in await _answered(discord_fake, status)
    key = f"discord:{discord_fake.guild_id}:{discord_fake.general['id']}"
    assert await bot.runtime.state.channel_overrides(key) == {}


async def test_an_interaction_delivered_twice_is_answered_once(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot()
    alice = discord_fake.new_user("alice")
    command = await discord_fake.slash(alice, "help")
    await discord_fake.dispatch("INTERACTION_CREATE", command)

    text = await _answered(discord_fake, command)
    marker = await discord_fake.slash(alice, "models")
    await _answered(discord_fake, marker)

    assert "Commands:" in text
    assert len(discord_fake.followups_for(command)) == 1
    # claimed before it is acknowledged: the second delivery is not even acknowledged again
    assert len(discord_fake.requests_to("POST", rf"/interactions/{command['id']}/.+/callback")) == 1
    assert len(discord_fake.callbacks_for(command)) == 1


async def test_profile_option_autocompletes_from_the_configured_profiles(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot()
    data = {
        "id": "1",
        "name": "bothbot",
        "type": 1,
        "options": [
            {"name": "model", "type": 1, "options": [{"name": "profile", "type": 3, "value": "tu", "focused": True}]}
        ],
    }
    interaction = await discord_fake.send_interaction(kind=4, data=data, author=discord_fake.new_user("a"))

    [callback] = await discord_fake.wait_for(lambda: discord_fake.callbacks_for(interaction))
    assert callback["type"] == 8
    assert callback["data"]["choices"] == [{"name": "tuned", "value": "tuned"}]


async def test_command_is_answered_even_if_the_acknowledgement_has_no_body(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    """A server that ignores ``?with_response`` (204, no body) still gets its follow-up."""
    discord_fake.bare_callbacks = True
    await start_bot()

    command = await discord_fake.slash(discord_fake.new_user("ada"), "model", "tuned", admin=True)

    assert "now uses profile `tuned`" in await _answered(discord_fake, command)


async def test_unknown_subcommand_gets_a_short_answer(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot()

    command = await discord_fake.slash(discord_fake.new_user("alice"), "frobnicate")

    [callback] = await discord_fake.wait_for(lambda: discord_fake.callbacks_for(command))
    assert callback["type"] == 4
    assert callback["data"]["flags"] & EPHEMERAL
    assert "/bothbot help" in callback["data"]["content"]


async def test_commands_in_a_dm_work_but_never_change_settings(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot()
    bob = discord_fake.new_user("bob")

    status = await discord_fake.slash(bob, "status", dm=True)
    switch = await discord_fake.slash(bob, "model", "tuned", dm=True)

    assert f"discord:@me:{bob['id']}0" in await _answered(discord_fake, status)
    assert "Only an admin" in await _answered(discord_fake, switch)
