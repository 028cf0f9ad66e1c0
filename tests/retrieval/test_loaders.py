from __future__ import annotations

import json
from pathlib import Path

from retrieval.documents import Document, LoadFailure
from retrieval.loaders import LoadOptions, iter_documents
from tests.retrieval.conftest import minimal_pdf, write_files


def load(paths: list[Path], **opts: object) -> tuple[list[Document], list[LoadFailure]]:
    docs: list[Document] = []
    failures: list[LoadFailure] = []
    for item in iter_documents(paths, LoadOptions(**opts)):  # type: ignore[arg-type]
        (docs if isinstance(item, Document) else failures).append(item)  # type: ignore[arg-type]
    return docs, failures


def test_folder_recursive_with_all_formats_and_sources_relative_to_root(tmp_path: Path) -> None:
    root = write_files(
        tmp_path / "handbook",
        {
            "guide.md": "---\ntitle: The Guide\nscope: slack:C1, discord:9\nowner: ops\n---\n# Ignored H1\n\nBody.",
            "notes/todo.txt": "Buy milk.",
            "web/page.html": "<html><head><title>Page T</title><style>p{}</style></head>"
            "<body><h2>Sec</h2><p>Hello <b>bold</b> world</p><script>evil()</script>"
            "<pre>line1\n  line2</pre></body></html>",
            "manual.pdf": minimal_pdf(["First page text", "Second page text"]),
            ".hidden/secret.md": "# no",
            "image.png": b"\x89PNG\r\n",
        },
    )
    docs, failures = load([root])
    assert failures == []
    by_source = {d.source: d for d in docs}
    assert set(by_source) == {
        "handbook/guide.md",
        "handbook/notes/todo.txt",
        "handbook/web/page.html",
        "handbook/manual.pdf",
    }
    guide = by_source["handbook/guide.md"]
    assert guide.title == "The Guide"
    assert guide.scope == ("slack:C1", "discord:9")
    assert guide.metadata == {"owner": "ops"}
    assert guide.origin == "handbook"
    assert not guide.text.startswith("---")

    page = by_source["handbook/web/page.html"]
    assert page.title == "Page T"
    assert "## Sec" in page.text
    assert "Hello bold world" in page.text
    assert "evil" not in page.text and "<" not in page.text and "p{}" not in page.text
    assert "```\nline1\n  line2\n```" in page.text

    pdf = by_source["handbook/manual.pdf"]
    assert pdf.format == "pdf"
    assert "First page text" in pdf.text and "Second page text" in pdf.text
    assert pdf.text.count("\f") == 1


def test_markdown_title_from_first_heading_and_single_file_source(tmp_path: Path) -> None:
    path = write_files(tmp_path, {"a/readme.md": "Intro\n\n# Real Title\n\ntext"}) / "a" / "readme.md"
    docs, _ = load([path])
    assert [(d.source, d.title, d.origin) for d in docs] == [("readme.md", "Real Title", "readme.md")]


def test_include_and_exclude_globs(tmp_path: Path) -> None:
    root = write_files(
        tmp_path / "r",
        {"a.md": "a", "b.txt": "b", "drafts/c.md": "c", "drafts/d.txt": "d", "keep/e.md": "e"},
    )
    docs, _ = load([root], include=("*.md",), exclude=("drafts/*",))
    assert sorted(d.source for d in docs) == ["r/a.md", "r/keep/e.md"]


def test_unreadable_files_are_reported_and_the_rest_loads(tmp_path: Path) -> None:
    root = write_files(
        tmp_path / "r",
        {
            "good.md": "# Good\n\nfine",
            "latin1.txt": "caf\xe9".encode("latin-1"),
            "binary.txt": b"abc\x00def",
            "broken.pdf": b"%PDF-1.4 this is not a pdf",
            "scan.pdf": minimal_pdf([""]),
        },
    )
    docs, failures = load([root, tmp_path / "missing"])
    assert [d.source for d in docs] == ["r/good.md"]
    reasons = {Path(f.path).name: f.reason for f in failures}
    assert set(reasons) == {"latin1.txt", "binary.txt", "broken.pdf", "scan.pdf", "missing"}
    assert "UTF-8" in reasons["latin1.txt"]
    assert "binary" in reasons["binary.txt"]
    assert "PDF" in reasons["broken.pdf"]
    assert "text layer" in reasons["scan.pdf"]
    assert "no such file" in reasons["missing"]
    assert {f.source for f in failures if Path(f.path).name == "latin1.txt"} == {"r/latin1.txt"}


