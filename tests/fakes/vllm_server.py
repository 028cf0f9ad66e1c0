"""A vLLM-like OpenAI-compatible server with runtime LoRA adapters, on loopback, port 0.

Like ``vllm serve BASE --enable-lora`` with ``VLLM_ALLOW_RUNTIME_LORA_UPDATING=True``:
``POST /v1/load_lora_adapter {"lora_name", "lora_path"}`` loads an adapter from a folder holding
``adapter_config.json`` (200 with a plain-text body, as vLLM answers; 400 with vLLM's error JSON for a
missing path or a name already loaded), ``POST /v1/unload_lora_adapter {"lora_name"}``,
``GET /v1/models`` lists the base and each adapter with ``parent`` = the base, and chat completions
answer only for a served model name (404 otherwise, like vLLM).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.openai_server import FakeOpenAI


def _vllm_error(status: int, message: str, kind: str = "BadRequestError") -> web.Response:
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": status}},
                             status=status)


@dataclass
class FakeVLLM(FakeOpenAI):
    base_model: str = "base-model"
    adapters: dict[str, str] = field(default_factory=dict)  # lora_name -> lora_path
    hide_loaded: bool = False  # accept loads but never list them (a broken server)
    adapter_requests: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/load_lora_adapter", self._load)
        app.router.add_post("/v1/unload_lora_adapter", self._unload)
        app.router.add_get("/v1/models", self._models)
        app.router.add_post("/v1/chat/completions", self._served_chat)

    async def _load(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.adapter_requests.append((request.path, body))
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return _vllm_error(400, "Both 'lora_name' and 'lora_path' must be provided.")
        if name in self.adapters:
            return _vllm_error(400, f"The lora adapter '{name}' has already been loaded.")
        if not (Path(path) / "adapter_config.json").is_file():
            return _vllm_error(400, f"Loading lora {name} failed: No adapter found for {path}")
        if not self.hide_loaded:
            self.adapters[name] = path
        return web.Response(text=f"Success: LoRA adapter '{name}' added successfully.")

    async def _unload(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.adapter_requests.append((request.path, body))
        name = body.get("lora_name")
        if name not in self.adapters:
            return _vllm_error(404, f"The lora adapter '{name}' cannot be found.", "NotFoundError")
        del self.adapters[name]
        return web.Response(text=f"Success: LoRA adapter '{name}' removed successfully.")

    async def _models(self, request: web.Request) -> web.Response:
        created = int(time.time())
        data = [{"id": self.base_model, "object": "model", "created": created, "owned_by": "vllm",
                 "root": self.base_model, "parent": None}]
        data += [{"id": name, "object": "model", "created": created, "owned_by": "vllm", "root": path,
                  "parent": self.base_model} for name, path in self.adapters.items()]
        return web.json_response({"object": "list", "data": data})

    async def _served_chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        model = body.get("model")
        if model != self.base_model and model not in self.adapters:
            return _vllm_error(404, f"The model `{model}` does not exist.", "NotFoundError")
        return await self._chat(request)  # aiohttp keeps the body: the parent reads and records it again
