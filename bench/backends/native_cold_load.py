"""The native cold load, in a process of its own: `python -m bench.backends.native_cold_load`.

Reads the load spec as JSON on stdin (model, dtype, compile, device, max_seq_length,
attention_settings), prints one JSON line: {"load_s", "imports_s", "cuda_context_s"}, or
{"error": ...} with exit status 1.

Why a fresh process: in the bench process CUDA is already initialised before the load (memory
baselines) and a second native backend loads into a warm process. Ollama's cold load starts a
runner process and initialises CUDA there; this is the native counterpart. load_s covers CUDA
context creation + SentenceTransformer(...) + the first encode, device synchronised
(bench.backends.native.build_model); imports_s is measured beside it, and the parent times the
whole process.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def cold_load(spec: dict[str, Any]) -> dict[str, Any]:
    started = time.perf_counter()
    import torch
    import transformers

    from bench.backends.base import BackendSettings
    from bench.backends.native import apply_attention_settings, build_model

    imports_s = time.perf_counter() - started
    transformers.utils.logging.disable_progress_bar()
    device = spec["device"]
    settings = BackendSettings(model=spec["model"], device=device, max_seq_length=spec.get("max_seq_length"),
                               attention_settings=spec.get("attention_settings") or {})
    apply_attention_settings(dict(settings.attention_settings))
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
