"""``bothbot tune start|status|follow|cancel|list|register|unregister``: training jobs and their result.

Jobs live in Redis (:mod:`bot.tune.jobs`), so any process can follow, cancel or register any job.
Exit codes: 0 done, 2 bad input, configuration or a provider's refusal (a failed or cancelled job
too), 130 Ctrl-C (only following stops; the job goes on). Errors are one line on stderr:
``bothbot tune <command>: <message>``.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from bot.model_client import ModelRouter
from bot.profiles import ProfileError, ProfileRegistry
from bot.settings import Settings, mask_url_password
from bot.state import StateStore, connect_redis
from bot.tune import register as registration
from bot.tune.follow import Display, FollowError, follow, refreshed
from bot.tune.jobs import (
    BackendError,
    JobError,
    JobEvent,
    JobNotFoundError,
    JobRecord,
    JobStore,
    TrainingBackend,
    backend_names,
    load_backend,
    new_job_id,
)

Handler = Callable[[argparse.Namespace, Settings], Awaitable[int]]


class TuneError(Exception):
    """Bad input or configuration for a tune command; the message says what to do."""


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this module's ``tune`` sub-commands."""
    start = commands.add_parser(
        "start", help="validate DIR/train.jsonl, start a training job and follow it",
        description="Validate DIR/train.jsonl (and validation.jsonl), start a training job, print its id and "
        "follow it until it finishes (Ctrl-C stops following, not the job).",
    )
    start.add_argument("--backend", required=True, choices=backend_names(),
                       help="openai: any OpenAI-compatible fine-tuning API (OPENAI_BASE_URL); local: LoRA here")
    start.add_argument("--data", required=True, metavar="DIR", help="folder with train.jsonl [validation.jsonl]")
    start.add_argument("--model", required=True, metavar="BASE", help="base model id, or a local model path")
    start.add_argument("--suffix", help="openai: added to the fine-tuned model's name")
    start.add_argument("--epochs", type=_positive_int, metavar="N", help="training epochs (default: the backend's)")
    start.add_argument("--register", metavar="NAME", help="when the job succeeds, register the model as profile NAME")
    start.add_argument("--learning-rate", type=_positive_float, metavar="F", help="local: learning rate")
    start.add_argument("--learning-rate-multiplier", type=_positive_float, metavar="F",
                       help="openai: learning-rate multiplier")
    start.add_argument("--batch-size", type=_positive_int, metavar="N", help="examples per batch")
    start.add_argument("--max-steps", type=_positive_int, metavar="N", help="local: stop after N steps")
    start.add_argument("--lora-r", type=_positive_int, metavar="N", help="local: LoRA rank")
    start.add_argument("--max-length", type=_positive_int, metavar="N",
                       help="local: tokens of an example the model reads; longer ones are cut (default 1024)")
    start.add_argument("--merge", action="store_true", help="local: also write the base model merged with the adapter")
    start.add_argument("--output", metavar="DIR", help="local: where the adapter is written")
    start.add_argument("--seed", type=int, metavar="N", help="random seed")
    start.add_argument("--detach", action="store_true", help="start and return; follow later with `tune follow`")
    start.set_defaults(handler=_command("start", _start))

    for name, about, handler in (
        ("status", "show a job: status, progress, model, error", _status),
        ("follow", "show a job's events and progress until it finishes (Ctrl-C stops following only)", _follow),
        ("cancel", "ask the backend to stop a job", _cancel),
    ):
        parser = commands.add_parser(name, help=about, description=about[0].upper() + about[1:] + ".")
        parser.add_argument("job", metavar="JOB", help="job id (`bothbot tune list` shows them)")
        parser.set_defaults(handler=_command(name, handler))

    listing = commands.add_parser("list", help="recent training jobs, newest first")
    listing.add_argument("--limit", type=_positive_int, default=20, metavar="N", help="how many (default 20)")
    listing.set_defaults(handler=_command("list", _list))

    reg = commands.add_parser(
        "register", help="register a trained model as a profile every replica can use",
        description="Add a profile (stored in Redis, seen by every replica on its next message). "
        "--job takes the model, endpoint and base model from a succeeded job; --model registers any id. "
        "--load-adapter loads a LoRA adapter into a vLLM server first (served under --model ID, else NAME).",
    )
    reg.add_argument("name", metavar="NAME", help="profile name (`model NAME` switches a channel to it)")
    source = reg.add_mutually_exclusive_group()
    source.add_argument("--job", metavar="JOB", help="a succeeded training job")
    source.add_argument("--model", metavar="ID", help="any model id the endpoint serves")
    reg.add_argument("--base-url", metavar="URL", help="the endpoint (default: the job's, else OPENAI_BASE_URL)")
    reg.add_argument("--load-adapter", metavar="PATH", help="vLLM: load this LoRA adapter (a path on the server)")
    reg.add_argument("--api-key-env", metavar="VAR", help="environment variable holding the endpoint's key")
    reg.set_defaults(handler=_command("register", _register))

    unreg = commands.add_parser("unregister", help="remove a registered profile",
                                description="Remove a registered profile; refused while a channel uses it.")
    unreg.add_argument("name", metavar="NAME")
    unreg.add_argument("--force", action="store_true",
                       help="move the channels using it back to their default profile (audited)")
    unreg.set_defaults(handler=_command("unregister", _unregister))


