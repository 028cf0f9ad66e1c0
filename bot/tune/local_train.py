"""LoRA supervised fine-tuning of a local base model with TRL and PEFT: the ``local`` backend's work.

:func:`train` is synchronous and long: it runs in the worker process (``bot.tune.local_worker``) or
in a thread, never on an event loop. It reports through a :class:`Reporter` (steps, losses, messages)
and asks it whether to stop after every step. The heavy libraries are imported inside the functions
that need them, so this module (data checks, hyperparameters) imports without them.

What it writes to ``output_dir``: the adapter (``adapter_model.safetensors``, ``adapter_config.json``)
with the tokenizer files, ``bothbot-tune.json`` (how it was trained), and with ``merge`` a full model
in ``output_dir/merged`` that any transformers-based server loads as a plain model folder.
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

if TYPE_CHECKING:
    from bot.tune.jobs import JobRecord

REQUIRED_MODULES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets")
INSTALL_HINT = "pip install torch==2.13.0 'bothbot[tune-local]'"
ROLES = frozenset({"system", "user", "assistant"})
LossMode = Literal["assistant_turns", "last_assistant_turn"]


class TrainingError(Exception):
    """A failure the user can act on; ``code`` and ``param`` end up in the job's ``JobError``."""

    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param


def missing_dependencies() -> list[str]:
    """The training libraries that are not installed (checked without importing them)."""
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def require_dependencies() -> None:
    missing = missing_dependencies()
    if missing:
        raise TrainingError(
            "missing_dependencies",
            f"the local training backend needs {', '.join(missing)}; install them with: {INSTALL_HINT}",
        )


class Reporter(Protocol):
    """Where :func:`train` sends what happens; called from the training thread."""

    def message(self, text: str, level: Literal["info", "warning", "error"] = "info") -> None: ...

    def progress(
        self,
        step: int,
        total_steps: int | None,
        epoch: float | None,
        loss: float | None = None,
        validation_loss: float | None = None,
    ) -> None: ...

    def should_stop(self) -> bool: ...


# --- what to train ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TrainSpec:
    base_model: str
    train_file: Path
    validation_file: Path | None
    output_dir: Path
    adapter_name: str
    epochs: int = 3
    learning_rate: float = 2e-4
    batch_size: int = 1
    max_steps: int = -1  # > 0 overrides epochs
    lora_r: int = 16
    lora_alpha: int | None = None  # None = 2 * lora_r
    lora_dropout: float = 0.05
    max_length: int = 1024
    seed: int = 42
    merge: bool = False
    gradient_checkpointing: bool | None = None  # None = on for CUDA, off on the CPU

    @classmethod
    def from_job(cls, job: JobRecord, output_dir: Path) -> TrainSpec:
        """The spec of ``job``; ``TrainingError(invalid_hyperparameters)`` names a bad value."""
        hp = job.hyperparameters
        data = Path(job.data_dir)
        validation = data / "validation.jsonl"
        alpha = hp.get("lora_alpha")
        checkpointing = hp.get("gradient_checkpointing")
        return cls(
            base_model=job.base_model,
            train_file=data / "train.jsonl",
            validation_file=validation if validation.is_file() else None,
            output_dir=output_dir,
            adapter_name=job.suffix or job.id,
            epochs=_positive_int(job.epochs, "epochs", 3),
            learning_rate=_positive_float(hp.get("learning_rate"), "learning_rate", 2e-4),
            batch_size=_positive_int(hp.get("batch_size"), "batch_size", 1),
            max_steps=_positive_int(hp.get("max_steps"), "max_steps", -1),
            lora_r=_positive_int(hp.get("lora_r"), "lora_r", 16),
            lora_alpha=None if _is_auto(alpha) else _positive_int(alpha, "lora_alpha", 32),
            lora_dropout=_fraction(hp.get("lora_dropout"), "lora_dropout", 0.05),
            max_length=_positive_int(hp.get("max_length"), "max_length", 1024),
            seed=_positive_int(hp.get("seed"), "seed", 42, minimum=0),
            merge=bool(hp.get("merge", False)),
            gradient_checkpointing=None if checkpointing is None else bool(checkpointing),
        )


def _is_auto(value: object) -> bool:
    return value is None or value == "auto"


