"""Errors retrieval raises; each message names what went wrong and the fix."""

from __future__ import annotations

from pathlib import Path


class RetrievalError(Exception):
    """Base of retrieval's own errors."""


class StoreLockedError(RetrievalError):
    """Another process holds the embedded store (qdrant-edge locks its write-ahead log)."""

    def __init__(self, path: Path, waited: float = 0.0) -> None:
        self.path = path
        self.waited = waited
        waited_text = f" (waited {waited:.0f} s)" if waited > 0 else ""
        super().__init__(
            f"The knowledge base at {path} is in use by another bothbot process{waited_text}. "
            "Only one process can open the embedded store: stop the other bothbot process "
            "(a running bot, or another `bothbot ingest`), or set QDRANT_URL to use a Qdrant server, "
            "which any number of processes can share."
        )


class StoreConfigError(RetrievalError):
    """The store's layout does not fit the configuration (e.g. a different embedding size)."""