# --- plumbing ------------------------------------------------------------------------------------------


def _command(name: str, run: Handler) -> Handler:
    async def handler(args: argparse.Namespace, settings: Settings) -> int:
        try:
            return await run(args, settings)
        except (TuneError, JobNotFoundError, BackendError, ProfileError, FollowError) as exc:
            return _fail(name, str(exc))
        except (RedisConnectionError, RedisTimeoutError) as exc:
            where = mask_url_password(settings.redis_url or "")
            return _fail(name, f"cannot reach Redis at {where}: {exc}. Start Redis or fix REDIS_URL.")

    return handler


def _fail(command: str, message: str) -> int:
    print(f"bothbot tune {command}: {message}", file=sys.stderr)
    return 2


@asynccontextmanager
async def _opened(settings: Settings, *, in_process_ok: bool = False) -> AsyncIterator[tuple[StateStore, JobStore]]:
    """State and jobs in Redis. Without REDIS_URL only a foreground ``start`` runs (the job is forgotten at exit)."""
    if settings.redis_url is None and not in_process_ok:
        raise TuneError(
            "training jobs and registered profiles live in Redis: set REDIS_URL (the in-process store "
            "would forget them when this command exits)."
        )
    redis, in_process = connect_redis(settings.redis_url, f"bothbot-tune:{settings.redis_prefix}")
    state = StateStore(redis, settings.redis_prefix, in_process=in_process)
    if in_process:
        print("note: no REDIS_URL, so this job is kept in this process only: `tune follow`, `status` and "
              "`register` from another process cannot see it.", file=sys.stderr)
    try:
        await redis.ping()
        yield state, JobStore(state)
    finally:
        await state.aclose()


@asynccontextmanager
async def _registry(settings: Settings, state: StateStore) -> AsyncIterator[ProfileRegistry]:
    router = ModelRouter(
        settings.profiles, timeout_seconds=settings.model_timeout_seconds, max_retries=settings.model_max_retries
    )
    try:
        yield ProfileRegistry(settings, state, router)
    finally:
        await router.aclose()


@asynccontextmanager
async def _backend(name: str, settings: Settings) -> AsyncIterator[TrainingBackend]:
    try:
        backend = load_backend(name, settings)
    except ImportError as exc:
        raise TuneError(f"the {name} backend cannot be loaded here: {exc}") from None
    except ValueError as exc:
        raise TuneError(str(exc)) from None
    try:
        yield backend
    finally:
        await backend.aclose()


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} must be above 0")
    return value


# --- start -------------------------------------------------------------------------------------------------