def _positive_int(value: object, name: str, default: int, minimum: int = 1) -> int:
    if _is_auto(value):
        return default
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TrainingError("invalid_hyperparameters", f"{name} must be a whole number, not {value!r}", name)
    try:
        number = int(value)
    except ValueError:
        raise TrainingError("invalid_hyperparameters", f"{name} must be a whole number, not {value!r}", name) from None
    if number < minimum:
        raise TrainingError("invalid_hyperparameters", f"{name} must be at least {minimum}, not {number}", name)
    return number


def _positive_float(value: object, name: str, default: float) -> float:
    if _is_auto(value):
        return default
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TrainingError("invalid_hyperparameters", f"{name} must be a number, not {value!r}", name) from None
    if not math.isfinite(number) or number <= 0:
        raise TrainingError("invalid_hyperparameters", f"{name} must be above 0, not {number}", name)
    return number


def _fraction(value: object, name: str, default: float) -> float:
    if _is_auto(value):
        return default
    number = _positive_float(value, name, default) if value != 0 else 0.0
    if number >= 1:
        raise TrainingError("invalid_hyperparameters", f"{name} must be below 1, not {number}", name)
    return number


# --- data --------------------------------------------------------------------------------------


def read_chat_file(path: Path) -> list[list[dict[str, str]]]:
    """The conversations of a chat-format JSONL file, checked line by line.

    Each line is ``{"messages": [{"role", "content"}, ...]}`` with roles system/user/assistant and at
    least one assistant message; other keys are dropped. ``TrainingError(invalid_file)`` names the line.
    """
    if not path.is_file():
        raise TrainingError("invalid_file", f"{path}: no such file (the job's data folder needs it)", path.name)
    conversations: list[list[dict[str, str]]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            where = f"{path.name} line {number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TrainingError("invalid_file", f"{where}: not JSON ({exc.msg})", path.name) from None
            messages = row.get("messages") if isinstance(row, dict) else None
            if not isinstance(messages, list) or not messages:
                raise TrainingError("invalid_file", f'{where}: expected {{"messages": [...]}}', path.name)
            conversation = []
            for message in messages:
                role = message.get("role") if isinstance(message, dict) else None
                content = message.get("content") if isinstance(message, dict) else None
                if role not in ROLES or not isinstance(content, str):
                    raise TrainingError(
                        "invalid_file",
                        f"{where}: every message needs a role (system, user or assistant) and text content",
                        path.name,
                    )
                conversation.append({"role": role, "content": content})
            if not any(m["role"] == "assistant" for m in conversation):
                raise TrainingError("invalid_file", f"{where}: no assistant message to learn from", path.name)
            conversations.append(conversation)
    if not conversations:
        raise TrainingError("invalid_file", f"{path.name}: no examples", path.name)
    return conversations


def to_prompt_completion(conversations: list[list[dict[str, str]]]) -> list[dict[str, Any]]:
    """Split each conversation at its last assistant turn: the loss then falls on that turn only."""
    rows = []
    for conversation in conversations:
        last = max(i for i, m in enumerate(conversation) if m["role"] == "assistant")
        if last == 0:
            raise TrainingError("invalid_file", "an example starts with the assistant's answer: nothing to answer")
        rows.append({"prompt": conversation[:last], "completion": [conversation[last]]})
    return rows


# --- the base model ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelSource:
    name_or_path: str  # a model folder, the folder of a GGUF file, or a hub id in the local cache
    gguf_file: str | None = None

    def kwargs(self) -> dict[str, Any]:
        return {"gguf_file": self.gguf_file} if self.gguf_file else {}


def resolve_base_model(base_model: str) -> ModelSource:
    """A model folder, a ``.gguf`` file (its folder + ``gguf_file``), or a hub id already cached."""
    path = Path(base_model).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise TrainingError("model_not_found", f"base model {base_model}: no such GGUF file", "base_model")
        return ModelSource(str(path.resolve().parent), path.name)
    if path.is_dir():
        ggufs = sorted(path.glob("*.gguf"))
        if not (path / "config.json").is_file() and len(ggufs) == 1:
            return ModelSource(str(path.resolve()), ggufs[0].name)
        return ModelSource(str(path.resolve()))
    if path.is_absolute() or base_model.startswith((".", "~")) or path.exists():
        raise TrainingError("model_not_found", f"base model {base_model}: no such model folder", "base_model")
    return ModelSource(base_model)


def _load_tokenizer(source: ModelSource) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source.name_or_path, **source.kwargs())
    except (OSError, ValueError) as exc:
        raise TrainingError(
            "model_not_found",
            f"could not load the tokenizer of {source.name_or_path}: {exc} "
            "(give a model folder or a .gguf file; hub ids work only when already in the local cache)",
            "base_model",
        ) from exc
    if not tokenizer.chat_template:
        raise TrainingError(
            "invalid_base_model",
            f"{source.name_or_path} has no chat template: use an instruct/chat model",
            "base_model",
        )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _load_model(source: ModelSource, dtype: Any) -> Any:
    from transformers import AutoModelForCausalLM, GgufConfig

    kwargs = source.kwargs()
    if source.gguf_file:  # unpacked into plain tensors: a model still marked GGUF-quantized cannot be trained
        kwargs["quantization_config"] = GgufConfig(gguf_file=source.gguf_file, dequantize=True)
    try:
        return AutoModelForCausalLM.from_pretrained(source.name_or_path, dtype=dtype, **kwargs)
    except (OSError, ValueError) as exc:
        raise TrainingError(
            "model_not_found", f"could not load {source.name_or_path}: {exc}", "base_model"
        ) from exc


