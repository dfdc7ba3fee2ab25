"""Backend registry: name -> factory. A new backend is one module and one line here.

Factories import their module lazily so `python -m bench --help` and the probe stay
fast and work even when a backend's heavy dependency is broken.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.backends.base import BackendSettings, EmbeddingBackend

BackendFactory = Callable[[BackendSettings], EmbeddingBackend]


@dataclass(frozen=True)
class ProbeGate:
    """What probe.json must show before the bench loads a backend (checked by runner.gate_reason)."""

    dtype: str | None = None  # the sentence_transformers check did not flag this dtype (NaN/inf, low cosine)
    needs_compile: bool = False  # the triton check passed (Triton and torch.compile ran and matched)


def _native(dtype: str, compile_model: bool = False) -> BackendFactory:
    def make(settings: BackendSettings) -> EmbeddingBackend:
        from bench.backends.native import NativeBackend

        return NativeBackend(settings, dtype=dtype, compile_model=compile_model)

    return make


def _ollama(settings: BackendSettings) -> EmbeddingBackend:
    from bench.backends.ollama import OllamaEmbedBackend

    return OllamaEmbedBackend(settings)


def _ollama_legacy(settings: BackendSettings) -> EmbeddingBackend:
    from bench.backends.ollama import OllamaLegacyBackend

    return OllamaLegacyBackend(settings)


def _openai(settings: BackendSettings) -> EmbeddingBackend:
    from bench.backends.openai import OpenAIEmbeddingsBackend

    return OpenAIEmbeddingsBackend(settings)


BACKENDS: dict[str, BackendFactory] = {
    "ollama": _ollama,
    "ollama-legacy": _ollama_legacy,
    "native-fp32": _native("float32"),
    "native-fp16": _native("float16"),
    "native-bf16": _native("bfloat16"),
    # Opt-in (in no profile): torch.compile(dynamic=True) on the model, its own variant, never chosen silently.
    "native-fp16-compile": _native("float16", compile_model=True),
    # Any OpenAI-compatible embeddings server the user runs (llama-server, TEI, vLLM, Infinity);
    # opt-in: in no profile, measured beside the ticket's two sides, never one of them.
    "openai": _openai,
}

# Backends absent here run without conditions.
PROBE_GATES: dict[str, ProbeGate] = {
    "native-fp32": ProbeGate(dtype="float32"),
    "native-fp16": ProbeGate(dtype="float16"),
    "native-bf16": ProbeGate(dtype="bfloat16"),
    "native-fp16-compile": ProbeGate(dtype="float16", needs_compile=True),
}
