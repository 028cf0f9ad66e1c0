"""Documents as loaders produce them and chunks as the chunker cuts them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

DocFormat = Literal["markdown", "text", "html", "pdf", "jsonl", "slack"]
MetaValue = str | int | float | bool
PAGE_BREAK = "\f"


@dataclass(frozen=True, slots=True)
class Document:
    """One retrievable unit of a source (a file, a JSON Lines record, a Slack thread).

    ``source`` identifies it across runs (a path relative to the ingested root, a record id or a
    permalink); ``origin`` names the ingested root it came from, so ``--prune`` knows which stored
    documents a run is responsible for. ``scope`` overrides the run's scope when the source
    itself says who may see it (a Slack channel, a record's ``scope`` field). ``path`` is the file
    it was read from, resolved (plus ``#record`` within a JSON Lines file): the same file ingested
    again under another name, knowledge base or scope replaces what was stored from it.
    """

    source: str
    title: str
    text: str
    format: DocFormat
    origin: str = ""
    url: str | None = None
    scope: tuple[str, ...] | None = None
    metadata: Mapping[str, MetaValue] = field(default_factory=dict)
    path: str | None = None


@dataclass(frozen=True, slots=True)
class Chunk:
    """A bounded piece of a document with what a citation needs to point at it."""

    text: str
    headings: tuple[str, ...]
    position: int
    tokens: int
    page: int | None = None

    @property
    def heading(self) -> str | None:
        return " > ".join(self.headings) if self.headings else None


@dataclass(frozen=True, slots=True)
class LoadFailure:
    """A file that could not be read, and why."""

    path: str
    reason: str
    source: str | None = None  # the source (or source prefix) it would have had; kept by --prune
