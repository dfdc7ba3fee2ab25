"""Ollama backends: the TD-073 baseline, through the official `ollama` Python client.

Two request shapes, one module (they share client, load/unload, memory, describe and
error translation in `_OllamaBase`):

* `OllamaEmbedBackend` ("ollama"): one POST /api/embed per batch with a list input.
  Vectors come back L2-normalised by Ollama's EmbedHandler; `prompt_tokens` is
  `prompt_eval_count`, `backend_time_s` is `total_duration` (request start in the
  server to answer, ns). The server embeds the items one after another: embedding
  models get one runner slot (server/sched.go, "Embedding models should always be
  loaded with parallel=1").
* `OllamaLegacyBackend` ("ollama-legacy"): one POST /api/embeddings per text, as the
  ticket's `EmbeddingService.embed` does. Vectors are returned as Ollama sends them:
  NOT normalised (the deprecated endpoint returns the runner's raw pooled vector).
  The response has no token count and no durations, so both are None.

Timing is the caller's: these classes only report Ollama's own figures alongside.
Memory is what /api/ps says (size_vram, size): Ollama runs in another container, and
NVML's per-process list does not show processes of another PID namespace, so a
per-process VRAM figure for Ollama is not available from here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from bench.backends.base import (
    BackendError,
    BackendOutOfMemory,
    BackendSettings,
    BackendUnavailable,
    EmbedResponse,
    LoadReport,
    LoopClient,
    MemoryFigure,
    explained_errors,
)

DEFAULT_PORT = 11434
# Long enough that the model stays loaded while other backends run in between phases;
# unload() ends it explicitly.
KEEP_ALIVE = "30m"
# One short text: the loading request also returns Ollama's `load_duration`
# (an empty-input /api/embed loads the model but answers without any durations).
LOAD_TEXT = "load"
LOAD_SOURCE = "ollama /api/embed load_duration"
# Ollama releases whose embedding behaviour changed (ollama/ollama): 0.13.3 embedding batch size
# (#13429) and truncation moved into the runner (#12839); 0.14 NaN/inf embeddings become an error
# (#13599); 0.15 VRAM-tiered default context length (0.15.5); 0.30 every GGML model on
# llama-server (#16031). A figure answers for the version that produced it.
OLLAMA_EMBEDDING_CHANGES = ("0.13.3", "0.14", "0.15", "0.30")
# Ollama unloads asynchronously (the runner process is stopped after the request returns).
UNLOAD_WAIT_S = 30.0
COLD_INCLUDES = ("first /api/embed after /api/ps stopped listing the model: Ollama starts the model's runner "
                 "process (llama-server since v0.30; CUDA initialised in it), loads the weights and embeds one "
                 "short text; HTTP round trip included")
WARM_INCLUDES = "first /api/embed while /api/ps still listed the model (warm: the runner may have been resident)"
_OOM_MARKERS = ("out of memory", "requires more system memory", "cudamalloc failed")


def base_url(host: str) -> str:
    """OLLAMA_HOST as the client reads it: scheme defaults to http, port to 11434."""
    text = host.strip() or f"127.0.0.1:{DEFAULT_PORT}"
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    hostname = parts.hostname or "127.0.0.1"
    if ":" in hostname:  # IPv6 literal
        hostname = f"[{hostname}]"
    port = parts.port or (DEFAULT_PORT if parts.scheme == "http" else 443)
    return f"{parts.scheme}://{hostname}:{port}{parts.path.rstrip('/')}"


def pull_hint(model: str) -> str:
    return f"run `ollama pull {model}` (in compose: docker compose exec ollama ollama pull {model})"


def explain_error(err: BaseException, host: str, model: str, timeout_s: float) -> BackendError | None:
    """One actionable line for what talking to Ollama raised; None if it is not ours to explain.

    Shared with the probe's Ollama check so both say the same thing.
    """
    import httpx
    import ollama

    where = base_url(host)
    if isinstance(err, ollama.ResponseError):
        text = str(err.error).strip()
        if err.status_code == 404 and "not found" in text:
            return BackendUnavailable(f"model '{model}' is not pulled on {where}: {pull_hint(model)}",
                                      http_status=err.status_code)
        if any(marker in text.lower() for marker in _OOM_MARKERS):
            return BackendOutOfMemory(f"Ollama at {where} ran out of memory: {one_line(text)}",
                                      http_status=err.status_code)
        if text.lstrip().lower().startswith(("<!doctype", "<html")):
            return BackendUnavailable(
                f"{where} answered HTTP {err.status_code} with an HTML page, not as Ollama does: "
                "is OLLAMA_HOST / --ollama-host the Ollama server (not a proxy or another service)?",
                http_status=err.status_code)
        return BackendError(f"Ollama at {where} answered HTTP {err.status_code}: {one_line(text)}",
                            http_status=err.status_code)
    if isinstance(err, httpx.TimeoutException):
        return BackendUnavailable(
            f"Ollama at {where} did not answer within {timeout_s:g} s ({type(err).__name__}): "
            "raise --timeout or check the server (model loading? GPU busy?)"
        )
    if isinstance(err, (ConnectionError, httpx.ConnectError)):
        return BackendUnavailable(
            f"Ollama not reachable at {where}: start it (docker compose up -d ollama) or set OLLAMA_HOST"
        )
    if isinstance(err, httpx.TransportError):  # RemoteProtocolError, ReadError, ...
        return BackendUnavailable(
            f"Ollama at {where} dropped the connection mid-request ({type(err).__name__}: {one_line(str(err))}): "
            "did the server crash or restart? see `docker compose logs ollama`"
        )
    if isinstance(err, ValueError):  # a 200 whose body is not Ollama's JSON (JSONDecodeError, pydantic)
        return BackendUnavailable(
            f"{where} sent an answer the ollama client cannot read ({type(err).__name__}: {one_line(str(err))}): "
            "is OLLAMA_HOST / --ollama-host the Ollama server?"
        )
    return None


def one_line(text: str, limit: int = 300) -> str:
    """The first line of a server's error text, cut to a readable length."""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    return first if len(first) <= limit and len(lines) <= 1 else first[:limit] + " ..."


