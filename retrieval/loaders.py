"""Turn files and folders into documents: Markdown, text, HTML, PDF, JSON Lines, Slack exports.

Loading is blocking file work: call it from a thread (ingest does). A file that cannot be read
becomes a ``LoadFailure`` naming the file and the reason; the others still load.
"""

from __future__ import annotations

import errno
import fnmatch
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from retrieval.documents import PAGE_BREAK, DocFormat, Document, LoadFailure, MetaValue
from retrieval.html_text import html_to_markdown
from retrieval.slack_export import is_slack_export, load_slack_export

SUFFIX_FORMATS: dict[str, DocFormat] = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".mdx": "markdown",
    ".txt": "text",
    ".text": "text",
    ".rst": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
TEXT_FIELDS = ("text", "content", "body", "contents")
SOURCE_FIELDS = ("url", "source", "id", "_id")
_FRONT_MATTER = re.compile(r"\A---\s*\n(.*?)\n---\s*\n", re.DOTALL)
_MD_TITLE = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.MULTILINE)


@dataclass(frozen=True, slots=True)
class LoadOptions:
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    text_field: str | None = None
    slack_base_url: str = "https://slack.com"


class LoadError(Exception):
    """A file could not be turned into documents; the message is the reason."""


def safe_resolve(path: Path) -> Path:
    """``path.resolve()``, or the absolute path unresolved where a symbolic link loops."""
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a symlink loop, 3.13 OSError
        return Path(os.path.abspath(path))


def missing_reason(path: Path) -> str:
    """Why ``path`` (that does not exist) cannot be read: a loop, a dangling link, or nothing there."""
    if path.is_symlink():
        try:
            path.resolve(strict=True)
        except (RuntimeError, OSError) as exc:
            if isinstance(exc, RuntimeError) or getattr(exc, "errno", None) == errno.ELOOP:
                return "symbolic link loop"
        return "broken symbolic link (its target does not exist)"
    return "no such file or directory"


def iter_documents(paths: Sequence[Path], options: LoadOptions | None = None) -> Iterator[Document | LoadFailure]:
    """Documents of every path (files, folders recursively, Slack export folders), in a stable order."""
    opts = options or LoadOptions()
    for path in paths:
        if not path.exists():
            yield LoadFailure(str(path), missing_reason(path), safe_resolve(path).name or None)
            continue
        origin = safe_resolve(path).name or str(safe_resolve(path))
        if path.is_dir():
            yield from _iter_folder(path, origin, opts)
        else:
            yield from load_file(path, path.name, origin, opts)


def _iter_folder(root: Path, origin: str, opts: LoadOptions) -> Iterator[Document | LoadFailure]:
    if is_slack_export(root):
        yield from _slack(root, origin, opts)
        return
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        exports = [d for d in dirnames if is_slack_export(here / d)]
        dirnames[:] = [d for d in dirnames if d not in exports]
        for name in sorted(filenames):
            path = here / name
            rel = path.relative_to(root).as_posix()
            if name.startswith(".") or path.suffix.lower() not in SUFFIX_FORMATS or not _selected(rel, opts):
                continue
            yield from load_file(path, f"{origin}/{rel}", origin, opts)
        for d in exports:
            yield from _slack(here / d, origin, opts)


def _selected(rel: str, opts: LoadOptions) -> bool:
    name = rel.rsplit("/", 1)[-1]
    if opts.include and not any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in opts.include):
        return False
    return not any(fnmatch.fnmatch(rel, g) or fnmatch.fnmatch(name, g) for g in opts.exclude)


def _slack(root: Path, origin: str, opts: LoadOptions) -> Iterator[Document | LoadFailure]:
    try:
        yield from load_slack_export(root, origin, opts.slack_base_url)
    except (OSError, ValueError) as exc:
        yield LoadFailure(str(root), f"unreadable Slack export: {exc}", f"{opts.slack_base_url}/archives")


