"""The native cold load, in a process of its own.

`fresh_process_load` (called by the native backend) runs `python -m bench.backends.native_cold_load`;
`load_report` turns its figures into the backend's LoadReport. The child reads the load spec as
JSON on stdin (model, dtype, compile, device, max_seq_length, attention_settings) and prints one
JSON line: {"load_s", "imports_s", "cuda_context_s"}, or {"error": ...} with exit status 1.

Why a fresh process: in the bench process CUDA is already initialised before the load (memory
baselines) and a second native backend loads into a warm process. Ollama's cold load starts a
runner process and initialises CUDA there; this is the native counterpart. load_s covers CUDA
context creation + SentenceTransformer(...) + the first encode, device synchronised
(bench.backends.native.build_model); imports_s is measured beside it, and the parent times the
whole process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.backends.base import BackendSettings, LoadReport

NO_REPORTED_LOAD = "not reported (native has no load figure of its own)"
COLD_LOAD_MODULE = "bench.backends.native_cold_load"
COLD_LOAD_TIMEOUT_S = 900.0  # a bge-m3 load is seconds; torch.compile in the child can take minutes


def fresh_process_load(settings: BackendSettings, dtype: str, compile_model: bool, device: str) -> dict[str, Any]:
    """Time a cold load in a child process (bench.backends.native_cold_load); never raises.

    Returns the child's figures (load_s, imports_s, cuda_context_s) plus process_s, the child's
    whole life as seen from here; or {"error": why, "process_s": ...} when it did not work.
    """
    spec = {"model": settings.model, "dtype": dtype, "compile": compile_model, "device": device,
            "max_seq_length": settings.max_seq_length, "attention_settings": dict(settings.attention_settings)}
    package_root = str(Path(__file__).resolve().parents[2])  # the child imports this same `bench`
    path = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", COLD_LOAD_MODULE], input=json.dumps(spec), env=env,
                              capture_output=True, text=True, timeout=COLD_LOAD_TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"the child process did not finish within {COLD_LOAD_TIMEOUT_S:g} s",
                "process_s": time.perf_counter() - started}
    except OSError as err:
        return {"error": f"the child process could not start ({err.strerror or err})",
                "process_s": time.perf_counter() - started}
    process_s = time.perf_counter() - started
    lines = done.stdout.strip().splitlines()
    try:
        result = json.loads(lines[-1]) if lines else {}
    except ValueError:
        result = {}
    if done.returncode != 0 or not isinstance(result, dict) or "load_s" not in result:
        errors = done.stderr.strip().splitlines()
        why = result.get("error") if isinstance(result, dict) and result.get("error") else \
            (errors[-1] if errors else f"exit status {done.returncode}, no figures")
        return {"error": f"the child process failed: {why}", "process_s": process_s}
    return {**result, "process_s": process_s}


def load_report(fresh: dict[str, Any], in_process_s: float, device: str) -> LoadReport:
    """The cold figure from the fresh process when there is one; else (fresh = {"error": why})
    the in-process load, marked warm."""
    parts = {"in_process_load_s": in_process_s}
    if "load_s" in fresh:
        parts.update({"child_imports_s": fresh["imports_s"], "child_process_s": fresh["process_s"]})
        if fresh.get("cuda_context_s") is not None:
            parts["child_cuda_context_s"] = fresh["cuda_context_s"]
        context = "CUDA context creation + " if device.startswith("cuda") else "no CUDA context (CPU) + "
        return LoadReport(
            wall_s=fresh["load_s"], reported_load_s=None, reported_source=NO_REPORTED_LOAD, cold=True,
            includes=f"fresh Python process on {device}: {context}SentenceTransformer(...) (model code "
                     "imported lazily, weights read and placed) + first encode of one short text, device "
                     "synchronised; interpreter start and the torch/sentence-transformers imports are beside "
                     "it, not in it",
            parts_s=parts,
        )
    why = f"no fresh-process cold load: {fresh['error']}"
    return LoadReport(
        wall_s=in_process_s, reported_load_s=None, reported_source=NO_REPORTED_LOAD, cold=False,
        includes=f"in the bench process on {device} (CUDA context and libraries already initialised): "
                 "SentenceTransformer(...) + first encode of one short text",
        parts_s=parts, note=f"{why}; the in-process figure is a warm load",
    )


def cold_load(spec: dict[str, Any]) -> dict[str, Any]:
    """In the child: imports (timed apart), then CUDA context + build_model under one timer."""
    started = time.perf_counter()
    import sentence_transformers  # noqa: F401 - imported here so its import time is not in load_s
    import torch
    import transformers

    from bench.backends.native import (
        apply_attention_settings,
        build_model,
        pin_float32_matmul,
    )

    imports_s = time.perf_counter() - started
    transformers.utils.logging.disable_progress_bar()
    device = spec["device"]
    settings = BackendSettings(model=spec["model"], device=device, max_seq_length=spec.get("max_seq_length"),
                               attention_settings=spec.get("attention_settings") or {})
    # The same process settings as the bench's own load (the probe's ptxas comes in the environment).
    apply_attention_settings(dict(settings.attention_settings))
    pin_float32_matmul(spec["dtype"] == "float32")
    timer = time.perf_counter()
    cuda_context_s = None
    if device.startswith("cuda"):
        torch.zeros(1, device=device)  # creates the CUDA context: part of every cold start on a GPU
        torch.cuda.synchronize(device)
        cuda_context_s = time.perf_counter() - timer
    build_model(settings, spec["dtype"], bool(spec.get("compile")), device)
    return {"load_s": time.perf_counter() - timer, "imports_s": imports_s, "cuda_context_s": cuda_context_s}


def main() -> int:
    try:
        result = cold_load(json.loads(sys.stdin.read()))
    except Exception as err:  # noqa: BLE001 - the parent reports it as one line
        lines = str(err).strip().splitlines()
        print(json.dumps({"error": f"{type(err).__name__}: {lines[0] if lines else ''}"}))
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
