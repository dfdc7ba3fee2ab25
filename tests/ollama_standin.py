"""An Ollama-API stand-in for tests: real vectors from an engine (tests/standin_engines.py),
served on 127.0.0.1 the way Ollama's server answers.

NOTHING THIS SERVER REPORTS IS AN OLLAMA FIGURE. Durations, sizes, digests and the
version string describe this stand-in and its engine (all-MiniLM-L6-v2 in a Python
thread, or a llama.cpp llama-server built here, on CPU), never Ollama or bge-m3. It
exists so the Ollama client code, the bench backends and the probe check can be
exercised through the real `ollama` Python client without an Ollama server. With the
llama-server engine, vectors, token counts and length refusals are llama.cpp's own and
the stand-in adds only Ollama's layer.

Behaviour follows ollama/ollama's source (server/routes.go and server/sched.go as
stored in the search index) and docs/api.md:

* POST /api/embed (EmbedHandler): `input` is a string or a list of strings (anything
  else: 400 "invalid input type"); an empty string or empty list only loads the model
  and answers {"model", "embeddings": []} with no durations. Each item is embedded on
  its own and L2-normalised by the handler (`normalize`), optionally cut to
  `dimensions` and normalised again. Items go through one runner slot (sched.go:
  "Embedding models should always be loaded with parallel=1"), so a list is processed
  one item after another. Too long for min(num_ctx, model context): with `truncate`
  (default true) the tokens are cut to fit (special tokens included; with llama-server,
  Ollama's embedWithRetry: tokenize, cut, detokenize, embed again), otherwise
  400 "the input length exceeds the context length". `prompt_eval_count` is the sum
  of the tokens each item was embedded with (after truncation); `total_duration` and
  `load_duration` are nanoseconds since the request started (`load_duration` =
  until the runner was ready: long when this request loaded the model, tiny but not
  zero when it was already loaded).
* POST /api/embeddings (EmbeddingsHandler, deprecated): {"embedding": [...]} as the
  runner produced it: raw from the in-process engine (ollama/ollama#8094: "/api/embeddings
  returns un-normalized embeddings"); from llama-server raw only where Ollama asks it to
  be (legacyEmbeddingsWereRaw: not for WordPiece BERT models such as all-MiniLM); no token
  count, no durations; empty prompt only loads; too long: 500 with the runner's text.
* Unknown model on embed/embeddings: 404 `model "X" not found, try pulling it first`
  (handleScheduleError, %q quoting); on show/generate: 404 `model 'X' not found`.
* Runner options (num_ctx, num_batch, num_gpu, ...) different from the loaded ones
  reload the model (a request without options means the defaults, so it reloads too).
* keep_alive: seconds (number) or a Go duration string ("5m", "30s", "-1"); default
  5m; 0 unloads after the request; negative keeps it loaded. POST /api/generate with
  an empty prompt and keep_alive 0 unloads without loading (what `ollama stop` sends).
* GET /api/version, GET /api/tags, POST /api/show, GET /api/ps with the fields of
  api/types.go (ps: name, model, size, size_vram, digest, details, expires_at,
  context_length).

NaN vectors (ollama/ollama#13572, #14657, #15582, #16625: bge-m3 gives NaN for some texts on
some GPUs): `nan_for(texts)` makes the runner's vector NaN for exactly those texts. /api/embed
then answers 500 "embedding contains NaN or Inf values" from its normalisation, failing the
whole list; /api/embeddings, which does not normalise, fails to encode its answer: 500
"failed to encode response: json: unsupported value: NaN" (the text users report).

Fault injection (all thread-safe, settable while the server runs): `fail_with`
(HTTP status + Ollama-style error body), `hang` (sleep before answering, e.g. past
the client's timeout), `die_after` (after N embedded items the server stops: every
socket closes, the request in flight gets no answer, new connections are refused),
`stop` (die now), `remove_model` (not pulled), `item_delay_s` (extra time per item),
`unload_delay_s` (keep_alive 0 takes effect this much later; math.inf: never),
`offload` ("gpu", "partial", "cpu": what /api/ps says about size_vram).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from standin_engines import RunnerError

STANDIN_VERSION = "0.0.0-standin"
DEFAULT_KEEP_ALIVE_S = 300.0  # Ollama's default keep_alive is 5m
# The api.Runner options: a change in any of them makes the scheduler reload the model.
RUNNER_OPTIONS = ("num_ctx", "num_batch", "num_gpu", "main_gpu", "use_mmap", "num_thread")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class _Dead(Exception):
    """The server was told to die while handling this request."""


@dataclass
class Faults:
    """What to break; tests set these while the server runs."""

    error: tuple[int, str] | None = None  # (HTTP status, error text) for inference calls
    hang_s: float = 0.0  # sleep this long before answering an inference call
    die_after_items: int | None = None  # die once this many more items were embedded
    item_delay_s: float = 0.0  # extra seconds per embedded item
    model_missing: bool = False  # the model is not pulled
    nan_texts: frozenset[str] = frozenset()  # texts whose runner output is NaN
    # Ollama unloads asynchronously: after keep_alive 0 the model stays loaded and listed by
    # /api/ps for this long (math.inf: the runner never goes away).
    unload_delay_s: float = 0.0


@dataclass
class _Loaded:
    options: dict[str, Any]
    expires_at: float  # time.time(); math.inf for "forever"
    num_ctx: int


@dataclass
class RequestRecord:
    method: str
    path: str
    body: dict[str, Any] | None


@dataclass
class StandInConfig:
    model_name: str = "bge-m3"  # served as "bge-m3:latest"
    num_ctx: int = 128  # default context (Ollama's default depends on VRAM; small here)
    load_delay_s: float = 0.05  # how long a (re)load takes, on top of the real work
    offload: str = "gpu"  # "gpu": size_vram == size, "cpu": 0, "partial": half
    version: str = STANDIN_VERSION


class OllamaStandIn:
    """The stand-in server. Use as a context manager; `.host` is its URL.

    `engine` computes each item (standin_engines.SentenceTransformerEngine); the stand-in
    adds Ollama's layer and calls it through one runner slot, one item at a time.
    """

    def __init__(self, engine: Any, config: StandInConfig | None = None) -> None:
        self.engine = engine
        self.config = config or StandInConfig()
        self.faults = Faults()
        self.requests: list[RequestRecord] = []
        self.load_count = 0
        self._loaded: _Loaded | None = None
        self._state_lock = threading.Lock()  # model state and request log
        self._runner_lock = threading.Lock()  # one runner slot: one item at a time
        self._release = threading.Event()  # set on stop: hanging handlers return
        self._dead = False
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.size_bytes = engine.size_bytes
        self.digest = hashlib.sha256(f"ollama-standin:{self.config.model_name}".encode()).hexdigest()
        self.modified_at = datetime.now(timezone.utc).isoformat()

    # -- lifecycle -------------------------------------------------------------

    def start(self) -> OllamaStandIn:
        self._server = _Server(("127.0.0.1", 0), _Handler, self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )
        self._thread.start()
        return self

    def __enter__(self) -> OllamaStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Die: close the listening socket and every open connection."""
        self._dead = True
        self._release.set()
        server = self._server
        if server is None:
            return
        if self._thread is not None and self._thread is not threading.current_thread():
            server.shutdown()
        server.server_close()
        server.close_all_connections()

    # -- fault controls ------------------------------------------------------------

    def fail_with(self, status: int, message: str) -> None:
        self.faults.error = (status, message)

    def nan_for(self, texts) -> None:
        self.faults.nan_texts = frozenset(texts)

    def hang(self, seconds: float) -> None:
        self.faults.hang_s = seconds

    def die_after(self, items: int) -> None:
        self.faults.die_after_items = items

    def remove_model(self) -> None:
        self.faults.model_missing = True
        with self._state_lock:
            self._loaded = None

    def reset_faults(self) -> None:
        self.faults = Faults()

    # -- state seen by tests -------------------------------------------------------

    @property
    def loaded(self) -> bool:
        with self._state_lock:
            return self._current() is not None

    def paths(self) -> list[str]:
        with self._state_lock:
            return [r.path for r in self.requests]

    # -- helpers for the handler -----------------------------------------------------

    def _current(self) -> _Loaded | None:
        """The loaded model, dropping it if its keep_alive ran out (state lock held)."""
        if self._loaded is not None and self._loaded.expires_at <= time.time():
            self._loaded = None
        return self._loaded

    def _matches(self, name: str | None) -> bool:
        if not name or self.faults.model_missing:
            return False
        want = self.config.model_name.lower()
        return name.lower() in (want, f"{want}:latest")

    def _runner_options(self, options: dict[str, Any] | None) -> dict[str, Any]:
        opts = {"num_ctx": self.config.num_ctx}
        for key, value in (options or {}).items():
            if key in RUNNER_OPTIONS and value is not None:
                opts[key] = value
        return opts

    def _schedule(self, options: dict[str, Any] | None) -> _Loaded:
        """Get a runner with these options, loading or reloading as needed."""
        wanted = self._runner_options(options)
        with self._state_lock:
            current = self._current()
            if current is not None and current.options == wanted:
                return current
        with self._runner_lock:  # a load occupies the runner like Ollama's scheduler
            time.sleep(self.config.load_delay_s)
            loaded = _Loaded(
                options=wanted,
                expires_at=time.time() + DEFAULT_KEEP_ALIVE_S,
                num_ctx=int(wanted["num_ctx"]),
            )
            with self._state_lock:
                self._loaded = loaded
                self.load_count += 1
        return loaded

    def _finish(self, keep_alive: Any) -> None:
        """Apply keep_alive after a request (0 unloads now)."""
        seconds = parse_keep_alive(keep_alive)
        with self._state_lock:
            if self._loaded is None:
                return
            if seconds == 0:
                self._unload()
            elif seconds < 0:
                self._loaded.expires_at = math.inf
            else:
                self._loaded.expires_at = time.time() + seconds

    def _unload(self) -> None:
        """keep_alive 0 (state lock held): gone now, or after the injected unload delay."""
        if self._loaded is not None and self.faults.unload_delay_s > 0:
            self._loaded.expires_at = min(self._loaded.expires_at, time.time() + self.faults.unload_delay_s)
        else:
            self._loaded = None

    def _run_item(self, text: str, work: Callable[[], tuple[np.ndarray, int | None]]) -> tuple[np.ndarray, int | None]:
        """One item's engine work, (vector, tokens), through the single runner slot, with the per-item faults."""
        with self._runner_lock:
            if self._dead:
                raise _Dead
            if self.faults.item_delay_s:
                time.sleep(self.faults.item_delay_s)
            vector, count = work()
            if text in self.faults.nan_texts:
                vector = np.full_like(vector, np.nan)
            if self.faults.die_after_items is not None:
                self.faults.die_after_items -= 1
                if self.faults.die_after_items < 0:
                    raise _Dead
        return vector, count

    def _ctx_len(self, loaded: _Loaded) -> int:
        return min(loaded.num_ctx, self.engine.context_length)

    def _model_details(self) -> dict[str, Any]:
        return {
            "parent_model": "",
            "format": self.engine.format,
            "family": "bert",
            "families": ["bert"],
            "parameter_size": self.engine.parameter_size,
            "quantization_level": self.engine.quantization_level,
        }

    def _size_vram(self) -> int:
        fraction = {"gpu": 1.0, "partial": 0.5, "cpu": 0.0}[self.config.offload]
        return int(self.size_bytes * fraction)


