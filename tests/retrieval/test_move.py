"""Scope and knowledge-base changes move a file's chunks; they never leave a copy behind."""

from __future__ import annotations

from pathlib import Path

from retrieval.api import SearchScope
from retrieval.factory import RetrievalService
from tests.retrieval.conftest import write_files

HOLIDAYS = (
    "<html><head><title>Holidays</title></head><body><h1>Holidays</h1>"
    "<p>Everyone gets twelve paid holidays a year, plus the winter break.</p></body></html>"
)
LAPTOP = "# Laptops\n\nRequest a laptop from the IT portal.\n"
QUESTION = "How many paid holidays do we get?"


async def _holiday_sources(svc: RetrievalService, scope: SearchScope) -> list[str]:
    result = await svc.search(QUESTION, scope)
    return [] if result.no_good_match else [p.source for p in result.passages if "holidays" in p.text]


async def test_rescoped_file_is_moved_not_copied(service: RetrievalService, tmp_path: Path) -> None:
    corpus = write_files(tmp_path / "corpus", {"holidays.html": HOLIDAYS, "laptop.md": LAPTOP})
    await service.ingest_paths([corpus])
    assert await _holiday_sources(service, SearchScope()) == ["corpus/holidays.html"]

    report = await service.ingest_paths([corpus / "holidays.html"], scope=("slack:C123",))
    assert report.documents_moved == 1 and report.chunks_removed == 1
    assert await _holiday_sources(service, SearchScope()) == []  # public search no longer finds it
    assert await _holiday_sources(service, SearchScope(channel="slack:C999")) == []
    assert await _holiday_sources(service, SearchScope(channel="slack:C123")) == ["holidays.html"]
    assert await service.count() == 2  # one holidays document, one laptop document

    # again: nothing changes; the folder again: it moves back to public under its folder name
    again = await service.ingest_paths([corpus / "holidays.html"], scope=("slack:C123",))
    assert again.documents_moved == 0 and again.chunks_written == 0
    back = await service.ingest_paths([corpus])
    assert back.documents_moved == 1
    assert await _holiday_sources(service, SearchScope()) == ["corpus/holidays.html"]
    assert await service.count() == 2


async def test_file_moved_to_another_kb_leaves_the_first(service: RetrievalService, tmp_path: Path) -> None:
    corpus = write_files(tmp_path / "corpus", {"holidays.html": HOLIDAYS, "laptop.md": LAPTOP})
    await service.ingest_paths([corpus])
    report = await service.ingest_paths([corpus / "holidays.html"], kb="hr")
    assert report.documents_moved == 1
    assert await service.kb_counts() == {"default": 1, "hr": 1}
    assert await _holiday_sources(service, SearchScope()) == []
    assert await _holiday_sources(service, SearchScope(kbs=("hr",))) == ["holidays.html"]
    # a scope change of the same name in the same kb rewrites it in place
    await service.ingest_paths([corpus / "holidays.html"], kb="hr", scope=("discord:42",))
    assert await _holiday_sources(service, SearchScope(kbs=("hr",))) == []
    assert await _holiday_sources(service, SearchScope(kbs=("hr",), channel="discord:42")) == ["holidays.html"]
    assert await service.count() == 2


async def test_same_file_twice_in_one_run_is_kept_once(service: RetrievalService, tmp_path: Path) -> None:
    corpus = write_files(tmp_path / "corpus", {"holidays.html": HOLIDAYS})
    report = await service.ingest_paths([corpus, corpus / "holidays.html"])
    assert report.documents == 1 and [f.path for f in report.failures] == ["holidays.html"]
    assert await service.count() == 1
