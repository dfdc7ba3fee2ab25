"""The one interface every embedding backend implements.

Shaped like the service in TD-073 (`async embed(texts) -> vectors`), plus load/unload,
memory and a description. The bench loop only ever sees this protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Sequence
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


@contextlib.contextmanager
def explained_errors(explain: Callable[[BaseException], BackendError | None]) -> Iterator[None]:
    """Re-raise what an HTTP client raises as the BackendError `explain` gives for it (one
    actionable line); a BackendError passes through, anything `explain` cannot place as it is."""
    try:
        yield
    except BackendError:
        raise
    except Exception as err:  # noqa: BLE001 - explained below or re-raised as is
        explained = explain(err)
        if explained is None:
            raise
        raise explained from err


class LoopClient:
    """One HTTP client per running event loop: pooled connections belong to the loop that made
    them, and the bench runs a fresh loop per phase (asyncio.run)."""

    def __init__(self, make: Callable[[], Any]) -> None:
        self._make = make
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def get(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            self._client, self._loop = self._make(), loop
        return self._client

    def forget(self) -> Any:
        """The current client (None if none), no longer handed out: the caller closes it."""
        client, self._client, self._loop = self._client, None, None
        return client


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
    # Native: time the cold load in a fresh child process (CUDA context included), as Ollama's
    # cold load starts a runner process. Off only where a test does not need the figure.
    fresh_process_cold_load: bool = True
    openai_url: str | None = None  # an OpenAI-compatible embeddings server (llama-server, TEI, vLLM, ...)
    openai_model: str | None = None  # None: the first model its /v1/models lists


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
    """One model load: the figure, what it covers, and whether it was really cold.

    wall_s: the load figure in seconds, timed by the backend as `includes` says.
    reported_load_s / reported_source: the backend's own figure beside it, if it has one.
    cold: True only when nothing of the model was resident when the timer started (native: a
        fresh process; Ollama: /api/ps no longer listed the model). A warm figure is kept,
        labelled, and never counts as a cold load.
    includes: what wall_s covers, in words (shown in the verdict's load table).
    parts_s: figures measured beside it, by name (e.g. imports, the whole child process).
    note: why the load is not cold, or what went wrong measuring it cold.
    """

    wall_s: float
    reported_load_s: float | None
    reported_source: str  # e.g. "ollama /api/embed load_duration"
    cold: bool
    includes: str
    parts_s: dict[str, float] = field(default_factory=dict)
    note: str | None = None


@dataclass(frozen=True)
class MemoryFigure:
    label: str  # e.g. "torch peak allocated"
    bytes: int | None  # None: could not be read (reason in `source`)
    source: str  # which API gave it, e.g. "torch.cuda.max_memory_allocated"
    # True: the figure belongs to this backend alone (its allocator, its process, its model in
    # Ollama). False: a wider figure (device- or system-wide delta, the whole bench process),
    # shown as secondary and never used to answer the ticket's memory questions.
    attributable: bool


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