async def _start(args: argparse.Namespace, settings: Settings) -> int:
    data = await asyncio.to_thread(lambda: Path(args.data).expanduser().resolve())
    await _check_data(data, args.model)
    hyperparameters = {
        key: value
        for key, value in {
            "learning_rate": args.learning_rate,
            "learning_rate_multiplier": args.learning_rate_multiplier,
            "batch_size": args.batch_size,
            "max_steps": args.max_steps,
            "lora_r": args.lora_r,
            "max_length": args.max_length,
            "merge": True if args.merge else None,
            "seed": args.seed,
        }.items()
        if value is not None
    }
    output = await asyncio.to_thread(lambda: str(Path(args.output).expanduser().resolve())) if args.output else None
    job = JobRecord(
        id=new_job_id(), backend=args.backend, base_model=args.model, data_dir=str(data), suffix=args.suffix,
        epochs=args.epochs, register_as=args.register, hyperparameters=hyperparameters, output_dir=output,
    )
    if settings.redis_url is None and (args.detach or args.register):
        raise TuneError("--detach and --register need REDIS_URL: the job and the profile are kept in Redis.")
    async with _opened(settings, in_process_ok=True) as (state, store), _backend(job.backend, settings) as backend:
        if args.register:
            async with _registry(settings, state) as registry:
                await registration.check_name_free(settings, registry, args.register)
        await store.create(job)
        try:
            job = await backend.start(job, store)
        except BackendError as exc:
            recorded = await store.get(job.id)
            if recorded.status != "failed":  # a backend may have recorded its refusal already
                recorded.status = "failed"
                recorded.error = exc.error or JobError(message=str(exc))
                await store.save(recorded, JobEvent(level="error", message=str(exc)))
            raise
        print(f"started training job {job.id} ({job.backend}, base {job.base_model})")
        print(f"follow it with: bothbot tune follow {job.id}", flush=True)
        if args.detach:
            display = Display(sys.stdout, tty=False)
            for _entry, event in await store.events(job.id):
                display.event(event)
            return 0
        return await _follow_to_end("start", settings, state, store, backend, job.id)


async def _check_data(data: Path, model: str) -> None:
    """Refuse a training folder whose files would be rejected, before anything is uploaded or trained."""
    from bot.tune.tokens import TokenizerError, token_counter
    from bot.tune.validate import validate_file

    train = data / "train.jsonl"
    validation = data / "validation.jsonl"
    if not await asyncio.to_thread(train.is_file):
        raise TuneError(f"{train} not found: --data names a folder with train.jsonl (see `bothbot tune dataset`).")
    try:
        counter = await token_counter(model)
    except TokenizerError as exc:
        raise TuneError(str(exc)) from None
    checks = [(train, 10)]
    if await asyncio.to_thread(validation.is_file):
        checks.append((validation, 1))
    for path, least in checks:
        try:
            report = await validate_file(path, counter, min_examples=least)
        except OSError as exc:
            raise TuneError(f"cannot read {path}: {exc}") from None
        if not report.ok:
            shown = "\n  ".join(str(p) for p in report.problems[:10])
            more = f"\n  … and {len(report.problems) - 10} more" if len(report.problems) > 10 else ""
            raise TuneError(
                f"{path} would be rejected ({len(report.problems)} problem(s)); nothing was uploaded:\n  "
                f"{shown}{more}\n`bothbot tune validate {path}` shows the full report."
            )


async def _follow_to_end(
    command: str, settings: Settings, state: StateStore, store: JobStore, backend: TrainingBackend, job_id: str
) -> int:
    display = Display(sys.stdout, tty=sys.stdout.isatty())
    try:
        job = await follow(store, backend, job_id, display, poll_seconds=settings.tune_poll_seconds)
    except (asyncio.CancelledError, KeyboardInterrupt):
        print(
            f"\nstopped following {job_id}; the job goes on. Follow it again with: bothbot tune follow {job_id}",
            file=sys.stderr, flush=True,
        )
        raise
    if job.status == "failed":
        return _fail(command, f"job {job.id} failed: {job.error or 'the backend gave no reason'}")
    if job.status == "cancelled":
        return _fail(command, f"job {job.id} was cancelled.")
    print(f"fine-tuned model: {job.fine_tuned_model}")
    if not job.register_as:
        print(f"register it with: bothbot tune register NAME --job {job.id}")
        return 0
    async with _registry(settings, state) as registry:
        try:
            added = await registration.register_job_result(settings, registry, job, who=registration.who_registers())
        except ProfileError as exc:
            return _fail(command, f"job {job.id} succeeded, but registering `{job.register_as}` failed: {exc}")
    said = "registered" if added else "already registered"
    print(f"{said} profile {job.register_as}: an admin switches a channel to it with `model {job.register_as}`.")
    return 0


# --- status, follow, cancel, list ---------------------------------------------------------------------


async def _status(args: argparse.Namespace, settings: Settings) -> int:
    async with _opened(settings) as (_state, store):
        job = await store.get(args.job)
        note = None
        if not job.finished:
            async with _backend(job.backend, settings) as backend:
                try:
                    job = await refreshed(store, backend, job.id, settings.tune_poll_seconds)
                except BackendError as exc:
                    note = f"(could not ask the backend, showing what is on record: {exc})"
        print(render_job(job))
        if note:
            print(note, file=sys.stderr)
    return 0