def offload_state(size: int | None, size_vram: int | None) -> str | None:
    """"gpu" (all in VRAM), "cpu" (nothing in VRAM), "partial", or None if unknown."""
    if not size or size_vram is None:
        return None
    if size_vram >= size:
        return "gpu"
    if size_vram == 0:
        return "cpu"
    return "partial"


def model_matches(listed: str | None, wanted: str) -> bool:
    """Ollama's name matching: "bge-m3" means "bge-m3:latest"; case-insensitive."""
    if not listed:
        return False
    listed, wanted = listed.lower(), wanted.lower()
    if ":" not in wanted.rsplit("/", 1)[-1]:
        wanted = f"{wanted}:latest"
    if ":" not in listed.rsplit("/", 1)[-1]:
        listed = f"{listed}:latest"
    return listed == wanted


class _OllamaBase:
    """What both request shapes share. Subclasses set `name`, `endpoint` and `embed`."""

    name = ""
    endpoint = ""

    def __init__(self, settings: BackendSettings) -> None:
        self.settings = settings
        self.model = settings.ollama_model
        self.host = base_url(settings.ollama_host)
        self.options: dict[str, Any] | None = dict(settings.ollama_options) or None
        self._client = LoopClient(self._make_client)
        self._facts: dict[str, Any] = {}

    # -- plumbing ----------------------------------------------------------------------

    def client(self) -> Any:
        """The AsyncClient for the running event loop."""
        return self._client.get()

    def _make_client(self) -> Any:
        import ollama

        return ollama.AsyncClient(host=self.host, timeout=self.settings.timeout_s)

    def errors(self) -> contextlib.AbstractContextManager[None]:
        """Turn what the client raises into BackendError with one actionable line."""
        return explained_errors(lambda err: explain_error(err, self.host, self.model, self.settings.timeout_s))

    # -- protocol ----------------------------------------------------------------------

    async def load(self) -> LoadReport:
        """Unload (keep_alive 0), wait until /api/ps no longer lists the model, then time the
        first request. A model still listed after UNLOAD_WAIT_S is timed all the same and the
        figure marked warm: the runner may still have been resident."""
        await self._request_unload()
        cold = await self._wait_unloaded()
        client = self.client()
        started = time.perf_counter()
        with self.errors():
            response = await client.embed(
                model=self.model, input=[LOAD_TEXT], options=self.options, keep_alive=KEEP_ALIVE
            )
        wall_s = time.perf_counter() - started
        await self._collect_facts()
        load_ns = response.load_duration
        return LoadReport(
            wall_s=wall_s,
            reported_load_s=load_ns / 1e9 if load_ns is not None else None,
            reported_source=LOAD_SOURCE,
            cold=cold,
            includes=COLD_INCLUDES if cold else WARM_INCLUDES,
            note=None if cold else f"/api/ps still listed {self.model} {UNLOAD_WAIT_S:g} s after keep_alive 0: "
                                   "timed as a warm load",
        )

    async def prepare(self, texts: Sequence[str], token_counts: Sequence[int]) -> None:
        """Nothing to prepare: Ollama reports its own token count (`prompt_eval_count`) in the answer,
        so embed() is the request alone."""

    async def unload(self) -> None:
        """Unload and wait until /api/ps no longer lists the model, so what is measured next
        (native memory baselines included) does not see it; say so when it stays."""
        await self._request_unload()
        if not await self._wait_unloaded():
            raise BackendError(f"/api/ps still lists {self.model} {UNLOAD_WAIT_S:g} s after keep_alive 0: "
                               "memory figures taken next may include it")

    async def _request_unload(self) -> None:
        """keep_alive 0 with an empty prompt: Ollama expires the runner without loading it
        (GenerateHandler; what `ollama stop` sends). Works for embedding models too.
        Ollama unloads asynchronously: the model may stay listed for a while after this."""
        client = self.client()
        with self.errors():
            await client.generate(model=self.model, prompt="", keep_alive=0)

    async def memory(self) -> list[MemoryFigure]:
        entry = await self._ps_entry()
        not_loaded = "ollama /api/ps: model not loaded"
        size = int(entry.size) if entry is not None and entry.size is not None else None
        vram = int(entry.size_vram) if entry is not None and entry.size_vram is not None else None
        return [
            MemoryFigure(
                f"Ollama {self.model} in VRAM",
                vram,
                "ollama /api/ps size_vram" if entry is not None else not_loaded,
                attributable=True,  # Ollama's own account of this model's runner
            ),
            MemoryFigure(
                f"Ollama {self.model} total (VRAM + RAM)",
                size,
                "ollama /api/ps size" if entry is not None else not_loaded,
                attributable=True,
            ),
            MemoryFigure(
                "Ollama per-process VRAM",
                None,
                "not visible: NVML lists no processes of another container's PID namespace",
                attributable=False,
            ),
        ]

    def describe(self) -> dict[str, Any]:
        import ollama

        if "server_version" not in self._facts:
            self._facts.update(self._sync_facts())
        return {
            "backend": self.name,
            "kind": "ollama",
            "endpoint": f"{self.host}{self.endpoint}",
            "model": self.model,
            "server_version": self._facts.get("server_version"),
            "model_digest": self._facts.get("model_digest"),
            "digest": self._facts.get("model_digest"),
            "device": self._facts.get("offload"),
            "max_tokens": self._facts.get("context_length"),
            "max_tokens_source": "ollama /api/ps context_length",
            "offload": self._facts.get("offload"),
            "context_length": self._facts.get("context_length"),
            # GGUF weight type (F16 for bge-m3): what the roofline sizes the bytes per call with
            "weight_dtype": self._facts.get("weight_dtype"),
            "weight_dtype_source": self._facts.get("weight_dtype_source"),
            "options": dict(self.options or {}),
            "keep_alive": KEEP_ALIVE,
            "load_figure": COLD_INCLUDES,
            "truncate": "server default (true)" if self.endpoint == "/api/embed" else "not applicable",
            "normalised_by_server": self.endpoint == "/api/embed",
            # /api/embeddings takes one prompt: any batch is a loop of single calls.
            "one_call_per_text": self.endpoint == "/api/embeddings",
            "client": f"ollama-python {getattr(ollama, '__version__', 'unknown')}",
            "timeout_s": self.settings.timeout_s,
        }

    # -- facts -------------------------------------------------------------------------

    async def _ps_entry(self) -> Any:
        client = self.client()
        with self.errors():
            listed = await client.ps()
        return next((m for m in listed.models if model_matches(m.model or m.name, self.model)), None)

    async def _wait_unloaded(self) -> bool:
        """Poll /api/ps until the model is gone (True) or UNLOAD_WAIT_S passed (False)."""
        deadline = time.monotonic() + UNLOAD_WAIT_S
        while await self._ps_entry() is not None:
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.1)
        return True

    async def _collect_facts(self) -> None:
        """Version, digest and offload while the model is loaded (never raises)."""
        import httpx

        facts: dict[str, Any] = {}
        try:
            async with httpx.AsyncClient(base_url=self.host, timeout=min(10.0, self.settings.timeout_s)) as http:
                facts["server_version"] = (await http.get("/api/version")).json().get("version")
            entry = await self._ps_entry()
        except Exception:  # noqa: BLE001 - facts are optional
            entry = None
        if entry is not None:
            facts["model_digest"] = entry.digest
            facts["offload"] = offload_state(entry.size, entry.size_vram)
            facts["context_length"] = entry.context_length
            if entry.details is not None and entry.details.quantization_level:
                facts["weight_dtype"] = entry.details.quantization_level
                facts["weight_dtype_source"] = "ollama /api/ps details.quantization_level"
        self._facts.update({k: v for k, v in facts.items() if v is not None})

    def _sync_facts(self) -> dict[str, Any]:
        """describe() is synchronous: version and digest via plain HTTP; never raises."""
        import httpx

        facts: dict[str, Any] = {}
        try:
            with httpx.Client(base_url=self.host, timeout=min(5.0, self.settings.timeout_s)) as http:
                facts["server_version"] = http.get("/api/version").json().get("version")
                tags = http.get("/api/tags").json().get("models", [])
            entry = next((m for m in tags if model_matches(m.get("model") or m.get("name"), self.model)), None)
            if entry is not None:
                facts["model_digest"] = entry.get("digest")
                level = (entry.get("details") or {}).get("quantization_level")
                if level and "weight_dtype" not in self._facts:
                    facts["weight_dtype"] = level
                    facts["weight_dtype_source"] = "ollama /api/tags details.quantization_level"
        except Exception:  # noqa: BLE001 - facts are optional
            pass
        return facts


