"""A trained model becomes a profile: from a job's result or any model id, optionally loading a LoRA adapter.

The profile goes into Redis through :class:`bot.profiles.ProfileRegistry`, so every replica sees it on
its next message and ``models`` lists it with its origin. With ``--load-adapter PATH`` the endpoint is a
vLLM server started with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``: the adapter is loaded
(``POST /v1/load_lora_adapter``) under the profile's model id, and ``GET /v1/models`` must list it
before the profile is saved. Any refusal leaves no profile behind (and no adapter we loaded).
"""

from __future__ import annotations

import contextlib
import getpass
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx2

from bot.profiles import PROFILE_NAME_RE, ProfileError, ProfileOrigin, ProfileRegistry, openai_retirement
from bot.settings import ModelProfile, Settings
from bot.tune.jobs import JobRecord

ADAPTER_TIMEOUT_SECONDS = 120.0  # loading an adapter reads it from disk and may compile kernels


@dataclass(frozen=True)
class Registration:
    name: str
    profile: ModelProfile
    origin: ProfileOrigin
    adapter_loaded: bool = False


def who_registers() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):
        return "cli"


async def check_name_free(settings: Settings, registry: ProfileRegistry, name: str) -> None:
    """Refuse early (before training or loading anything) a name that cannot be registered."""
    if not PROFILE_NAME_RE.match(name):
        raise ProfileError(
            f"{name[:80]!r} is not a usable profile name: use letters, digits, '.', '_' or '-' "
            "(at most 64, starting with a letter or digit)."
        )
    if name in settings.profiles:
        raise ProfileError(f"`{name}` is already a profile in bothbot.toml; choose another name (TOML profiles stay).")
    if name in await registry.registered():
        raise ProfileError(
            f"a profile `{name}` is already registered; choose another name or run "
            f"`bothbot tune unregister {name}` first."
        )


def planned(
    name: str,
    *,
    job: JobRecord | None = None,
    model: str | None = None,
    base_url: str | None = None,
    api_key_env: str | None = None,
    adapter_path: str | None = None,
    who: str | None = None,
) -> Registration:
    """The profile and origin to register, from a finished job or a model id (not saved yet)."""
    if job is not None:
        if job.status != "succeeded" or not job.fine_tuned_model:
            raise ProfileError(
                f"job {job.id} is {job.status}; only a succeeded job has a model to register"
                + (f" ({job.error})" if job.error else "") + "."
            )
        model_id = name if adapter_path else (model or job.fine_tuned_model)
        base = job.base_model
        retires = openai_retirement(job.base_model) if job.backend == "openai" else None
        endpoint = base_url or job.provider_base_url
        description = f"fine-tuned from {job.base_model} by job {job.id} ({job.backend})"
    else:
        model_id = model or name
        base = None
        retires = openai_retirement(model_id) if model_id.startswith("ft:") else None
        endpoint = base_url
        description = "LoRA adapter " + adapter_path if adapter_path else f"registered model {model_id}"
    profile = ModelProfile(
        model=model_id, base_url=endpoint, api_key_env=api_key_env, retires_on=retires, description=description
    )
    origin = ProfileOrigin(
        source="registered",
        job=job.id if job else None,
        backend=job.backend if job else None,
        base_model=base,
        registered_at=datetime.now(UTC),
        registered_by=who or who_registers(),
        adapter_path=adapter_path or (job.adapter_path if job else None),
    )
    return Registration(name=name, profile=profile, origin=origin)


async def register(settings: Settings, registry: ProfileRegistry, plan: Registration, *, load_adapter: bool) -> None:
    """Save ``plan`` as a profile; with ``load_adapter``, load its adapter first and check it is served."""
    await check_name_free(settings, registry, plan.name)
    if not load_adapter:
        await registry.register(plan.name, plan.profile, plan.origin)
        return
    resolved = _resolved(settings, plan)
    if plan.origin.adapter_path is None or resolved.base_url is None:
        raise ProfileError("--load-adapter needs the adapter's path and the vLLM endpoint (--base-url URL).")
    async with _adapter_client(resolved) as client:
        await _load(client, plan.profile.model, plan.origin.adapter_path)
        try:
            await _check_listed(client, plan.profile.model)
            await registry.register(plan.name, plan.profile, plan.origin)
        except BaseException:
            await _unload(client, plan.profile.model)
            raise


