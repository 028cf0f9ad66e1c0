"""Randomised: across random documents, scopes, knowledge bases and askers, a search never returns
a chunk its channel may not see, and finds every chunk it may see (the filter is in the store)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from retrieval.api import SearchScope
from retrieval.documents import Document
from retrieval.factory import open_knowledge_base
from tests.retrieval.conftest import env_for

CHANNELS = ["slack:C1", "slack:C2", "discord:10", "discord:20", "slack:G7"]
WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]


@pytest.mark.parametrize("seed", range(4))
async def test_scope_filter_holds(backend: str, tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    svc = await open_knowledge_base(env_for(backend, tmp_path))
    try:
        truth: dict[str, tuple[str, frozenset[str], frozenset[str]]] = {}
        for kb in ("a", "b"):
            docs = []
            for i in range(40):
                scope = ("public",) if rng.random() < 0.3 else tuple(rng.sample(CHANNELS, rng.randint(1, 3)))
                words = frozenset(rng.sample(WORDS, rng.randint(1, 3)))
                source = f"{kb}-{i}"
                truth[source] = (kb, frozenset(scope), words)
                docs.append(Document(source, source, " ".join(words), "text", origin="r", scope=scope))
            await svc.ingest_documents(docs, kb=kb)
        for _ in range(40):
            channel = rng.choice([*CHANNELS, None, "slack:C999"])
            kbs = tuple(rng.sample(["a", "b"], rng.randint(1, 2)))
            word = rng.choice(WORDS)
            result = await svc.search(word, SearchScope(kbs=kbs, channel=channel), limit=100)
            got = {p.source for p in result.passages}
            allowed = {"public"} if channel is None else {"public", channel}
            expected = {s for s, (kb, scope, words) in truth.items() if kb in kbs and scope & allowed and word in words}
            assert got == expected, (channel, kbs, word)
    finally:
        await svc.aclose()