def parse_keep_alive(value: Any) -> float:
    """keep_alive as Ollama reads it: a number is seconds, a string a Go duration."""
    if value is None:
        return DEFAULT_KEEP_ALIVE_S
    if isinstance(value, (int, float)):
        return float(value)
    text = str(value).strip()
    try:
        return float(text)
    except ValueError:
        pass
    parts = re.findall(r"(-?[\d.]+)(ns|us|µs|ms|s|m|h)", text)
    if not parts or "".join(a + b for a, b in parts) != text:
        raise ValueError(f"time: invalid duration {text!r}")
    return sum(float(num) * _DURATION_UNITS[unit] for num, unit in parts)


def _expires_at(expires: float) -> str:
    if math.isinf(expires):
        return (datetime.now(timezone.utc) + timedelta(days=365 * 100)).isoformat()
    return datetime.fromtimestamp(expires, timezone.utc).isoformat()


NAN_EMBED_ERROR = "embedding contains NaN or Inf values"
NAN_ENCODE_ERROR = "failed to encode response: json: unsupported value: NaN"


def _normalize(vec: np.ndarray) -> np.ndarray:
    """routes.go normalize(): v / max(||v||, 1e-12); NaN/Inf fails the request. EmbedHandler
    answers an error that is not an api.StatusError with 400 (since ollama e082d60a2, Dec 2025;
    the 500 in older field reports came before it)."""
    if not np.all(np.isfinite(vec)):
        raise _HTTPError(400, NAN_EMBED_ERROR)
    return vec / max(float(np.sqrt(np.sum(vec.astype(np.float64) ** 2))), 1e-12)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's default backlog of 5 resets bursts of callers
    block_on_close = False

    def __init__(self, address: tuple[str, int], handler: type, standin: OllamaStandIn) -> None:
        self.standin = standin
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def close_all_connections(self) -> None:
        with self.connections_lock:
            conns = list(self.connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class _HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as httpx expects from Ollama
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib name
        pass

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    # -- plumbing --------------------------------------------------------------------

    @property
    def standin(self) -> OllamaStandIn:
        return self.server.standin

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        routes = {
            ("GET", "/"): self._root,
            ("HEAD", "/"): self._root,
            ("GET", "/api/version"): self._version,
            ("GET", "/api/tags"): self._tags,
            ("GET", "/api/ps"): self._ps,
            ("POST", "/api/show"): self._show,
            ("POST", "/api/embed"): self._embed,
            ("POST", "/api/embeddings"): self._embeddings,
            ("POST", "/api/generate"): self._generate,
        }
        standin = self.standin
        try:
            if standin._dead:
                raise _Dead
            body = self._read_body() if method == "POST" else None
            with standin._state_lock:
                standin.requests.append(RequestRecord(method, self.path, body))
            handler = routes.get((method, self.path.split("?")[0]))
            if handler is None:
                raise _HTTPError(404, "404 page not found")
            status, payload = handler(body)
            self._send(status, payload)
        except (_HTTPError, RunnerError) as err:
            self._send(err.status, {"error": err.message})
        except _Dead:
            self._die()
        except OSError:
            self.close_connection = True  # the client went away (e.g. it timed out)
        except Exception as err:  # noqa: BLE001 - a stand-in bug must surface as an answer
            self._send(500, {"error": f"stand-in error: {type(err).__name__}: {err}"})

    def _die(self) -> None:
        """Server death: no answer to this request, every socket closed."""
        self.close_connection = True
        self.standin.stop()  # not the serving thread, so shutdown() returns at once

    def _read_body(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw.strip():
            raise _HTTPError(400, "missing request body")
        try:
            body = json.loads(raw)
        except json.JSONDecodeError as err:
            raise _HTTPError(400, str(err)) from None
        if not isinstance(body, dict):
            raise _HTTPError(400, "json: cannot unmarshal into request")
        return body

    def _send(self, status: int, payload: Any) -> None:
        if isinstance(payload, str):
            data, ctype = payload.encode(), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(payload).encode(), "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _inference_faults(self) -> None:
        faults = self.standin.faults
        if faults.hang_s:
            self.standin._release.wait(faults.hang_s)
            if self.standin._dead:
                raise _Dead
        if faults.error is not None:
            raise _HTTPError(*faults.error)

    def _keep_alive(self, body: dict[str, Any]) -> Any:
        value = body.get("keep_alive")
        try:
            parse_keep_alive(value)
        except ValueError as err:
            raise _HTTPError(400, str(err)) from None
        return value

    # -- routes ----------------------------------------------------------------------

    def _root(self, body: Any) -> tuple[int, Any]:
        return 200, "Ollama is running"

    def _version(self, body: Any) -> tuple[int, Any]:
        return 200, {"version": self.standin.config.version}

    def _tag_entry(self) -> dict[str, Any]:
        s = self.standin
        name = f"{s.config.model_name}:latest"
        return {
            "name": name,
            "model": name,
            "modified_at": s.modified_at,
            "size": s.size_bytes,
            "digest": s.digest,
            "details": s._model_details(),
        }

    def _tags(self, body: Any) -> tuple[int, Any]:
        models = [] if self.standin.faults.model_missing else [self._tag_entry()]
        return 200, {"models": models}

    def _ps(self, body: Any) -> tuple[int, Any]:
        s = self.standin
        with s._state_lock:
            loaded = s._current()
        if loaded is None:
            return 200, {"models": []}
        entry = self._tag_entry()
        del entry["modified_at"]
        entry.update(
            size_vram=s._size_vram(),
            expires_at=_expires_at(loaded.expires_at),
            context_length=loaded.num_ctx,
        )
        return 200, {"models": [entry]}

    def _show(self, body: dict[str, Any]) -> tuple[int, Any]:
        s = self.standin
        name = body.get("model") or body.get("name")
        if not name:
            raise _HTTPError(400, "model is required")
        if not s._matches(name):
            raise _HTTPError(404, f"model '{name}' not found")
        return 200, {
            "license": "",
            "modelfile": f"# Modelfile generated by the Ollama stand-in\nFROM {s.config.model_name}\n",
            "parameters": "",
            "template": "{{ .Prompt }}",
            "details": s._model_details(),
            "model_info": {
                "general.architecture": "bert",
                "bert.context_length": s.engine.context_length,
                "bert.embedding_length": s.engine.embedding_length,
            },
            "capabilities": ["embedding"],
            "modified_at": s.modified_at,
        }

    def _require_model(self, name: Any) -> None:
        if not name:
            raise _HTTPError(400, "model is required")
        if not self.standin._matches(name):
            raise _HTTPError(404, f"model {json.dumps(name)} not found, try pulling it first")

    def _embed(self, body: dict[str, Any]) -> tuple[int, Any]:
        s = self.standin
        started = time.perf_counter()
        name = body.get("model")
        raw_input = body.get("input")
        if isinstance(raw_input, str):
            texts = [raw_input] if raw_input else []
        elif isinstance(raw_input, list):
            if not all(isinstance(v, str) for v in raw_input):
                raise _HTTPError(400, "invalid input type")
            texts = list(raw_input)
        elif raw_input is None:
            texts = []
        else:
            raise _HTTPError(400, "invalid input type")
        keep_alive = self._keep_alive(body)
        self._require_model(name)
        self._inference_faults()
        loaded = s._schedule(body.get("options"))
        load_ns = int((time.perf_counter() - started) * 1e9)
        if not texts:
            s._finish(keep_alive)
            return 200, {"model": name, "embeddings": []}
        truncate = body.get("truncate", True) is not False
        dimensions = int(body.get("dimensions") or 0)
        ctx_len = s._ctx_len(loaded)
        embeddings, tokens = [], 0
        for text in texts:
            raw, count = s._run_item(text, lambda t=text: s.engine.embed(t, ctx_len, truncate))
            vector = _normalize(raw)
            if 0 < dimensions < len(vector):
                vector = _normalize(vector[:dimensions])
            embeddings.append(vector.astype(np.float32).tolist())
            tokens += count
        s._finish(keep_alive)
        return 200, {
            "model": name,
            "embeddings": embeddings,
            "total_duration": int((time.perf_counter() - started) * 1e9),
            "load_duration": load_ns,
            "prompt_eval_count": tokens,
        }

    def _embeddings(self, body: dict[str, Any]) -> tuple[int, Any]:
        s = self.standin
        name = body.get("model")
        keep_alive = self._keep_alive(body)
        self._require_model(name)
        self._inference_faults()
        loaded = s._schedule(body.get("options"))
        prompt = body.get("prompt") or ""
        if not prompt:
            s._finish(keep_alive)
            return 200, {"embedding": []}
        ctx_len = s._ctx_len(loaded)
        vector, _ = s._run_item(prompt, lambda: (s.engine.embed_legacy(prompt, ctx_len), None))
        s._finish(keep_alive)
        if not np.all(np.isfinite(vector)):  # Go's encoding/json refuses NaN
            raise _HTTPError(500, NAN_ENCODE_ERROR)
        return 200, {"embedding": [float(v) for v in vector]}

    def _generate(self, body: dict[str, Any]) -> tuple[int, Any]:
        s = self.standin
        name = body.get("model")
        if not name:
            raise _HTTPError(400, "model is required")
        if not s._matches(name):
            raise _HTTPError(404, f"model '{name}' not found")
        now = datetime.now(timezone.utc).isoformat()
        if not body.get("prompt") and "keep_alive" in body and parse_keep_alive(body["keep_alive"]) == 0:
            with s._state_lock:
                s._unload()
            return 200, {"model": name, "created_at": now, "response": "", "done": True, "done_reason": "unload"}
        raise _HTTPError(400, f"{json.dumps(name)} does not support generate")