async def register_job_result(
    settings: Settings, registry: ProfileRegistry, job: JobRecord, *, who: str | None = None
) -> bool:
    """Register a succeeded job's model as ``job.register_as``; False when this job already did (idempotent)."""
    name = job.register_as
    if not name:
        return False
    existing = (await registry.registered()).get(name)
    if existing is not None and existing.origin.job == job.id:
        return False
    plan = planned(name, job=job, who=who)
    try:
        await register(settings, registry, plan, load_adapter=False)
    except ProfileError:
        existing = (await registry.registered()).get(name)
        if existing is not None and existing.origin.job == job.id:  # another follower was first
            return False
        raise
    return True


# --- vLLM's runtime LoRA endpoints -------------------------------------------------------------------


def _resolved(settings: Settings, plan: Registration) -> ModelProfile:
    """The profile with its key and endpoint filled in (``api_key_env``, else OPENAI_API_KEY)."""
    try:
        return settings.resolve_profile(plan.name, plan.profile)
    except ValueError as exc:
        raise ProfileError(str(exc)) from None


def _adapter_client(profile: ModelProfile) -> httpx2.AsyncClient:
    headers = {"Authorization": f"Bearer {profile.api_key.get_secret_value()}"} if profile.api_key else {}
    base = (profile.base_url or "").rstrip("/") + "/"
    return httpx2.AsyncClient(base_url=base, headers=headers, timeout=ADAPTER_TIMEOUT_SECONDS)


async def _post(client: httpx2.AsyncClient, path: str, body: dict[str, Any]) -> httpx2.Response:
    try:
        return await client.post(path, json=body)
    except httpx2.HTTPError as exc:
        raise ProfileError(f"cannot reach {client.base_url}{path}: {exc}") from None


async def _load(client: httpx2.AsyncClient, lora_name: str, lora_path: str) -> None:
    response = await _post(client, "load_lora_adapter", {"lora_name": lora_name, "lora_path": lora_path})
    if response.status_code != 200:
        raise ProfileError(
            f"{client.base_url} refused to load the adapter `{lora_name}` from {lora_path} "
            f"({response.status_code}): {_message(response)}. No profile was registered."
        )


async def _check_listed(client: httpx2.AsyncClient, lora_name: str) -> None:
    try:
        response = await client.get("models")
    except httpx2.HTTPError as exc:
        raise ProfileError(f"cannot list the models of {client.base_url}: {exc}") from None
    if response.status_code != 200:
        raise ProfileError(f"{client.base_url}models answered {response.status_code}: {_message(response)}")
    try:
        ids = {str(item.get("id")) for item in response.json().get("data", []) if isinstance(item, dict)}
    except (ValueError, AttributeError):
        ids = set()
    if lora_name not in ids:
        raise ProfileError(
            f"{client.base_url} accepted the adapter `{lora_name}` but does not list it in /models; "
            "no profile was registered."
        )


async def _unload(client: httpx2.AsyncClient, lora_name: str) -> None:
    """Best effort: undo our own load when the profile could not be saved."""
    with contextlib.suppress(httpx2.HTTPError):
        await client.post("unload_lora_adapter", json={"lora_name": lora_name})


def _message(response: httpx2.Response) -> str:
    """The server's own error message (OpenAI/vLLM JSON shapes), else the start of the body."""
    try:
        data = response.json()
    except (ValueError, json.JSONDecodeError):
        return response.text.strip()[:300] or "(empty answer)"
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])[:500]
        if isinstance(error, str):
            return error[:500]
    return str(data)[:300]