async def _follow(args: argparse.Namespace, settings: Settings) -> int:
    async with _opened(settings) as (state, store):
        job = await store.get(args.job)
        async with _backend(job.backend, settings) as backend:
            return await _follow_to_end("follow", settings, state, store, backend, job.id)


async def _cancel(args: argparse.Namespace, settings: Settings) -> int:
    async with _opened(settings) as (_state, store):
        job = await store.get(args.job)
        if job.finished:
            raise TuneError(f"job {job.id} already {job.status}; nothing to cancel.")
        async with _backend(job.backend, settings) as backend:
            job = await backend.cancel(job, store)
        if job.status == "cancelled":
            print(f"cancelled job {job.id}.")
        else:
            print(f"asked job {job.id} to stop; it is {job.status} for now "
                  f"(`bothbot tune follow {job.id}` shows when it stops).")
    return 0


async def _list(args: argparse.Namespace, settings: Settings) -> int:
    async with _opened(settings) as (_state, store):
        jobs = await store.recent(args.limit)
    if not jobs:
        print("no training jobs yet: `bothbot tune start --backend … --data DIR --model BASE` starts one.")
        return 0
    rows = [("JOB", "BACKEND", "STATUS", "BASE", "CREATED", "RESULT")]
    for job in jobs:
        result = job.fine_tuned_model or (str(job.error) if job.error else _progress(job)) or ""
        created = datetime.fromtimestamp(job.created_at).strftime("%Y-%m-%d %H:%M")
        rows.append((job.id, job.backend, job.status, job.base_model, created, result[:80]))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1])
    return 0


def render_job(job: JobRecord) -> str:
    created = datetime.fromtimestamp(job.created_at).strftime("%Y-%m-%d %H:%M:%S")
    where = job.backend + (f" ({job.provider_job_id} on {job.provider_base_url})" if job.provider_job_id else "")
    lines = [
        ("job", job.id),
        ("backend", where),
        ("base model", job.base_model),
        ("data", job.data_dir),
        ("status", job.status),
        ("progress", _progress(job)),
        ("model", job.fine_tuned_model or ""),
        ("adapter", job.adapter_path or ""),
        ("trained tokens", str(job.trained_tokens) if job.trained_tokens else ""),
        ("error", str(job.error) if job.error else ""),
        ("register as", job.register_as or ""),
        ("created", created),
    ]
    return "\n".join(f"{label:<15}{value}" for label, value in lines if value)


def _progress(job: JobRecord) -> str:
    p = job.progress
    if not p.step and p.loss is None:
        return ""
    text = f"step {p.step}" + (f"/{p.total_steps}" if p.total_steps else "")
    if p.loss is not None:
        text += f", loss {p.loss:.4f}"
    if p.validation_loss is not None:
        text += f", validation loss {p.validation_loss:.4f}"
    return text


# --- register, unregister ------------------------------------------------------------------------------


async def _register(args: argparse.Namespace, settings: Settings) -> int:
    if not (args.job or args.model or args.load_adapter):
        raise TuneError("say what to register: --job JOB, --model ID, or --load-adapter PATH.")
    async with _opened(settings) as (state, store), _registry(settings, state) as registry:
        job = await store.get(args.job) if args.job else None
        plan = registration.planned(
            args.name, job=job, model=args.model, base_url=args.base_url, api_key_env=args.api_key_env,
            adapter_path=args.load_adapter, who=registration.who_registers(),
        )
        await registration.register(settings, registry, plan, load_adapter=bool(args.load_adapter))
    profile = plan.profile
    endpoint = profile.base_url or settings.openai_base_url or "the default endpoint"
    print(f"registered profile {plan.name}: model {profile.model} at {endpoint}"
          + (" (adapter loaded)" if args.load_adapter else "") + ".")
    if profile.retires_on:
        print(f"note: this model stops answering on {profile.retires_on.isoformat()} (OpenAI's retirement date).")
    print(f"every replica sees it on its next message; an admin switches a channel with `model {plan.name}`.")
    return 0


async def _unregister(args: argparse.Namespace, settings: Settings) -> int:
    async with _opened(settings) as (state, _store), _registry(settings, state) as registry:
        moved = await registry.unregister(args.name, force=args.force, who=registration.who_registers())
    print(f"unregistered profile {args.name}.")
    if moved:
        print(f"moved back to their default profile (audited): {', '.join(moved)}")
    return 0
