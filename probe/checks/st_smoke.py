"""sentence-transformers smoke check: the configured model loads on the device and encodes
multilingual text in fp32 and in half precision without NaN/inf, and half precision stays
close to fp32.

Half precision is loaded the way the bench loads it: model_kwargs={"dtype": torch.float16}
(transformers 5 renamed `torch_dtype` to `dtype`; sentence-transformers 6.2 passes
model_kwargs through and reads either key). The SDPA flags the attention check derived
(ctx.shared["sdpa_settings"]) are applied while encoding, so this check runs the model the
way the bench will, and restored afterwards.

On CPU both fp16 and bf16 are tried: bf16 is the usual CPU half type; fp16 runs on torch 2.13
CPU but slowly (no fp16 GEMM on most CPUs). A half dtype that cannot run on CPU is recorded,
not failed. torch and sentence-transformers are imported inside functions only.

What the status means (the probe's "incompatible" must mean the GPU cannot serve the model):
  FAIL  the native path cannot run on this device: no dtype gives finite vectors, or the
        load/encode failed with a device error (CUDA/cuBLAS/cuDNN, "no kernel image", ...).
  SKIP  not run: the model could not be loaded for a reason that is not the device (not
        downloaded, no network, no token, a library error; or the device busy or out of memory,
        held by other processes); the reason says how to fix it (failure_cause).
  WARN  some dtype gives NaN/inf, drifts from fp32 or fails: the bench skips that dtype
        (bench.backends.PROBE_GATES), the others are measured.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from probe.failures import failure_cause
from probe.registry import ProbeContext
from probe.result import CheckResult, Status

NAME = "sentence_transformers"
TITLE = "sentence-transformers model smoke"

# Different scripts and lengths in one batch, so the padding mask is exercised too.
TEXTS: tuple[str, ...] = (
    "Die Embeddings werden künftig direkt auf der GPU im DGX Spark berechnet.",
    "Embeddings are computed natively with sentence-transformers instead of Ollama.",
    "向量嵌入用于多语言语义搜索。",
    "東京は日本の首都で、人口は約一千四百万人です。",
    "تُستخدم المتجهات الدلالية في البحث عن المستندات المتشابهة.",
    "Deploy fertig 🚀✅ alles grün 👍🎉",
    "Ein längerer Absatz: Die Untersuchung prüft, ob BGE-M3 mit Sentence-Transformers auf dem "
    "GB10 schneller ist als über Ollama, ob Flash Attention auf sm_121 korrekt rechnet und ob "
    "die Einbettungen in halber Genauigkeit mit denen in voller Genauigkeit übereinstimmen.",
)
HALF_COSINE_WARN = 0.99
FULL = "float32"
# Tried on every device (see the module docstring for CPU).
HALF_DTYPES: tuple[str, ...] = ("float16", "bfloat16")

# (model name or path, device, dtype name) -> a loaded SentenceTransformer. Injected by tests.
Loader = Callable[[str, str, str], Any]


def load_model(model: str, device: str, dtype: str) -> Any:
    """SentenceTransformer(model) on `device`, weights in `dtype` ("float32", "float16", "bfloat16")."""
    import torch
    import transformers
    from sentence_transformers import SentenceTransformer

    # Three loads, each drawing "Loading weights" bars that litter a CI log; a download, if one
    # was needed, showed its progress up front (bench/measure/model_source.py).
    transformers.utils.logging.disable_progress_bar()
    return SentenceTransformer(model, device=device, model_kwargs={"dtype": getattr(torch, dtype)})


@dataclass(frozen=True)
class DtypeRun:
    """One dtype's load and encode. `embeddings` (float32, on CPU) stays out of the figures."""

    dtype: str
    loaded: bool
    load_s: float | None
    encode_s: float | None  # first encode of all texts in one batch, warm-up included
    finite: bool | None
    error: str | None
    embeddings: Any = None
    cause: str | None = None  # failure_cause() of the whole error text: "device" | "resource" | "other"

    def figures(self) -> dict[str, Any]:
        return {
            "loaded": self.loaded,
            "load_s": self.load_s,
            "first_encode_s": self.encode_s,
            "finite": self.finite,
            "error": self.error,
            "cause": self.cause,
        }


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]