def test_jsonl_records_with_metadata_and_bad_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "r1", "title": "One", "text": "first record", "team": "ops", "n": 3}),
        "{not json",
        json.dumps({"id": "r2", "body": "no text field here"}),
        json.dumps({"url": "https://x.example/2", "text": "second", "scope": ["slack:C7"]}),
        "",
        json.dumps({"text": "anonymous"}),
    ]
    path = write_files(tmp_path, {"recs.jsonl": "\n".join(lines)}) / "recs.jsonl"
    docs, failures = load([path])
    assert [(d.source, d.title) for d in docs] == [
        ("recs.jsonl#r1", "One"),
        ("recs.jsonl#r2", "r2"),
        ("https://x.example/2", "https://x.example/2"),
        ("recs.jsonl#L6", "recs #6"),
    ]
    assert docs[0].metadata == {"id": "r1", "team": "ops", "n": 3}
    assert docs[1].text == "no text field here"
    assert docs[2].url == "https://x.example/2" and docs[2].scope == ("slack:C7",)
    assert len(failures) == 1 and failures[0].path.endswith("recs.jsonl:2")

    docs, failures = load([path], text_field="text")
    assert len(docs) == 3
    assert any("no text field" in f.reason for f in failures)


def _slack_export(root: Path) -> Path:
    files: dict[str, str | bytes] = {
        "users.json": json.dumps(
            [
                {"id": "U1", "name": "ann", "profile": {"display_name": "Ann"}},
                {"id": "U2", "name": "bob", "real_name": "Bob B"},
            ]
        ),
        "channels.json": json.dumps([{"id": "C1", "name": "general"}]),
        "groups.json": json.dumps([{"id": "G9", "name": "secret-team"}]),
        "general/2024-01-01.json": json.dumps(
            [
                {"type": "message", "user": "U1", "text": "How do I reset <#C1|general> VPN?",
                 "ts": "1704067200.000100", "thread_ts": "1704067200.000100"},
                {"type": "message", "user": "U2", "text": "Use the portal &amp; ask <@U1>", "ts": "1704067260.000200",
                 "thread_ts": "1704067200.000100"},
                {"type": "message", "subtype": "channel_join", "user": "U2", "text": "joined", "ts": "1704067300.0"},
                {"type": "message", "user": "U2", "text": "Lunch at <https://food.example|the place>",
                 "ts": "1704070000.000300"},
            ]
        ),
        "general/2024-01-02.json": json.dumps(
            [{"type": "message", "user": "U1", "text": "thanks!", "ts": "1704153600.000400",
              "thread_ts": "1704067200.000100"}]
        ),
        "secret-team/2024-01-01.json": json.dumps(
            [{"type": "message", "user": "U1", "text": "private plans", "ts": "1704067200.000900"}]
        ),
    }  # fmt: skip
    return write_files(root, files)


def test_slack_export_threads_become_documents_with_permalinks(tmp_path: Path) -> None:
    root = _slack_export(tmp_path / "export")
    docs, failures = load([root], slack_base_url="https://acme.slack.com")
    assert failures == []
    by_source = {d.source: d for d in docs}
    thread = by_source["https://acme.slack.com/archives/C1/p1704067200000100"]
    assert thread.url == thread.source
    assert thread.title.startswith("#general: How do I reset #general VPN?")
    assert thread.text.count("\n\n") == 2  # three messages, the join skipped
    assert "Bob B" in thread.text and "Use the portal & ask @Ann" in thread.text and "thanks!" in thread.text
    assert thread.scope is None  # public channel: the run's scope applies
    lone = by_source["https://acme.slack.com/archives/C1/p1704070000000300"]
    assert "the place (https://food.example)" in lone.text
    private = by_source["https://acme.slack.com/archives/G9/p1704067200000900"]
    assert private.scope == ("slack:G9",)
    assert len(docs) == 3


def test_slack_export_found_inside_a_folder(tmp_path: Path) -> None:
    _slack_export(tmp_path / "kb" / "slack")
    write_files(tmp_path / "kb", {"readme.md": "# R\n\ntext"})
    docs, failures = load([tmp_path / "kb"])
    assert failures == []
    assert len(docs) == 4
    assert not any(d.source.endswith(".json") for d in docs)
