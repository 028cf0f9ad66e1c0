"""The interface the core engine uses to find passages. The engine depends on nothing else here.

Scope: a document is ``public`` or visible only in listed channels (``slack:C123``,
``discord:456``). ``SearchScope.channel`` is the asking channel's scope key, or None in a DM;
only public documents and documents scoped to that channel may come back, enforced by the
store's filter.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

PUBLIC_SCOPE = "public"
DEFAULT_KB = "default"
KB_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""The one rule for knowledge base names, shared by ``bothbot ingest --kb`` and the ``kb`` command."""


def kb_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a knowledge base name, or None when it can."""
    if KB_NAME.fullmatch(name):
        return None
    return (
        f"{name!r} is not a valid knowledge base name: use 1-64 letters, digits, '_', '.' or '-', "
        "starting with a letter or digit (e.g. docs or team-handbook)"
    )


@dataclass(frozen=True, slots=True)
class Passage:
    chunk_id: str
    text: str
    source: str
    title: str
    score: float
    kb: str = DEFAULT_KB
    heading: str | None = None
    url: str | None = None
    scope: tuple[str, ...] = (PUBLIC_SCOPE,)  # who may see it: ``public`` and/or channel scope keys

    def visible_from(self, channel: str | None) -> bool:
        """Whether a search from ``channel`` (None: a DM, public only) may show this passage."""
        return PUBLIC_SCOPE in self.scope or (channel is not None and channel in self.scope)


@dataclass(frozen=True, slots=True)
class SearchScope:
    kbs: tuple[str, ...] = (DEFAULT_KB,)
    channel: str | None = None


@dataclass(frozen=True, slots=True)
class SearchResult:
    passages: tuple[Passage, ...]
    no_good_match: bool = False

    @property
    def empty(self) -> bool:
        return not self.passages


@runtime_checkable
class KnowledgeBase(Protocol):
    """Search and inventory over one deployment's knowledge bases."""

    async def search(self, query: str, scope: SearchScope, limit: int = 5) -> SearchResult: ...

    async def count(self, kbs: Sequence[str] | None = None) -> int:
        """Number of chunks in the given knowledge bases (all when None)."""
        ...

    async def list_kbs(self) -> list[str]: ...

    async def aclose(self) -> None: ...
