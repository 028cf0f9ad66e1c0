"""Retrieval fixtures: both store backends behind one parametrised fixture, services, sample files."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import AsyncQdrantClient

from retrieval.config import RetrievalConfig, RetrievalEnvironment
from retrieval.factory import RetrievalService, open_knowledge_base
from retrieval.sparse import SparseVec
from retrieval.store.edge import EdgeStore
from retrieval.store.protocol import StoredPoint, VectorStore
from retrieval.store.server import ServerStore

BACKENDS = ("edge", "server")


async def open_store(backend: str, tmp_path: Path, dense_size: int | None = None) -> VectorStore:
    if backend == "edge":
        return await EdgeStore.open(tmp_path / "edge", dense_size)
    return await ServerStore.open(AsyncQdrantClient(location=":memory:"), dense_size)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(backend: str, tmp_path: Path) -> AsyncIterator[VectorStore]:
    s = await open_store(backend, tmp_path)
    yield s
    await s.aclose()


def env_for(backend: str, tmp_path: Path, **config: Any) -> RetrievalEnvironment:
    return RetrievalEnvironment(
        config=RetrievalConfig(**config),
        data_dir=tmp_path / "data",
        qdrant_url=":memory:" if backend == "server" else None,
    )


@pytest.fixture
async def service(backend: str, tmp_path: Path) -> AsyncIterator[RetrievalService]:
    svc = await open_knowledge_base(env_for(backend, tmp_path))
    yield svc
    await svc.aclose()


def point(pid: str, terms: dict[int, float], **payload: Any) -> StoredPoint:
    base: dict[str, Any] = {"kb": "default", "scope": ["public"], "source": pid, "origin": "o", "text": pid}
    base.update(payload)
    return StoredPoint(pid, SparseVec(list(terms), list(terms.values())), base)


def write_files(root: Path, files: dict[str, str | bytes]) -> Path:
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return root


def minimal_pdf(pages: Sequence[str]) -> bytes:
    """A valid PDF whose pages carry the given text in a real text layer (Helvetica)."""
    objects: list[bytes] = []
    n = len(pages)
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(n))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n} >>".encode())
    font_id = 3 + 2 * n
    for i, text in enumerate(pages):
        content_id = 4 + 2 * i
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {content_id} 0 R "
            f"/Resources << /Font << /F1 {font_id} 0 R >> >> >>".encode()
        )
        escaped = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
        stream = f"BT /F1 12 Tf 72 720 Td ({escaped}) Tj ET".encode()
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
