"""Any OpenAI-compatible embeddings server ("openai"): llama.cpp's llama-server, TEI, vLLM,
Infinity. The server runs outside the bench; this backend only talks to it.

One POST {base}/v1/embeddings per batch with a list `input` and `model`. Vectors are
returned exactly as the server sent them; whether they arrive L2-normalised is measured
(the norms of every vector seen) and recorded in describe(). `prompt_tokens` is the
answer's `usage.prompt_tokens` (per text in the batch-size-1 pass, which is what the
truncation check reads). The OpenAI API reports no server-side duration, so
`backend_time_s` is None and the wrapper overhead is not split out.

The API key is read from OPENAI_API_KEY at call time, sent as a bearer token and never
stored in any result. The server's identity is whatever it answers on /v1/models,
/props (llama-server), /info (TEI) and the `Server` header; memory is not visible
through the API, so it is reported as not available with that reason.

Errors: refused, timed out, dropped connections, HTML pages, authentication, a missing
embeddings route and a server still loading are BackendUnavailable (nothing about the
texts); any other error answer is a BackendError carrying the HTTP status and the
server's own message in one line, e.g. llama-server's 500 "input (616 tokens) is too
large to process. increase the physical batch size" or its 400 exceed_context_size_error.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

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
from bench.backends.ollama import one_line

API_KEY_ENV = "OPENAI_API_KEY"
DEFAULT_URL = "http://127.0.0.1:8080"
LOAD_TEXT = "load"
LOAD_SOURCE = "wall: first /v1/embeddings call; the server loaded its model when it started (not a cold load)"
LOAD_INCLUDES = "the first /v1/embeddings request to an already running server"
LOAD_NOTE = "the server loaded its model when it started, outside the bench: its cold load is not visible here"
READY_WAIT_S = 60.0
# A vector counts as normalised by the server when its L2 norm is within this of 1.
NORM_TOLERANCE = 1e-3
# Answers that say the server, not the texts, is the problem: nothing is retried per text.
_UNAVAILABLE_STATUSES = {401, 403, 404, 405, 501, 502, 503, 504}
_OOM_MARKERS = ("out of memory", "cudamalloc failed", "failed to allocate")


def base_url(url: str) -> str:
    """The server root: scheme defaults to http; a trailing /v1 (the OpenAI SDK's
    OPENAI_BASE_URL convention) is dropped, since this backend adds /v1/... itself."""
    text = url.strip() or DEFAULT_URL
    if "://" not in text:
        text = f"http://{text}"
    parts = urlsplit(text)
    path = parts.path.rstrip("/")
    path = path[: -len("/v1")] if path.endswith("/v1") else path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


def redacted(url: str) -> str:
    """The URL without user:password, for messages and results."""
    from probe.facts import redact_url_credentials

    return redact_url_credentials(url)


def error_message(body: Any, text: str) -> str:
    """The server's own error text: OpenAI's and llama-server's {"error": {"message"}}, TEI's
    {"message", "code", "error_type"}, a plain {"error": "..."}, or else the body."""
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str) and error:
            return error
        if isinstance(body.get("message"), str):
            return body["message"]
    return text


def explain_status(where: str, status: int, message: str) -> BackendError:
    """An HTTP error answer as the right BackendError, in one line."""
    line = one_line(message) or "(empty body)"
    if message.lstrip().lower().startswith(("<!doctype", "<html")):
        return BackendUnavailable(
            f"{where} answered HTTP {status} with an HTML page, not as an OpenAI-compatible server does: "
            "is --openai-url / OPENAI_BASE_URL the embeddings server?", http_status=status)
    if status in (401, 403):
        return BackendUnavailable(f"{where} refused the request (HTTP {status}: {line}): "
                                  f"set {API_KEY_ENV} to the server's API key", http_status=status)
    if status in (404, 405, 501):
        return BackendUnavailable(
            f"{where} has no usable /v1/embeddings (HTTP {status}: {line}): is it an embeddings server "
            "(llama-server needs --embedding) and is the model name right (--openai-model)?", http_status=status)
    if any(marker in line.lower() for marker in _OOM_MARKERS):
        return BackendOutOfMemory(f"{where} ran out of memory (HTTP {status}: {line})", http_status=status)
    if status in _UNAVAILABLE_STATUSES:
        return BackendUnavailable(f"{where} is not ready (HTTP {status}: {line})", http_status=status)
    return BackendError(f"{where} answered HTTP {status}: {line}", http_status=status)


def explain_transport(err: BaseException, where: str, timeout_s: float) -> BackendError | None:
    """What httpx raised, as BackendUnavailable with what to do; None if it is not a transport error."""
    import httpx

    if isinstance(err, httpx.TimeoutException):
        return BackendUnavailable(f"{where} did not answer within {timeout_s:g} s ({type(err).__name__}): "
                                  "raise --timeout or check the server")
    if isinstance(err, httpx.ConnectError):
        return BackendUnavailable(f"no embeddings server reachable at {where}: start it "
                                  "(e.g. llama-server --embedding) or pass --openai-url / OPENAI_BASE_URL")
    if isinstance(err, httpx.TransportError):
        return BackendUnavailable(f"{where} dropped the connection mid-request "
                                  f"({type(err).__name__}: {one_line(str(err))}): did the server crash or restart?")
    return None


def norm_facts(count: int, low: float, high: float) -> dict[str, Any]:
    """Whether the `count` vectors seen, with L2 norms between `low` and `high`, arrived
    normalised by the server, with that evidence. Pure."""
    if count == 0:
        return {"normalised_by_server": None, "vector_norms": None}
    return {
        "normalised_by_server": abs(low - 1) <= NORM_TOLERANCE and abs(high - 1) <= NORM_TOLERANCE,
        "vector_norms": {"count": count, "min": low, "max": high,
                         "source": "measured: L2 norm of every finite vector returned"},
    }


class OpenAIEmbeddingsBackend:
    """POST {base}/v1/embeddings with a list input; one call per batch."""

    name = "openai"

    def __init__(self, settings: BackendSettings, transport: Any = None) -> None:
        self.settings = settings
        self.transport = transport  # an httpx transport; tests pass a MockTransport
        self.host = base_url(settings.openai_url or DEFAULT_URL)
        self.where = redacted(self.host)
        self.model: str | None = settings.openai_model
        self._client = LoopClient(self._make_client)
        self._facts: dict[str, Any] = {}
        self._norm_min = np.inf
        self._norm_max = -np.inf
        self._norm_count = 0

    # -- plumbing ----------------------------------------------------------------------

    def client(self) -> Any:
        """The AsyncClient for the running event loop."""
        return self._client.get()

    def _make_client(self) -> Any:
        import httpx

        key = os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        return httpx.AsyncClient(base_url=self.host, timeout=self.settings.timeout_s, headers=headers,
                                 limits=httpx.Limits(max_connections=64), transport=self.transport)

    def errors(self) -> contextlib.AbstractContextManager[None]:
        return explained_errors(lambda err: explain_transport(err, self.where, self.settings.timeout_s))

    async def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[Any, Any]:
        """(parsed JSON, response); an error answer or a non-JSON body raises BackendError."""
        with self.errors():
            response = await self.client().request(method, path, json=body)
        try:
            parsed = response.json()
        except ValueError:
            parsed = None
        if response.status_code >= 400:
            raise explain_status(self.where, response.status_code, error_message(parsed, response.text))
        if parsed is None:
            raise BackendUnavailable(f"{self.where}{path} answered HTTP {response.status_code} without JSON: "
                                     "is --openai-url / OPENAI_BASE_URL an OpenAI-compatible server?")
        return parsed, response

    # -- protocol ----------------------------------------------------------------------

    async def load(self) -> LoadReport:
        """Wait until the server answers, pick the model, then one timed embed call. The server
        loaded its model when it started, outside the bench: this is not a cold load."""
        await self._wait_ready()
        if self.model is None:
            listed, _ = await self._request("GET", "/v1/models")
            ids = [m.get("id") for m in (listed.get("data") or []) if isinstance(m, dict) and m.get("id")]
            if not ids:
                raise BackendUnavailable(f"{self.where}/v1/models lists no model: pass --openai-model")
            self.model = ids[0]
        started = time.perf_counter()
        await self.embed([LOAD_TEXT])
        wall_s = time.perf_counter() - started
        await self._collect_facts()
        return LoadReport(wall_s=wall_s, reported_load_s=None, reported_source=LOAD_SOURCE, cold=False,
                          includes=LOAD_INCLUDES, note=LOAD_NOTE)

    async def prepare(self, texts: Sequence[str], token_counts: Sequence[int]) -> None:
        """Nothing to prepare: the server counts tokens itself (usage.prompt_tokens in the answer)."""

    async def embed(self, texts: Sequence[str]) -> EmbedResponse:
        texts = list(texts)
        if not texts:
            return EmbedResponse(np.zeros((0, 0), dtype=np.float32), 0, None)
        body = {"input": texts, "model": self.model or "", "encoding_format": "float"}
        parsed, _ = await self._request("POST", "/v1/embeddings", body)
        rows = parsed.get("data") if isinstance(parsed, dict) else None
        if not isinstance(rows, list) or len(rows) != len(texts):
            got = len(rows) if isinstance(rows, list) else "no"
            raise BackendError(f"{self.where} returned {got} embeddings for {len(texts)} texts")
        # OpenAI's schema gives each row its index; order by it, not by position.
        rows = sorted(rows, key=lambda r: r.get("index", 0))
        vectors = np.asarray([r.get("embedding") for r in rows], dtype=np.float32)
        if vectors.ndim != 2:
            raise BackendError(f"{self.where} returned embeddings that are not one flat vector per text")
        self._record_norms(vectors)
        usage = parsed.get("usage") or {}
        tokens = usage.get("prompt_tokens")
        return EmbedResponse(vectors=vectors, prompt_tokens=int(tokens) if tokens is not None else None,
                             backend_time_s=None)

    async def unload(self) -> None:
        """The server keeps its model; only this client's connections are closed."""
        client = self._client.forget()
        if client is not None:
            with contextlib.suppress(Exception):
                await client.aclose()

    async def memory(self) -> list[MemoryFigure]:
        return [MemoryFigure("server memory", None,
                             "not reported by the OpenAI embeddings API; the server runs outside the bench",
                             attributable=True)]

    def describe(self) -> dict[str, Any]:
        facts = self._facts
        return {
            "backend": self.name,
            "kind": "openai",
            "endpoint": f"{self.where}/v1/embeddings",
            "model": self.model,
            "server": facts.get("server"),
            "server_version": facts.get("server_version"),
            "server_version_source": facts.get("server_version_source"),
            "models_listed": facts.get("models_listed"),
            "device": "server-side (not visible through the API)",
            "max_tokens": facts.get("max_tokens"),
            "max_tokens_source": facts.get("max_tokens_source", "not reported by the server"),
            "slots": facts.get("slots"),
            "dimension": facts.get("dimension"),
            "model_precision": facts.get("model_precision"),
            **norm_facts(self._norm_count, self._norm_min, self._norm_max),
            "truncate": "not requested: the server's own behaviour (llama-server refuses an over-long input, "
                        "it never cuts one)",
            "api_key": "from OPENAI_API_KEY (not recorded)" if os.environ.get(API_KEY_ENV) else "none",
            "client": f"httpx {_version('httpx')}",
            "timeout_s": self.settings.timeout_s,
        }

    # -- facts -------------------------------------------------------------------------

    def _record_norms(self, vectors: np.ndarray) -> None:
        norms = np.linalg.norm(vectors.astype(np.float64), axis=1)
        finite = norms[np.isfinite(norms)]
        if finite.size:
            self._norm_min = min(self._norm_min, float(finite.min()))
            self._norm_max = max(self._norm_max, float(finite.max()))
            self._norm_count += int(finite.size)

    async def _wait_ready(self) -> None:
        """llama-server answers /health with 503 while it loads its model: wait for that to end.
        A refused connection fails at once (no server); a server without /health counts as ready."""
        deadline = time.monotonic() + min(READY_WAIT_S, self.settings.timeout_s)
        while True:
            with self.errors():
                response = await self.client().get("/health")
            if response.status_code != 503 or time.monotonic() >= deadline:
                return
            await asyncio.sleep(0.25)

    async def _collect_facts(self) -> None:
        """Identity and limits from whatever the server answers; never raises."""
        facts: dict[str, Any] = {}
        with contextlib.suppress(Exception):
            response = await self.client().get("/v1/models")
            listed = [m for m in (response.json().get("data") or []) if isinstance(m, dict)]
            facts["models_listed"] = [m.get("id") for m in listed]
            facts["server"] = response.headers.get("server")
            entry = next((m for m in listed if m.get("id") == self.model), listed[0] if listed else {})
            meta = entry.get("meta") or {}
            facts["dimension"] = meta.get("n_embd")
            facts["owned_by"] = entry.get("owned_by")
        with contextlib.suppress(Exception):  # llama-server
            props = (await self.client().get("/props")).json()
            if props.get("build_info"):
                facts["server_version"] = f"llama.cpp {props['build_info']}"
                facts["server_version_source"] = "GET /props build_info"
            n_ctx = (props.get("default_generation_settings") or {}).get("n_ctx")
            if n_ctx:
                facts["max_tokens"] = int(n_ctx)
                facts["max_tokens_source"] = "llama-server /props default_generation_settings.n_ctx (per slot)"
            facts["slots"] = props.get("total_slots")
            facts["model_precision"] = props.get("model_ftype")
        with contextlib.suppress(Exception):  # text-embeddings-inference
            info = (await self.client().get("/info")).json()
            if info.get("version"):
                facts["server_version"] = f"{info.get('model_id', 'TEI')} TEI {info['version']}"
                facts["server_version_source"] = "GET /info version"
            if info.get("max_input_length"):
                facts["max_tokens"] = int(info["max_input_length"])
                facts["max_tokens_source"] = "TEI /info max_input_length"
        if "server_version" not in facts and facts.get("server"):
            facts["server_version"] = facts["server"]
            facts["server_version_source"] = "HTTP Server header"
        self._facts.update({k: v for k, v in facts.items() if v is not None})


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"
