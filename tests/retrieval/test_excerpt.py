"""Passages that show the answer: the best window of sentences, with source and heading."""

from __future__ import annotations

from bot.prompts import SNIPPET_CHARS, retrieval_only_text
from retrieval.api import Passage
from retrieval.excerpt import ELLIPSIS, best_window, sentences

LEAD_IN = " ".join(f"Sentence {n} says something about the bot's settings and the knowledge base." for n in range(8))
ANSWER = "To get a role id: turn on Developer Mode, then right-click the role and choose Copy Role ID."
TEXT = f"{LEAD_IN}\n{ANSWER}\nAfterwards the role is pasted into BOTHBOT_DISCORD_ADMIN_ROLES. More text follows here."


def test_best_window_holds_the_answer_sentence_and_marks_cuts() -> None:
    assert len(TEXT) > SNIPPET_CHARS and TEXT.index(ANSWER) > SNIPPET_CHARS  # the old cut missed it
    window = best_window(TEXT, "How do I get a role id?", max_chars=SNIPPET_CHARS)
    assert ANSWER in window
    assert window.startswith(ELLIPSIS) and len(window) <= SNIPPET_CHARS + 4
    # nothing matches: the text's start, cut at a sentence
    start = best_window(TEXT, "quantum chromodynamics", max_chars=120)
    assert start.startswith("Sentence 0") and start.endswith(ELLIPSIS) and len(start) <= 124


def test_long_sentences_lists_and_other_languages() -> None:
    long = "word " * 200
    assert len(best_window(long, "word", max_chars=50)) <= 50
    assert sentences("- one\n- two\n\n| a | b |\nEnd. Next one") == ["- one", "- two", "| a | b |", "End.", "Next one"]
    german = "Einleitung ohne Bezug. Noch ein Satz. Die Rollen-ID kopieren Sie mit einem Rechtsklick auf die Rolle."
    assert best_window(german, "Wie kopiere ich die Rollen-ID?", language="german", max_chars=80).endswith(
        "Rechtsklick auf die Rolle."
    )
    assert best_window("", "anything") == ""


def test_retrieval_only_text_shows_matching_sentences_with_source_and_heading() -> None:
    passage = Passage(
        "c1", TEXT, "docs/discord.md", "bothbot in Discord", 3.0, heading="bothbot in Discord > 2. Settings"
    )
    text = retrieval_only_text([passage], "no model is configured", "How do I get a role id?")
    assert "[1] bothbot in Discord — 2. Settings (docs/discord.md)" in text
    assert ANSWER in text
