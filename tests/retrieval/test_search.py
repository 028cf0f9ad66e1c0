from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from retrieval.api import KnowledgeBase, SearchScope
from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.errors import RetrievalError, StoreLockedError
from retrieval.factory import RetrievalService, open_knowledge_base
from tests.retrieval.conftest import env_for, write_files


async def test_new_data_dir_counts_zero_and_is_a_knowledge_base(backend: str, tmp_path: Path) -> None:
    svc = await open_knowledge_base(env_for(backend, tmp_path))
    try:
        assert isinstance(svc, KnowledgeBase)
        assert await svc.count() == 0
        assert await svc.count(["default"]) == 0
        assert await svc.list_kbs() == []
        result = await svc.search("anything", SearchScope())
        assert result.empty and result.no_good_match
    finally:
        await svc.aclose()
    if backend == "edge":
        assert (tmp_path / "data" / "qdrant").is_dir()


async def test_passages_carry_citation_fields_and_quality_signal(service: RetrievalService, tmp_path: Path) -> None:
    root = write_files(
        tmp_path / "kb",
        {
            "vpn.md": "# VPN\n\n## Reset password\n\nOpen the portal and choose forgot password to reset the VPN.\n",
            "food.jsonl": json.dumps(
                {"url": "https://wiki.example/lunch", "title": "Lunch", "text": "Lunch is served at noon."}
            ),
        },
    )
    await service.ingest_paths([root])
    result = await service.search("How do I reset my VPN password?", SearchScope(), limit=3)
    assert not result.no_good_match
    top = result.passages[0]
    assert (top.source, top.title, top.heading, top.url, top.kb) == (
        "kb/vpn.md",
        "VPN",
        "VPN > Reset password",
        None,
        "default",
    )
    assert top.score > 0 and "forgot password" in top.text
    lunch = (await service.search("when is lunch served", SearchScope())).passages[0]
    assert lunch.url == "https://wiki.example/lunch" and lunch.source == "https://wiki.example/lunch"
    # a single shared word is not a match for a question about something else
    weak = await service.search("what is the password policy for the payroll system", SearchScope())
    assert weak.no_good_match
    assert (await service.search("the of and", SearchScope())).no_good_match
    assert (await service.search("quantum chromodynamics", SearchScope())).no_good_match


async def test_min_term_coverage_is_configurable(backend: str, tmp_path: Path) -> None:
    root = write_files(tmp_path / "kb", {"vpn.md": "# VPN\n\nReset the VPN password in the portal."})
    for coverage, expected in ((0.1, False), (0.9, True)):
        svc = await open_knowledge_base(env_for(backend, tmp_path / str(coverage), min_term_coverage=coverage))
        try:
            await svc.ingest_paths([root])
            result = await svc.search("payroll password policy", SearchScope())
            assert result.passages and result.no_good_match is expected
        finally:
            await svc.aclose()


async def test_second_open_of_embedded_store_names_the_fix(tmp_path: Path) -> None:
    env = RetrievalEnvironment(RetrievalConfig(), tmp_path / "data")
    holder = await open_knowledge_base(env)
    try:
        with pytest.raises(StoreLockedError) as info:
            await open_knowledge_base(env)
        message = str(info.value)
        assert "another bothbot process" in message and "QDRANT_URL" in message and "stop" in message
    finally:
        await holder.aclose()
    again = await open_knowledge_base(env)
    await again.aclose()


async def test_open_waits_for_the_other_process_and_says_why(tmp_path: Path) -> None:
    env = RetrievalEnvironment(RetrievalConfig(), tmp_path / "data")
    holder = await open_knowledge_base(env)
    messages: list[str] = []
    releases: list[asyncio.Task[None]] = []

    def on_wait(message: str) -> None:
        messages.append(message)
        releases.append(asyncio.get_running_loop().create_task(holder.aclose()))

    svc = await open_knowledge_base(env, lock_wait=30.0, on_wait=on_wait)
    try:
        assert len(messages) == 1 and "waiting up to 30 s" in messages[0] and "QDRANT_URL" in messages[0]
        assert await svc.count() == 0
    finally:
        await svc.aclose()
        await asyncio.gather(*releases)


async def test_lock_wait_gives_up_after_the_bound(tmp_path: Path) -> None:
    env = RetrievalEnvironment(RetrievalConfig(), tmp_path / "data")
    holder = await open_knowledge_base(env)
    told: list[str] = []
    try:
        with pytest.raises(StoreLockedError, match="waited"):
            await open_knowledge_base(env, lock_wait=0.3, on_wait=told.append)
        assert len(told) == 1
    finally:
        await holder.aclose()


async def test_unreachable_qdrant_server_is_a_clear_error(tmp_path: Path) -> None:
    env = RetrievalEnvironment(RetrievalConfig(), tmp_path, qdrant_url="http://127.0.0.1:9")
    with pytest.raises(RetrievalError, match=r"QDRANT_URL=http://127\.0\.0\.1:9"):
        await open_knowledge_base(env)


async def test_stored_terms_are_the_terms_the_match_check_reads(service: RetrievalService, tmp_path: Path) -> None:
    """The match check reads each hit's indexed terms instead of analysing its text again: they must be
    the same terms, for chunks with and without a heading."""
    root = write_files(
        tmp_path / "kb",
        {
            "vpn.md": "# VPN\n\n## Reset password\n\nOpen the portal and choose forgot password to reset the VPN.\n",
            "notes.txt": "Reset the router's password, then reconnect the VPN client; it's quick.",
        },
    )
    await service.ingest_paths([root])
    terms = service.encoder.query("reset vpn password")
    hits = await service.store.search(
        sparse=terms, dense=None, kbs=["default"], channel=None, limit=5, prefetch_limit=5, fusion="dbsf"
    )
    assert len(hits.hits) == 2
    for hit in hits.hits:
        p = hit.payload
        text = f"{p['title']}\n{p.get('heading') or ''}\n{p['text']}"
        assert hit.terms is not None and set(hit.terms) == set(service.encoder.term_ids(text)), p["source"]