def choose_loss_mode(tokenizer: Any) -> LossMode:
    """Assistant-turn loss where the chat template marks (or TRL can patch) generations, else the last turn."""
    from trl.chat_template_utils import get_training_chat_template

    try:
        get_training_chat_template(tokenizer)
    except ValueError:
        return "last_assistant_turn"
    return "assistant_turns"


# --- training ----------------------------------------------------------------------------------


@dataclass(slots=True)
class TrainOutcome:
    cancelled: bool
    steps: int
    adapter_path: Path | None = None
    merged_path: Path | None = None
    loss: float | None = None
    validation_loss: float | None = None
    trained_tokens: int | None = None


def _is_out_of_memory(exc: BaseException) -> bool:
    return isinstance(exc, MemoryError) or "out of memory" in str(exc).lower()


def train(spec: TrainSpec, reporter: Reporter) -> TrainOutcome:
    """Train a LoRA adapter as ``spec`` says; raises :class:`TrainingError` on a failure the user can fix."""
    require_dependencies()
    conversations = read_chat_file(spec.train_file)
    validation = read_chat_file(spec.validation_file) if spec.validation_file else None
    source = resolve_base_model(spec.base_model)

    import torch

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    device = torch.cuda.get_device_name(0) if cuda else "the CPU"
    reporter.message(f"loading {spec.base_model} on {device}")
    tokenizer = _load_tokenizer(source)
    try:
        model = _load_model(source, torch.bfloat16 if bf16 else torch.float32)
    except RuntimeError as exc:
        if _is_out_of_memory(exc):
            raise TrainingError("out_of_memory", f"the base model does not fit in memory: {exc}") from exc
        raise
    if reporter.should_stop():
        return TrainOutcome(cancelled=True, steps=0)

    mode = choose_loss_mode(tokenizer)
    if mode == "last_assistant_turn":
        reporter.message(
            "the chat template has no generation markers TRL can use: the loss falls on each example's last "
            "assistant turn (earlier turns are context)",
            "warning",
        )
    trainer, callback = _build_trainer(spec, model, tokenizer, mode, conversations, validation, cuda, bf16, reporter)
    try:
        trainer.train()
    except (RuntimeError, MemoryError) as exc:
        if _is_out_of_memory(exc):
            raise TrainingError(
                "out_of_memory",
                f"out of memory while training ({exc}); lower batch_size or max_length, or use a smaller model",
            ) from exc
        raise
    return _finish(spec, trainer, tokenizer, callback, validation is not None, reporter)