def load_file(path: Path, source: str, origin: str, opts: LoadOptions) -> Iterator[Document | LoadFailure]:
    """Documents of one file; a failure instead when it cannot be read."""
    fmt = SUFFIX_FORMATS.get(path.suffix.lower())
    if fmt is None:
        yield LoadFailure(str(path), f"unsupported file type {path.suffix or '(none)'!r}", source)
        return
    try:
        if fmt == "jsonl":
            yield from _load_jsonl(path, source, origin, opts)
            return
        if fmt == "pdf":
            yield _load_pdf(path, source, origin)
            return
        text = _read_text(path)
        if fmt == "html":
            title, body = html_to_markdown(text)
            yield Document(source, title or path.stem, body, "html", origin)
        elif fmt == "markdown":
            yield _markdown_document(text, source, origin, path.stem)
        else:
            yield Document(source, path.stem, text, "text", origin)
    except LoadError as exc:
        yield LoadFailure(str(path), str(exc), source)
    except OSError as exc:
        reason = missing_reason(path) if path.is_symlink() and not path.exists() else exc.strerror or str(exc)
        yield LoadFailure(str(path), reason, source)


def _read_text(path: Path) -> str:
    data = path.read_bytes()
    if b"\x00" in data[:8192]:
        raise LoadError("binary content in a text file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise LoadError(f"not valid UTF-8 (byte {exc.start})") from None


def _markdown_document(text: str, source: str, origin: str, fallback_title: str) -> Document:
    title: str | None = None
    scope: tuple[str, ...] | None = None
    meta: dict[str, MetaValue] = {}
    front = _FRONT_MATTER.match(text)
    if front:
        text = text[front.end() :]
        for line in front.group(1).splitlines():
            key, sep, value = line.partition(":")
            value = value.strip().strip("'\"")
            if not sep or not value:
                continue
            key = key.strip().lower()
            if key == "title":
                title = value
            elif key == "scope":
                scope = _parse_scope(value.strip("[]"))
            else:
                meta[key] = value
    if title is None:
        heading = _MD_TITLE.search(text)
        title = heading.group(1) if heading else fallback_title
    return Document(source, title, text, "markdown", origin, scope=scope, metadata=meta)


def _parse_scope(value: object) -> tuple[str, ...] | None:
    if isinstance(value, str):
        parts = [p.strip().strip("'\"") for p in value.split(",")]
    elif isinstance(value, list):
        parts = [str(p).strip() for p in value]
    else:
        return None
    cleaned = tuple(p for p in parts if p)
    return cleaned or None


def _load_pdf(path: Path, source: str, origin: str) -> Document:
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        if reader.is_encrypted:
            raise LoadError("encrypted PDF")
        pages = [page.extract_text() or "" for page in reader.pages]
        info_title = reader.metadata.title if reader.metadata else None
    except PdfReadError as exc:
        raise LoadError(f"unreadable PDF: {exc}") from None
    except (ValueError, KeyError, TypeError) as exc:  # pypdf raises these on damaged files
        raise LoadError(f"damaged PDF: {exc}") from None
    if not any(p.strip() for p in pages):
        raise LoadError("PDF has no text layer (a scan?)")
    title = str(info_title).strip() if info_title else path.stem
    return Document(source, title or path.stem, PAGE_BREAK.join(pages), "pdf", origin)


def _load_jsonl(path: Path, source: str, origin: str, opts: LoadOptions) -> Iterator[Document | LoadFailure]:
    fields = (opts.text_field,) if opts.text_field else TEXT_FIELDS
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                yield LoadFailure(where, f"invalid JSON: {exc}", source)
                continue
            if not isinstance(record, dict):
                yield LoadFailure(where, "a record must be a JSON object", source)
                continue
            text = next((record[f] for f in fields if isinstance(record.get(f), str)), None)
            if text is None:
                yield LoadFailure(where, f"no text field (looked for {', '.join(fields)})", source)
                continue
            ident = next((str(record[f]) for f in SOURCE_FIELDS if record.get(f) not in (None, "")), None)
            url = record.get("url") if isinstance(record.get("url"), str) and record.get("url") else None
            title = record.get("title")
            meta = {
                k: v
                for k, v in record.items()
                if isinstance(v, str | int | float | bool) and k not in fields and k not in ("title", "scope")
            }
            yield Document(
                source=url or (f"{source}#{ident}" if ident is not None else f"{source}#L{lineno}"),
                title=str(title) if title else (ident or f"{path.stem} #{lineno}"),
                text=text,
                format="jsonl",
                origin=origin,
                url=url,
                scope=_parse_scope(record.get("scope")),
                metadata=meta,
            )
