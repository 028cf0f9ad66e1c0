"""Questions as people phrase them: filler and mentions do not drive ranking or the match check."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from retrieval.api import SearchScope
from retrieval.factory import RetrievalService, open_knowledge_base
from retrieval.query import QueryAnalyzer
from retrieval.sparse import Bm25Encoder
from tests.retrieval.conftest import env_for

REPO = Path(__file__).resolve().parents[2]


def _topic(question: str, language: str = "english") -> list[int]:
    return list(QueryAnalyzer(Bm25Encoder(language)).terms(question).topic)


def _ids(text: str, language: str = "english") -> list[int]:
    return list(dict.fromkeys(Bm25Encoder(language).term_ids(text)))


@pytest.mark.parametrize(
    ("question", "topic"),
    [
        ("How do I run several replicas?", "run several replicas"),
        ("How do I get a role id?", "get role id"),
        ("<@U0123ABC> can you tell me how to turn retrieval off, please?", "turn retrieval off"),
        ("@bothbot what's the default chunk size?", "default chunk size"),
        ("hey @bothbot, I was wondering where the settings go", "settings go"),
        ("Why doesn't the bot answer in a channel?", "doesn't bot answer channel"),
    ],
)
def test_question_words_filler_and_mentions_are_not_topic(question: str, topic: str) -> None:
    assert _topic(question) == _ids(topic)


@pytest.mark.parametrize(
    ("language", "question", "topic"),
    [
        ("german", "Wie kann ich mehrere Repliken starten?", "mehrere Repliken starten"),
        ("french", "Comment est-ce que je peux oublier une conversation ?", "oublier conversation"),
        ("spanish", "¿Cómo puedo olvidar una conversación, por favor?", "olvidar conversación"),
        ("italian", "Come posso dimenticare una conversazione?", "dimenticare conversazione"),
        ("portuguese", "Como posso esquecer uma conversa?", "esquecer conversa"),
        ("dutch", "Hoe kan ik een gesprek vergeten?", "gesprek vergeten"),
    ],
)
def test_filler_is_dropped_in_other_languages(language: str, question: str, topic: str) -> None:
    assert _topic(question, language) == _ids(topic, language)


def test_keyword_queries_and_filler_only_questions_keep_their_terms() -> None:
    analyzer = QueryAnalyzer(Bm25Encoder())
    keywords = analyzer.terms("QDRANT_URL replicas load balancer")
    assert keywords.topic == keywords.everything and keywords.topic
    only_filler = analyzer.terms("How do I? What is it, please?")
    assert only_filler.fallback and only_filler.topic == tuple(_ids("how do I what please"))
    assert analyzer.terms("").topic == ()
    # with the setting off, every word ranks (the behaviour before)
    plain = QueryAnalyzer(Bm25Encoder(), drop_filler=False).terms("How do I run several replicas?")
    assert plain.topic == tuple(_ids("How do I run several replicas?"))


@pytest.fixture
async def docs_kb(backend: str, tmp_path: Path) -> AsyncIterator[RetrievalService]:
    svc = await open_knowledge_base(env_for(backend, tmp_path))
    await svc.ingest_paths([REPO / "docs", REPO / "README.md"])
    yield svc
    await svc.aclose()


@pytest.mark.parametrize(
    ("question", "source", "heading"),
    [
        ("How do I run several replicas?", "docs/slack.md", "Several replicas"),
        ("How do I forget a conversation?", "docs/guide.md", "Forgetting a conversation"),
        ("How do I get a role id?", "docs/discord.md", "2. Settings"),
        ("how can I get the id of a role?", "docs/discord.md", "2. Settings"),
        ("Can you tell me how I forget a conversation, please?", "docs/guide.md", "Forgetting a conversation"),
        ("<@U0BOTHBOT> how do I get a role id in Discord?", "docs/discord.md", "2. Settings"),
    ],
)
async def test_questions_find_the_section_that_answers(
    docs_kb: RetrievalService, question: str, source: str, heading: str
) -> None:
    result = await docs_kb.search(question, SearchScope(), limit=5)
    assert not result.no_good_match
    shown = [(p.source, (p.heading or "").split(" > ")[-1]) for p in result.passages[:3]]
    assert (source, heading) in shown, shown
    if question != "How do I run several replicas?":  # README's "Processes" answers it too, and ranks first
        assert shown[0] == (source, heading), shown


async def test_keyword_ranking_is_unchanged_and_nonsense_is_still_unknown(
    docs_kb: RetrievalService, backend: str, tmp_path: Path
) -> None:
    plain = await open_knowledge_base(env_for(backend, tmp_path / "plain", drop_question_words=False))
    try:
        await plain.ingest_paths([REPO / "docs", REPO / "README.md"])
        for keywords in ("QDRANT_URL replicas", "role id developer mode", "reset conversation history"):
            ours = [p.chunk_id for p in (await docs_kb.search(keywords, SearchScope(), limit=10)).passages]
            before = [p.chunk_id for p in (await plain.search(keywords, SearchScope(), limit=10)).passages]
            assert ours == before and ours
    finally:
        await plain.aclose()
    nonsense = await docs_kb.search("What is the airspeed velocity of an unladen swallow?", SearchScope())
    assert nonsense.no_good_match
    assert (await docs_kb.search("How do I bake sourdough bread in the oven?", SearchScope())).no_good_match
    filler = await docs_kb.search("how do I?", SearchScope())  # only filler: searches with every word
    assert filler.passages
    assert (await docs_kb.search("<@U123>", SearchScope())).no_good_match