def _build_trainer(
    spec: TrainSpec,
    model: Any,
    tokenizer: Any,
    mode: LossMode,
    conversations: list[list[dict[str, str]]],
    validation: list[list[dict[str, str]]] | None,
    cuda: bool,
    bf16: bool,
    reporter: Reporter,
) -> tuple[Any, Any]:
    from datasets import Dataset
    from peft import LoraConfig
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

    def dataset(rows: list[list[dict[str, str]]]) -> Dataset:
        if mode == "assistant_turns":
            return Dataset.from_list([{"messages": conversation} for conversation in rows])
        return Dataset.from_list(to_prompt_completion(rows))

    config = SFTConfig(
        output_dir=str(spec.output_dir),
        num_train_epochs=spec.epochs,
        max_steps=spec.max_steps,
        per_device_train_batch_size=spec.batch_size,
        per_device_eval_batch_size=spec.batch_size,
        learning_rate=spec.learning_rate,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="epoch" if validation else "no",
        report_to="none",
        seed=spec.seed,
        data_seed=spec.seed,
        max_length=spec.max_length,
        assistant_only_loss=mode == "assistant_turns",
        use_cpu=not cuda,
        bf16=bf16,
        gradient_checkpointing=cuda if spec.gradient_checkpointing is None else spec.gradient_checkpointing,
        include_num_input_tokens_seen="non_padding",
        disable_tqdm=True,
    )
    peft_config = LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha or 2 * spec.lora_r,
        lora_dropout=spec.lora_dropout,
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )
    callback = progress_callback(reporter)
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=dataset(conversations),
        eval_dataset=dataset(validation) if validation else None,
        processing_class=tokenizer,
        peft_config=peft_config,
        callbacks=[callback],
    )
    return trainer, callback


def progress_callback(reporter: Reporter) -> Any:
    """A ``TrainerCallback`` that reports every logged loss and stops when the reporter says so."""
    from transformers import TrainerCallback

    class ProgressCallback(TrainerCallback):
        def __init__(self) -> None:
            self.stopped = False
            self.last_loss: float | None = None
            self.last_validation_loss: float | None = None
            self.last_eval_step = -1

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            reporter.progress(0, int(state.max_steps), 0.0)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if not self.stopped and reporter.should_stop():
                self.stopped = True
                control.should_training_stop = True
                reporter.message(f"stopping after step {state.global_step}: cancel requested", "warning")

        def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **_: Any) -> None:
            logs = logs or {}
            loss = logs.get("loss")
            validation_loss = logs.get("eval_loss")
            if loss is None and validation_loss is None:
                return
            if loss is not None:
                self.last_loss = float(loss)
            if validation_loss is not None:
                self.last_validation_loss = float(validation_loss)
                self.last_eval_step = int(state.global_step)
            reporter.progress(
                int(state.global_step),
                int(state.max_steps),
                None if state.epoch is None else float(state.epoch),
                None if loss is None else float(loss),
                None if validation_loss is None else float(validation_loss),
            )

    return ProgressCallback()


def _finish(
    spec: TrainSpec, trainer: Any, tokenizer: Any, callback: Any, has_validation: bool, reporter: Reporter
) -> TrainOutcome:
    state = trainer.state
    outcome = TrainOutcome(
        cancelled=callback.stopped,
        steps=int(state.global_step),
        loss=callback.last_loss,
        validation_loss=callback.last_validation_loss,
        trained_tokens=int(state.num_input_tokens_seen) or None,
    )
    if has_validation and not outcome.cancelled and callback.last_eval_step != outcome.steps:
        metrics = trainer.evaluate()
        outcome.validation_loss = float(metrics["eval_loss"])
        reporter.progress(outcome.steps, int(state.max_steps), state.epoch, validation_loss=outcome.validation_loss)
    if outcome.steps == 0:
        return outcome
    out = spec.output_dir
    trainer.save_model(str(out))  # the adapter and the tokenizer
    tokenizer.save_pretrained(str(out))
    outcome.adapter_path = out
    summary = {"spec": asdict(spec), "steps": outcome.steps, "cancelled": outcome.cancelled}
    (out / "bothbot-tune.json").write_text(json.dumps(summary, default=str, indent=2) + "\n", encoding="utf-8")
    reporter.message(f"saved the adapter in {out}")
    if spec.merge and not outcome.cancelled:
        merged_dir = out / "merged"
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(merged_dir))
        tokenizer.save_pretrained(str(merged_dir))
        outcome.merged_path = merged_dir
        reporter.message(f"saved the merged model in {merged_dir}")
    return outcome