class OllamaEmbedBackend(_OllamaBase):
    """Batched: one POST /api/embed with the whole list (normalised vectors)."""

    name = "ollama"
    endpoint = "/api/embed"

    async def embed(self, texts: Sequence[str]) -> EmbedResponse:
        if not texts:  # an empty input would only (re)load the model
            return EmbedResponse(np.zeros((0, 0), dtype=np.float32), 0, 0.0)
        client = self.client()
        with self.errors():
            response = await client.embed(
                model=self.model, input=list(texts), options=self.options, keep_alive=KEEP_ALIVE
            )
        vectors = np.asarray(response.embeddings, dtype=np.float32)
        if vectors.shape[0] != len(texts):
            raise BackendError(
                f"Ollama at {self.host} returned {vectors.shape[0]} embeddings for {len(texts)} texts"
            )
        total = response.total_duration
        return EmbedResponse(
            vectors=vectors,
            prompt_tokens=response.prompt_eval_count,
            backend_time_s=total / 1e9 if total is not None else None,
        )


class OllamaLegacyBackend(_OllamaBase):
    """As the ticket's EmbeddingService: one POST /api/embeddings per text (raw vectors)."""

    name = "ollama-legacy"
    endpoint = "/api/embeddings"

    async def embed(self, texts: Sequence[str]) -> EmbedResponse:
        client = self.client()
        rows = []
        for text in texts:
            with self.errors():
                response = await client.embeddings(
                    model=self.model, prompt=text, options=self.options, keep_alive=KEEP_ALIVE
                )
            if not response.embedding:
                raise BackendError(
                    f"Ollama at {self.host} returned an empty embedding (it answers an empty prompt with [])"
                )
            rows.append(response.embedding)
        vectors = np.asarray(rows, dtype=np.float32) if rows else np.zeros((0, 0), dtype=np.float32)
        return EmbedResponse(vectors=vectors, prompt_tokens=None, backend_time_s=None)