def model_facts(model: Any) -> dict[str, Any]:
    """Embedding dim, max_seq_length and the transformer's attention implementation; None when unknown."""
    facts: dict[str, Any] = {"embedding_dim": None, "max_seq_length": None, "attn_implementation": None}
    for method in ("get_embedding_dimension", "get_sentence_embedding_dimension"):
        with contextlib.suppress(Exception):
            facts["embedding_dim"] = getattr(model, method)()
            break
    with contextlib.suppress(Exception):
        facts["max_seq_length"] = model.max_seq_length
    with contextlib.suppress(Exception):
        facts["attn_implementation"] = model[0].auto_model.config._attn_implementation
    return facts


def run_dtype(loader: Loader, model_name: str, device: str, dtype: str, texts: Sequence[str]) -> tuple[DtypeRun, Any]:
    """Load and encode once in `dtype`. Returns the run and the loaded model (None when loading failed)."""
    import torch

    started = time.perf_counter()
    try:
        model = loader(model_name, device, dtype)
    except Exception as err:  # noqa: BLE001 - reported as the check's outcome
        return DtypeRun(dtype, False, None, None, None, _one_line(err), cause=failure_cause(err)), None
    load_s = round(time.perf_counter() - started, 3)
    try:
        started = time.perf_counter()
        emb = model.encode(list(texts), batch_size=len(texts), convert_to_tensor=True, show_progress_bar=False)
        emb = emb.detach().float().cpu()  # the copy to the host waits for the device
        encode_s = round(time.perf_counter() - started, 3)
    except Exception as err:  # noqa: BLE001
        return DtypeRun(dtype, True, load_s, None, None, _one_line(err), cause=failure_cause(err)), model
    finite = bool(torch.isfinite(emb).all())
    return DtypeRun(dtype, True, load_s, encode_s, finite, None, emb), model


def cosine_per_text(full: Any, half: Any) -> list[float]:
    """Cosine between the fp32 and the half-precision embedding of each text."""
    import torch

    return [float(x) for x in torch.nn.functional.cosine_similarity(full.float(), half.float(), dim=1)]


def cosine_summary(values: Sequence[float]) -> dict[str, float]:
    return {"min": round(min(values), 6), "mean": round(sum(values) / len(values), 6)}


def load_failure_reason(model_name: str, device: str, error: str) -> str:
    return (
        f"model {model_name!r} could not be loaded on {device} ({error}); pre-download it into the "
        f"Hugging Face cache volume (e.g. `hf download {model_name}` where the hub is reachable) "
        f"or pass --model with a local folder"
    )


