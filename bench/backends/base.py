"""The one interface every embedding backend implements.

Shaped like the service in TD-073 (`async embed(texts) -> vectors`), plus load/unload,
memory and a description. The bench loop only ever sees this protocol.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np


class BackendError(Exception):
    """A backend could not do what was asked; the message says what and what to do.

    `http_status`: the status of the server's answer, where the error was one (recorded with
    per-text failures). A plain BackendError from embed() may be about the texts in the call
    (the runner retries item by item to find out); infrastructure trouble is BackendUnavailable.
    """

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


class BackendUnavailable(BackendError):
    """The backend itself is gone or not answering (refused, timed out, connection dropped):
    never a property of the texts in the call, so nothing is retried item by item."""


class BackendOutOfMemory(BackendError):
    """The device ran out of memory for this call (the caller may retry smaller)."""


@dataclass(frozen=True)
class BackendSettings:
    """Everything a backend factory may need; each backend reads what applies to it."""

    model: str  # sentence-transformers model name or local path (native side)
    ollama_model: str = "bge-m3"
    ollama_host: str = "http://127.0.0.1:11434"
    timeout_s: float = 120.0
    ollama_options: dict[str, Any] = field(default_factory=dict)  # e.g. num_ctx, num_batch
    device: str | None = None  # None: cuda when available, else cpu
    attention_settings: dict[str, Any] = field(default_factory=dict)  # from probe.json
    max_seq_length: int | None = None  # None: the model's own


@dataclass(frozen=True)
class EmbedResponse:
    """What one embed call returned.

    vectors: (n, dim) float32 exactly as the backend produced them (not re-normalised).
    prompt_tokens: tokens the backend says it consumed for these texts
        (Ollama: `prompt_eval_count`; native: tokenizer count capped at max_seq_length).
    backend_time_s: time measured inside the backend for the work itself
        (native: model.encode in the worker thread; Ollama: `total_duration`), so the
        caller's wall time minus this is the wrapper/transport overhead.
    """

    vectors: np.ndarray
    prompt_tokens: int | None
    backend_time_s: float | None


@dataclass(frozen=True)
class LoadReport:
    """A cold load: wall time of the loading call and the backend's own figure if any."""

    wall_s: float
    reported_load_s: float | None
    reported_source: str  # e.g. "ollama /api/embed load_duration"


@dataclass(frozen=True)
class MemoryFigure:
    label: str  # e.g. "torch peak allocated"
    bytes: int | None  # None: could not be read (reason in `source`)
    source: str  # which API gave it, e.g. "torch.cuda.max_memory_allocated"


class EmbeddingBackend(Protocol):
    name: str

    async def load(self) -> LoadReport:
        """Load the model cold and return how long it took."""

    async def prepare(self, texts: Sequence[str], token_counts: Sequence[int]) -> None:
        """Untimed, before the calls that embed `texts`: any per-text work the backend would
        otherwise do inside embed() (native: its token counts), so that the caller's timer
        around embed() holds the embed call and nothing else.

        token_counts: each text's tokens by the native model's tokenizer (the workload's
        counts, special tokens included), counted once per text before any timing.
        """

    async def embed(self, texts: Sequence[str]) -> EmbedResponse:
        """Embed texts in one call, as the application would."""

    async def unload(self) -> None:
        """Release the model (and its device memory)."""

    async def memory(self) -> list[MemoryFigure]:
        """Memory figures the backend can honestly attribute to itself, each with its source."""

    def describe(self) -> dict[str, Any]:
        """Facts about this backend for the results file (versions, dtype, endpoint...)."""
