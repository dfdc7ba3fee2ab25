"""Backend registry: name -> factory. A new backend is one module and one line here.

Factories import their module lazily so `python -m bench --help` and the probe stay
fast and work even when a backend's heavy dependency is broken.
"""

from __future__ import annotations

from collections.abc import Callable

from bench.backends.base import BackendSettings, EmbeddingBackend

BackendFactory = Callable[[BackendSettings], EmbeddingBackend]


def _native(dtype: str) -> BackendFactory:
    def make(settings: BackendSettings) -> EmbeddingBackend:
        from bench.backends.native import NativeBackend

        return NativeBackend(settings, dtype=dtype)

    return make


def _ollama(settings: BackendSettings) -> EmbeddingBackend:
    from bench.backends.ollama import OllamaEmbedBackend

    return OllamaEmbedBackend(settings)


def _ollama_legacy(settings: BackendSettings) -> EmbeddingBackend:
    from bench.backends.ollama import OllamaLegacyBackend

    return OllamaLegacyBackend(settings)


BACKENDS: dict[str, BackendFactory] = {
    "ollama": _ollama,
    "ollama-legacy": _ollama_legacy,
    "native-fp32": _native("float32"),
    "native-fp16": _native("float16"),
    "native-bf16": _native("bfloat16"),
}