def st_status(runs: Sequence[DtypeRun], cosines: dict[str, dict[str, float]], model_name: str, device: str,
              facts: dict[str, Any]) -> tuple[Status, str]:
    """Status and one-line reason from the per-dtype runs and the half-vs-fp32 cosine summaries."""
    on_cpu = device == "cpu"
    prefix = "on CPU (target not probed): " if on_cpu else ""
    by_dtype = {r.dtype: r for r in runs}
    full = by_dtype.get(FULL)
    if full is None or not full.loaded or full.error is not None:
        error = full.error if full else "not run"
        step = "load" if full is None or not full.loaded else "encode"
        cause = full.cause if full else "other"
        if cause == "device":
            return Status.FAIL, prefix + f"fp32 {step} failed on {device} with a device error: {error}"
        if cause == "resource":
            return Status.SKIP, prefix + (f"not run: fp32 {step} on {device} found the device busy or out of memory "
                                          f"({error}); free it (stop other models or processes) and run again")
        if step == "encode":
            return Status.SKIP, prefix + f"not run: fp32 encode failed on {device} ({error}), not a device error"
        return Status.SKIP, prefix + "not run: " + load_failure_reason(model_name, device, error)
    finite = [r.dtype for r in runs if r.finite]
    non_finite = [r.dtype for r in runs if r.finite is False]
    if not finite:
        return Status.FAIL, prefix + f"no dtype gives finite vectors on {device}: NaN/inf in {', '.join(non_finite)}"
    warnings = [f"NaN/inf in the {d} embeddings (the bench skips {d})" for d in non_finite]
    if full.finite is False:
        warnings.append("half precision could not be checked against fp32")
    for r in runs:
        if r.dtype != FULL and r.error is not None and not on_cpu:
            # A half dtype that cannot run on CPU says nothing about the target; on the device it does.
            warnings.append(f"{r.dtype} failed: {r.error}")
    warnings += [f"{d} min cosine {c['min']:.4f} vs fp32 (< {HALF_COSINE_WARN}; the bench skips {d})"
                 for d, c in cosines.items() if c["min"] < HALF_COSINE_WARN]
    summary = (
        f"dim {facts.get('embedding_dim')}, max_seq_length {facts.get('max_seq_length')}, "
        f"attention {facts.get('attn_implementation')}, fp32 load {full.load_s} s; "
        + ", ".join(f"{d} cosine min {c['min']:.4f}" for d, c in cosines.items())
    )
    if warnings:
        return Status.WARN, prefix + "; ".join(warnings) + f"; {summary}"
    unusable = [f"{r.dtype} not usable on CPU: {r.error}" for r in runs if r.error is not None]
    note = f" ({'; '.join(unusable)})" if unusable else ""
    return Status.PASS, prefix + f"{model_name} encodes {len(TEXTS)} multilingual texts without NaN/inf; {summary}{note}"


def check_sentence_transformers(ctx: ProbeContext, *, loader: Loader = load_model) -> CheckResult:
    """The probe check: fp32 run first (its failure ends the check), then each half dtype."""
    from probe.checks.attention import sdpa_settings_applied

    device = ctx.device or "cpu"
    with contextlib.suppress(Exception):  # import outside the timed load; a broken install fails in the loader
        import sentence_transformers  # noqa: F401
    sdpa = ctx.shared.get("sdpa_settings")
    scope = sdpa_settings_applied(sdpa) if sdpa else contextlib.nullcontext()
    runs: list[DtypeRun] = []
    facts: dict[str, Any] = {}
    with scope:
        full, model = run_dtype(loader, ctx.model, device, FULL, TEXTS)
        runs.append(full)
        if model is not None:
            facts = model_facts(model)
        model = None  # drop each copy before the next load so two never sit on the device together
        _empty_cache(device)
        if full.loaded and full.error is None:  # else there is no reference to judge half precision by
            for dtype in HALF_DTYPES:
                run, model = run_dtype(loader, ctx.model, device, dtype, TEXTS)
                runs.append(run)
                model = None
                _empty_cache(device)
    per_text = {
        r.dtype: [round(c, 6) for c in cosine_per_text(full.embeddings, r.embeddings)]
        for r in runs
        if r.dtype != FULL and r.finite and full.finite
    }
    cosines = {dtype: cosine_summary(values) for dtype, values in per_text.items()}
    status, reason = st_status(runs, cosines, ctx.model, device, facts)
    figures = {
        "model": ctx.model,
        "device": device,
        "target_probed": device != "cpu",
        "texts": len(TEXTS),
        **facts,
        "load_s": full.load_s,
        "dtypes": {r.dtype: r.figures() for r in runs},
        "half_vs_fp32_cosine": cosines,
        "half_vs_fp32_cosine_per_text": per_text,
        "cosine_warn_below": HALF_COSINE_WARN,
        "sdpa_settings_applied": dict(sdpa) if sdpa else None,
        "cpu_note": "fp16 on CPU runs but slowly; bf16 is the CPU half type" if device == "cpu" else None,
    }
    return CheckResult(name=NAME, title=TITLE, status=status, reason=reason, figures=figures)


def _empty_cache(device: str) -> None:
    if device.startswith("cuda"):
        with contextlib.suppress(Exception):
            import torch

            torch.cuda.empty_cache()
