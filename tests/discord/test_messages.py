"""Mentions, DMs, follow-ups, streaming and splitting, against a real discord.Client and the Discord fake."""

from __future__ import annotations

from typing import cast

from retrieval.documents import Document
from retrieval.factory import RetrievalService
from tests.discord.conftest import StartBot
from tests.fakes.discord_server import FakeDiscord
from tests.fakes.openai_server import FakeOpenAI


def answer_of(fake: FakeDiscord, channel_id: str) -> str:
    return "".join(m.content for m in fake.bot_messages(channel_id))


async def test_mention_opens_a_thread_and_streams_by_editing(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    openai_server.reply_text = "Laptops are requested in the IT portal, under Hardware."
    openai_server.chunks_per_reply = 6
    await start_bot()
    alice = discord_fake.new_user("alice")

    question = await discord_fake.send_message(alice, "how do I get a laptop?", mention_bot=True)

    thread_id = question["id"]  # a thread started from a message has the message's id
    final = await discord_fake.wait_for(lambda: discord_fake.answers(thread_id))
    [reply] = final
    assert reply.content == "Laptops are requested in the IT portal, under Hardware."
    assert len(reply.versions) >= 2, "the placeholder is edited, not reposted"
    assert reply.versions[0]["content"].startswith("-# ")  # status line first
    for version in reply.versions:  # every state shown is a status line or a prefix of the answer
        assert version["content"].startswith("-# ") or reply.content.startswith(version["content"].strip())
    buttons = reply.payload["components"][0]["components"]
    assert [b["custom_id"].split(":")[2] for b in buttons] == ["up", "down"]
    [thread_call] = discord_fake.requests_to("POST", rf"/channels/{discord_fake.general['id']}/messages/\d+/threads")
    assert thread_call.body["name"] == "how do I get a laptop?"
    assert discord_fake.bot_messages(discord_fake.general["id"]) == []  # nothing posted in the channel
    [chat] = openai_server.chat_requests
    assert chat.body["model"] == "base-model"
    assert chat.body["messages"][-1]["content"].endswith("how do I get a laptop?")
    assert "<@" not in chat.body["messages"][-1]["content"]


async def test_follow_up_in_the_bots_thread_is_answered_with_history(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot(discord_message_content=True)
    alice = discord_fake.new_user("alice")
    question = await discord_fake.send_message(alice, "first question", mention_bot=True)
    thread_id = question["id"]
    await discord_fake.wait_for(lambda: discord_fake.answers(thread_id))

    await discord_fake.send_message(alice, "and a follow-up, no mention", channel_id=thread_id)

    await discord_fake.wait_for(lambda: len(discord_fake.answers(thread_id)) == 2)
    second = openai_server.chat_requests[1].body["messages"]
    contents = [m["content"] for m in second]
    assert any("first question" in c for c in contents), "the thread's history reaches the model"
    assert contents[-1].endswith("and a follow-up, no mention")


async def test_reply_mode_answers_as_a_reply(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    general = discord_fake.general["id"]
    await start_bot(channels={f"discord:{discord_fake.guild_id}:{general}": {"reply_mode": "reply"}})
    alice = discord_fake.new_user("alice")

    question = await discord_fake.send_message(alice, "reply to me", mention_bot=True)

    [reply] = await discord_fake.wait_for(lambda: discord_fake.answers(general))
    assert reply.payload["message_reference"]["message_id"] == question["id"]
    assert discord_fake.requests_to("POST", r"/channels/\d+/messages/\d+/threads") == []
    create = discord_fake.requests_to("POST", rf"/channels/{general}/messages")[0]
    assert create.body["allowed_mentions"]["parse"] == []


async def test_direct_message_is_answered_in_the_dm(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    openai_server.reply_text = "Hello in private."
    await start_bot()
    bob = discord_fake.new_user("bob")

    dm = await discord_fake.send_message(bob, "hi there", dm=True)

    [reply] = await discord_fake.wait_for(lambda: discord_fake.answers(dm["channel_id"]))
    assert reply.content == "Hello in private."
    assert "guild_id" not in reply.payload


async def test_messages_not_for_the_bot_and_its_own_messages_are_ignored(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    bot = await start_bot()
    alice = discord_fake.new_user("alice")
    other_bot = discord_fake.new_user("otherbot")
    other_bot["bot"] = True
    general = discord_fake.general["id"]

    # the fake echoes every message the bot posts back as MESSAGE_CREATE, as Discord does
    await bot.client.get_partial_messageable(int(general)).send(f"<@{discord_fake.application_id}> my own words")
    await discord_fake.send_message(other_bot, "a bot mentioning bothbot", mention_bot=True)
    await discord_fake.send_message(alice, "chatting without a mention")
    await discord_fake.send_message(alice, "hidden content", content_visible=False)
    marker = await discord_fake.send_message(alice, "now a real question", mention_bot=True)

    await discord_fake.wait_for(lambda: discord_fake.answers(marker["id"]))
    assert len(openai_server.chat_requests) == 1
    assert openai_server.chat_requests[0].body["messages"][-1]["content"].endswith("now a real question")
    assert len(discord_fake.requests_to("POST", r"/channels/\d+/messages/\d+/threads")) == 1


async def test_long_answer_is_split_into_messages_under_2000_characters(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    paragraph = "word " * 99 + "end.\n\n"  # 500 characters
    long_answer = (paragraph * 10).strip()  # about 5,000 characters
    openai_server.reply_text = long_answer
    openai_server.chunks_per_reply = 40
    await start_bot()
    alice = discord_fake.new_user("alice")

    question = await discord_fake.send_message(alice, "tell me everything", mention_bot=True)

    thread_id = question["id"]
    await discord_fake.wait_for(lambda: discord_fake.answers(thread_id))
    messages = discord_fake.bot_messages(thread_id)
    assert len(messages) >= 3
    assert all(len(m.content) <= 2000 for m in messages)
    assert all(len(v.get("content") or "") <= 2000 for m in messages for v in m.versions)
    assert "\n\n".join(m.content.strip() for m in messages) == long_answer
    assert [bool(m.payload["components"]) for m in messages] == [False] * (len(messages) - 1) + [True]


async def test_citations_are_listed_with_links(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    openai_server.reply_text = "Open a ticket in the IT portal [1]."
    bot = await start_bot(rag_default=True)
    knowledge = cast(RetrievalService, bot.runtime.knowledge)
    await knowledge.ingest_documents(
        [
            Document(
                source="laptops.md",
                title="Laptops",
                text="# Laptops\n\nTo request a laptop, open a ticket in the IT portal under Hardware.",
                format="markdown",
                url="https://wiki.example.com/laptops",
            )
        ]
    )
    alice = discord_fake.new_user("alice")

    question = await discord_fake.send_message(alice, "how do I request a laptop?", mention_bot=True)

    [reply] = await discord_fake.wait_for(lambda: discord_fake.answers(question["id"]))
    answer, sources = reply.content.split("\n-# Sources: ")
    assert answer == "Open a ticket in the IT portal [1]."
    assert sources.startswith("[1] [Laptops")
    assert "(<https://wiki.example.com/laptops>)" in sources


async def test_failed_model_call_gives_a_short_true_message(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot()
    openai_server.fail_next(500)
    alice = discord_fake.new_user("alice")

    question = await discord_fake.send_message(alice, "will this work?", mention_bot=True)

    [reply] = await discord_fake.wait_for(lambda: discord_fake.answers(question["id"]))
    assert reply.content.startswith("Sorry, I couldn't get an answer")
    assert len(reply.content) < 300


async def test_mention_in_a_channel_the_cache_does_not_know_is_answered_in_a_thread(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot()
    late = discord_fake.add_channel("created-later")
    alice = discord_fake.new_user("alice")

    question = await discord_fake.send_message(alice, "new channel?", channel_id=late["id"], mention_bot=True)

    [reply] = await discord_fake.wait_for(lambda: discord_fake.answers(question["id"]))
    assert reply.content == "The answer is in the docs [1]."
    assert discord_fake.channels[question["id"]]["parent_id"] == late["id"]


async def test_thread_follow_up_without_content_intent_is_skipped(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot()  # no message-content intent: Discord sends unaddressed messages without content
    alice = discord_fake.new_user("alice")
    question = await discord_fake.send_message(alice, "first", mention_bot=True)
    thread_id = question["id"]
    await discord_fake.wait_for(lambda: discord_fake.answers(thread_id))

    await discord_fake.send_message(alice, "invisible follow-up", channel_id=thread_id, content_visible=False)
    await discord_fake.send_message(alice, "mentioned follow-up", channel_id=thread_id, mention_bot=True)

    await discord_fake.wait_for(lambda: len(discord_fake.answers(thread_id)) == 2)
    assert len(openai_server.chat_requests) == 2
    assert openai_server.chat_requests[1].body["messages"][-1]["content"].endswith("mentioned follow-up")


async def test_replying_to_an_answer_in_reply_mode_continues_the_conversation(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    general = discord_fake.general["id"]
    await start_bot(
        discord_message_content=True,
        channels={f"discord:{discord_fake.guild_id}:{general}": {"reply_mode": "reply"}},
    )
    alice = discord_fake.new_user("alice")
    await discord_fake.send_message(alice, "the first question", mention_bot=True)
    [answer] = await discord_fake.wait_for(lambda: discord_fake.answers(general))

    await discord_fake.send_message(alice, "and then?", reference_id=answer.payload["id"])

    await discord_fake.wait_for(lambda: len(discord_fake.answers(general)) == 2)
    contents = [m["content"] for m in openai_server.chat_requests[1].body["messages"]]
    assert any("the first question" in c for c in contents)


async def test_the_same_event_delivered_twice_or_to_two_replicas_is_answered_once(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    # two replicas on the same Redis (and a shared Qdrant): both receive every event
    await start_bot(qdrant_url=":memory:")
    await start_bot(qdrant_url=":memory:")
    alice = discord_fake.new_user("alice")

    question = await discord_fake.send_message(alice, "only once please", mention_bot=True)
    await discord_fake.dispatch("MESSAGE_CREATE", question)  # and a redelivery

    await discord_fake.wait_for(lambda: discord_fake.answers(question["id"]))
    marker = await discord_fake.send_message(alice, "marker", mention_bot=True)
    await discord_fake.wait_for(lambda: discord_fake.answers(marker["id"]))
    assert len(discord_fake.requests_to("POST", rf"/channels/\d+/messages/{question['id']}/threads")) == 1
    assert len(discord_fake.bot_messages(question["id"])) == 1
    assert [r.body["messages"][-1]["content"] for r in openai_server.chat_requests] == ["only once please", "marker"]


async def test_an_empty_mention_is_answered_as_a_reply_without_a_thread(
    start_bot: StartBot, discord_fake: FakeDiscord, openai_server: FakeOpenAI
) -> None:
    await start_bot()
    general = discord_fake.general["id"]

    question = await discord_fake.send_message(discord_fake.new_user("alice"), "", mention_bot=True)

    [reply] = await discord_fake.wait_for(lambda: discord_fake.bot_messages(general))
    assert reply.payload["message_reference"]["message_id"] == question["id"]
    assert "Ask me something" in reply.content
    assert discord_fake.requests_to("POST", r"/channels/\d+/messages/\d+/threads") == []
    assert openai_server.chat_requests == []
