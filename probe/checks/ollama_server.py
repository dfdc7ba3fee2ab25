"""Ollama check: is the baseline side of TD-073 measurable here?

Reachable at ctx.ollama_host, server version, ctx.ollama_model pulled (/api/tags;
"bge-m3" matches "bge-m3:latest"), one /api/embed works (dimensions, finite values),
and after that load, /api/ps says where the model sits: size_vram == size is fully on
the GPU, 0 is CPU only, anything between is a partial offload.

Ollama being down or the model missing does not make native PyTorch incompatible, so
those are WARN (the Ollama side just cannot be benchmarked), never FAIL. The check
never raises. The ollama client and httpx are imported inside the function; error
wording is shared with the bench's Ollama backends (bench.backends.ollama).
"""

from __future__ import annotations

import math
import time
from typing import Any

from probe.registry import ProbeContext
from probe.result import CheckResult, Status

NAME = "ollama"
TITLE = "Ollama server and model"
PROBE_TEXT = "Kurzer Prüftext für die Einbettung. A short probe sentence."
CONNECT_TIMEOUT_S = 5.0
REQUEST_TIMEOUT_S = 120.0  # the first embed may load the model cold


def _result(status: Status, reason: str, figures: dict[str, Any]) -> CheckResult:
    return CheckResult(name=NAME, title=TITLE, status=status, reason=reason, figures=figures)


def check_ollama(ctx: ProbeContext) -> CheckResult:
    try:
        return _check(ctx)
    except Exception as err:  # noqa: BLE001 - a check reports, it never raises
        return _result(Status.WARN, f"Ollama check could not finish: {type(err).__name__}: {err}",
                       {"host": ctx.ollama_host})


def _check(ctx: ProbeContext) -> CheckResult:
    try:
        import httpx
        import ollama

        from bench.backends.ollama import (
            base_url,
            explain_error,
            model_matches,
            offload_state,
            pull_hint,
        )
    except ImportError as err:
        return _result(Status.SKIP, f"ollama client not importable ({err})", {"host": ctx.ollama_host})

    host = base_url(ctx.ollama_host)
    model = ctx.ollama_model or "bge-m3"
    figures: dict[str, Any] = {"host": host, "model": model}
    timeout = httpx.Timeout(REQUEST_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)

    def explained(err: Exception) -> str:
        found = explain_error(err, host, model, REQUEST_TIMEOUT_S)
        return str(found) if found is not None else f"{type(err).__name__}: {err}"

    unreachable = (
        f"Ollama not reachable at {host}: the Ollama side cannot be benchmarked; "
        "start it (docker compose up -d ollama) or set OLLAMA_HOST"
    )
    try:
        version = httpx.get(f"{host}/api/version", timeout=timeout).json().get("version")
    except (httpx.ConnectError, httpx.TimeoutException, ConnectionError):
        return _result(Status.WARN, unreachable, figures)
    except Exception as err:  # noqa: BLE001 - something answered, but not like Ollama
        return _result(Status.WARN, f"{host} did not answer /api/version like Ollama: {explained(err)}", figures)
    figures["version"] = version

    client = ollama.Client(host=host, timeout=timeout)
    try:
        listed = client.list()
        names = [m.model for m in listed.models if m.model]
        figures["models"] = names
        tag = next((m for m in listed.models if model_matches(m.model, model)), None)
        if tag is None:
            return _result(Status.WARN, f"model '{model}' is not pulled on {host} (Ollama {version}): "
                           f"{pull_hint(model)}", figures)
        figures["digest"] = tag.digest

        started = time.perf_counter()
        response = client.embed(model=model, input=[PROBE_TEXT])
        figures["embed_wall_s"] = round(time.perf_counter() - started, 4)
        if response.load_duration is not None:
            figures["load_duration_s"] = response.load_duration / 1e9
        vectors = response.embeddings or []
        if len(vectors) != 1 or not vectors[0]:
            return _result(Status.WARN, f"Ollama {version} at {host}: /api/embed returned no vector for one text",
                           figures)
        vector = [float(v) for v in vectors[0]]
        figures["dims"] = len(vector)
        finite = all(math.isfinite(v) for v in vector)
        figures["finite"] = finite
        if finite:
            figures["norm"] = round(math.sqrt(sum(v * v for v in vector)), 6)

        running = client.ps()
    except Exception as err:  # noqa: BLE001 - each failure becomes one line
        return _result(Status.WARN, f"{explained(err)} (Ollama side cannot be benchmarked as is)", figures)

    entry = next((m for m in running.models if model_matches(m.model or m.name, model)), None)
    size = int(entry.size) if entry is not None and entry.size is not None else None
    vram = int(entry.size_vram) if entry is not None and entry.size_vram is not None else None
    figures.update(size=size, size_vram=vram, offload=offload_state(size, vram),
                   context_length=entry.context_length if entry is not None else None)

    where = f"Ollama {version} at {host}, {model}"
    if not finite:
        return _result(Status.WARN, f"{where}: the embedding has NaN/inf values", figures)
    if figures["offload"] == "gpu":
        return _result(Status.PASS, f"{where}: fully on GPU (size_vram {_gib(vram)}), "
                       f"one embed → {len(vector)} dims, finite", figures)
    if figures["offload"] == "cpu":
        return _result(Status.WARN, f"{where}: runs on CPU only (size_vram 0 of {_gib(size)}); "
                       "Ollama timings would not be GPU timings: check the container's GPU access", figures)
    if figures["offload"] == "partial":
        return _result(Status.WARN, f"{where}: partly offloaded ({_gib(vram)} of {_gib(size)} in VRAM); "
                       "Ollama timings mix GPU and CPU", figures)
    return _result(Status.WARN, f"{where}: embed works ({len(vector)} dims) but /api/ps does not list the "
                   "model, so GPU placement is unknown", figures)


def _gib(value: int | None) -> str:
    return "unknown" if value is None else f"{value / 2**30:.2f} GiB"
