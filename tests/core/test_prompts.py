"""The prompt says what the model really has: numbered sources, nothing that matched, or no retrieval."""

from __future__ import annotations

from bot.prompts import CLOSED_BOOK_NOTE, NO_SOURCES_NOTE, SOURCES_NOTE, build_messages
from bot.state import Turn
from retrieval.api import Passage

PASSAGE = Passage(chunk_id="c1", text="Laptops come in five days.", source="it.md", title="IT", score=1.0)


def system_of(**kw: object) -> str:
    args: dict[str, object] = {"system_prompt": None, "question": "q?", "passages": (), "history": (), "rag": True}
    args.update(kw)
    return build_messages(**args)[0]["content"]  # type: ignore[arg-type]


def test_closed_book_prompt_does_not_mention_sources() -> None:
    system = system_of(rag=False, passages=(PASSAGE,))
    assert CLOSED_BOOK_NOTE in system
    assert "source" not in system.lower().replace(CLOSED_BOOK_NOTE.lower(), "")
    assert "[1]" not in system and "Laptops" not in system


def test_sources_prompt_numbers_the_passages() -> None:
    system = system_of(passages=(PASSAGE,))
    assert SOURCES_NOTE in system
    assert "[1] IT\nLaptops come in five days." in system
    assert NO_SOURCES_NOTE not in system and CLOSED_BOOK_NOTE not in system


def test_no_match_prompt_and_custom_persona() -> None:
    system = system_of(system_prompt="You are Acme's helper.")
    assert system.startswith("You are Acme's helper.")
    assert NO_SOURCES_NOTE in system and SOURCES_NOTE not in system


def test_history_and_question_order() -> None:
    messages = build_messages(
        system_prompt=None, question="and then?", passages=(), history=[Turn("user", "hi"), Turn("assistant", "hello")],
        rag=False,
    )
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[-1]["content"] == "and then?"
