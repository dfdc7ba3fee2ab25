"""Roofline: each backend's calls against the device's two ceilings, compute and memory bandwidth.

Model: a BERT-style encoder (BGE-M3 is XLM-RoBERTa large) with L layers, hidden size h and
MLP (intermediate) size i, read from the config the bench recorded (bench.json
environment.model_config). One text has T tokens: the workload tokenizer's count, capped
at the backend's max tokens where it reports one.

Work of one forward pass over a call of texts with T_1..T_b tokens (ΣT = T_1 + ... + T_b):

  FLOPs  = Σ_k L · (2·T_k·(4·h² + 2·h·i) + 4·T_k²·h)
           Q, K, V, output projections and the two MLP matrices (a multiply-add is 2 FLOPs),
           plus attention scores Q·Kᵀ and the weighted sum A·V. Left out as negligible: the
           embedding gather, layer norms, softmax, GELU, biases and the pooling.
  bytes  = w · (L · (4·h² + 2·h·i + 9·h + i) + 2·h·ΣT)  +  a · L · 2·ΣT·(h + i)
           weights read once per forward pass: every layer's matrices, biases and norms,
           and of the word and position embedding tables only the rows of the call's tokens
           (a gather reads T rows, not the 250,002 × 1,024 table); plus activation traffic,
           a stated approximation: each layer reads its input and writes its output
           (2·T·h elements) and writes and reads the MLP's intermediate (2·T·i elements);
           attention scores stay on chip (fused SDPA) and smaller temporaries in cache.
           w = bytes per weight, a = bytes per activation element (see Precision).

Against the ceilings the probe measured on the device the backend ran on (probe.json,
checks "kernels" and "ceilings"):

  compute time   = FLOPs / P      P: the probe's best square-matmul rate in the backend's dtype
  memory time    = bytes / B      B: the probe's measured bandwidth (higher of copy and
                                     streaming read, best of its timed reps)
  attainable     = max(compute time, memory time); the larger one names the bound
  reached        = attainable / measured time (1 = on the roofline)

Single-text latency: the attainable time of a one-text call is that text's floor; a set's
floor is the median of those floors over the calls the single-text scenario made (the lower
middle for an even count), read against that scenario's p50. Throughput: a whole-set pass of C calls (batches) reads
the weights C times; its bound in texts/s = texts / attainable time of the pass.
MFU = useful FLOPs / wall / P, as before; padding is never counted as useful work, so a
batch padded to its longest text lowers both MFU and the fraction reached.

Vendor datasheet figures and reported measurements (bench/data/device_figures.json) are
shown beside the measured ceilings, labelled; they are never the basis of a floor or MFU.
Everything here is a pure function of bench.json, probe.json and that data file.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from bench.config import DATA_DIR

CONFIG_KEYS: tuple[str, ...] = (
    "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size",
)
DEVICE_FIGURES = DATA_DIR / "device_figures.json"
FP16_ASSUMED = "compute dtype not reported (Ollama: GGUF weights, often F16): fp16 peak assumed"
# the torch dtype a backend reports -> the probe's matmul_tflops key and bytes per element
PEAK_KEYS: dict[str, str] = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}
DTYPE_BYTES: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2}
# GGUF weight type -> the peak key of the matmul that runs it (quantised types dequantise to fp16)
GGUF_PEAK_KEYS: dict[str, str] = {"F32": "fp32", "F16": "fp16", "BF16": "bf16"}
GGML_ACTIVATION_BYTES = 4  # ggml (Ollama's engine) keeps activations in F32 whatever the weights


@dataclass(frozen=True)
class ModelShape:
    layers: int
    hidden: int
    intermediate: int
    heads: int
    vocab: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None) -> ModelShape | None:
        """From the recorded config numbers; None when any is missing."""
        if not config or any(not isinstance(config.get(k), int) for k in CONFIG_KEYS):
            return None
        return cls(config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"],
                   config["num_attention_heads"], config["vocab_size"])

    @property
    def layer_parameters(self) -> int:
        """Weights of one encoder layer: 4·h² + 4·h attention, 2·h·i + i + h MLP, 2 layer norms 4·h."""
        h, i = self.hidden, self.intermediate
        return 4 * h * h + 2 * h * i + 9 * h + i


# --- device figures: measured by the probe, published by vendors, reported by others ---------


@dataclass(frozen=True)
class ReportedMeasurement:
    """Someone else's measurement on this GPU model: shown, labelled, never used as a basis."""

    bf16_tflops: float | None
    bandwidth_gbs: float | None
    source: str


@dataclass(frozen=True)
class VendorFigures:
    gpu: str
    tflops: float | None  # dense BF16 tensor TFLOP/s; None: not published
    compute_source: str
    bandwidth_gbs: float | None
    bandwidth_source: str
    reported: ReportedMeasurement | None


@dataclass(frozen=True)
class Ceilings:
    """The roofline's two ceilings as the probe measured them on one device."""

    device: str  # "cuda" or "cpu": where the probe measured
    matmul_tflops: Mapping[str, float]  # best per dtype key (fp32, tf32, fp16, bf16)
    bandwidth_gbs: float | None  # the higher of copy and streaming read, best of reps
    bandwidth_detail: str  # which measurement, with its n and spread
    memory: str  # which memory was measured, in words


@lru_cache(maxsize=1)
def device_data() -> dict[str, Any]:
    """bench/data/device_figures.json, read once."""
    return json.loads(DEVICE_FIGURES.read_text(encoding="utf-8"))


def vendor_figures(device_name: str | None) -> VendorFigures | None:
    """The data file's row for this GPU name (first match wins), or None when not in it or unknown."""
    if not device_name:
        return None
    for row in device_data()["gpus"]:
        if row["match"].lower() in device_name.lower():
            reported = row.get("reported")
            return VendorFigures(
                gpu=row["gpu"], tflops=row["dense_bf16_tflops"], compute_source=row["compute_source"],
                bandwidth_gbs=row["bandwidth_gbs"], bandwidth_source=row["bandwidth_source"],
                reported=ReportedMeasurement(reported.get("bf16_tflops"), reported.get("bandwidth_gbs"),
                                             reported["source"]) if reported else None,
            )
    return None


def _check(probe: Mapping[str, Any] | None, name: str) -> Mapping[str, Any]:
    return next((c for c in (probe or {}).get("checks", []) if c.get("name") == name), {})


def _rates(values: Mapping[str, Any] | None) -> dict[str, float]:
    return {k: float(v) for k, v in (values or {}).items() if isinstance(v, (int, float))}


def probe_ceilings(probe: Mapping[str, Any] | None) -> Ceilings | None:
    """The ceilings probe.json holds, or None without a probe.

    GPU matmul rates come from the kernels check (it runs on a CUDA device only); the
    bandwidth, and on a CPU the matmul rates too, from the ceilings check. An older
    probe.json without the ceilings check gives a compute ceiling only.
    """
    if probe is None:
        return None
    device = "cuda" if ((probe.get("config") or {}).get("device") or _has_kernel_rates(probe)) else "cpu"
    ceilings = _check(probe, "ceilings").get("figures") or {}
    matmul = _rates((_check(probe, "kernels").get("figures") or {}).get("matmul_tflops")) or _rates(
        ceilings.get("matmul_tflops"))
    bandwidth = ceilings.get("bandwidth_gbs")
    basis = ceilings.get("bandwidth_basis")
    measured = (ceilings.get("bandwidth") or {}).get(basis) or {}
    detail = (f"{basis}: best of n={measured.get('reps')} timed calls; median {_gbs(measured.get('gbs_median'))}, "
              f"worst {_gbs(measured.get('gbs_worst'))} GB/s" if isinstance(bandwidth, (int, float)) else
              "not measured (no ceilings check in probe.json)")
    return Ceilings(device=ceilings.get("device") or device, matmul_tflops=matmul,
                    bandwidth_gbs=float(bandwidth) if isinstance(bandwidth, (int, float)) else None,
                    bandwidth_detail=detail, memory=ceilings.get("memory") or "not recorded")


def _gbs(value: Any) -> str:
    from probe.view import format_value

    return format_value(value)


def _has_kernel_rates(probe: Mapping[str, Any]) -> bool:
    return bool((_check(probe, "kernels").get("figures") or {}).get("matmul_tflops"))


# --- what one backend's forward pass costs ---------------------------------------------------


@dataclass(frozen=True)
class Precision:
    """How a backend's forward pass is sized: bytes per weight and per activation, and its peak."""

    weight_bytes: float | None  # None: weight dtype not reported, memory side unknown
    activation_bytes: float
    peak_key: str  # the probe's matmul_tflops key the compute side uses
    note: str  # an assumption to state, "" when none


def precision_of(description: Mapping[str, Any]) -> Precision:
    """From a backend's description: native reports its torch dtype; Ollama its GGUF weight type;
    an OpenAI-compatible llama-server its model precision (/props, e.g. "F16" or "all F32")."""
    weight_dtype = description.get("weight_dtype")
    served = str(description.get("model_precision") or "").removeprefix("all ").upper()
    if weight_dtype is None and served in device_data()["gguf_bits_per_weight"]:
        weight_dtype = served
    gguf = weight_dtype is not None or (description.get("kind") == "ollama" and description.get("dtype") is None)
    if gguf:
        bits = device_data()["gguf_bits_per_weight"].get(str(weight_dtype).upper())
        key = GGUF_PEAK_KEYS.get(str(weight_dtype).upper())
        notes = [f"weights {weight_dtype or 'of unreported type'} ({description.get('weight_dtype_source', 'GGUF')})",
                 "activations F32 (ggml)"]
        if key is None:
            key = "fp16"
            notes.append("fp16 matmul peak assumed")
        if bits is None:
            notes.append("bytes per weight unknown, so no memory side")
        return Precision(None if bits is None else bits / 8, GGML_ACTIVATION_BYTES, key, "; ".join(notes))
    dtype = description.get("dtype")
    if dtype in PEAK_KEYS:
        return Precision(DTYPE_BYTES[dtype], DTYPE_BYTES[dtype], PEAK_KEYS[dtype], "")
    return Precision(None, GGML_ACTIVATION_BYTES, "fp16", FP16_ASSUMED)


def forward_flops(tokens: int, shape: ModelShape) -> float:
    """FLOPs of one forward pass over one text of `tokens` tokens (formula in the module docstring)."""
    t, h, i = float(tokens), float(shape.hidden), float(shape.intermediate)
    per_layer = 2.0 * t * (4.0 * h * h + 2.0 * h * i) + 2.0 * 2.0 * t * t * h
    return shape.layers * per_layer


def useful_flops(token_counts: Sequence[int], shape: ModelShape) -> float:
    """Sum of forward_flops over the texts at their real (unpadded) token counts."""
    return sum(forward_flops(n, shape) for n in token_counts)


def forward_bytes(tokens: int, calls: int, shape: ModelShape, precision: Precision) -> float | None:
    """Bytes `calls` forward passes over `tokens` tokens in all move (module docstring); None if unknown."""
    if precision.weight_bytes is None:
        return None
    weights = precision.weight_bytes * (calls * shape.layers * shape.layer_parameters + 2 * shape.hidden * tokens)
    activations = precision.activation_bytes * shape.layers * 2 * tokens * (shape.hidden + shape.intermediate)
    return weights + activations


@dataclass(frozen=True)
class Bound:
    """One piece of work against both ceilings; a side is None when its ceiling was not measured."""

    compute_s: float | None
    memory_s: float | None

    @property
    def attainable_s(self) -> float | None:
        known = [s for s in (self.compute_s, self.memory_s) if s is not None]
        return max(known) if known else None

    @property
    def kind(self) -> str:
        if self.compute_s is None and self.memory_s is None:
            return "not known"
        if self.memory_s is None:
            return "compute (memory side not measured)"
        if self.compute_s is None:
            return "memory (compute side not measured)"
        return "memory" if self.memory_s > self.compute_s else "compute"


def bound_of(flops: float, nbytes: float | None, peak_tflops: float | None, bandwidth_gbs: float | None) -> Bound:
    return Bound(
        compute_s=flops / (peak_tflops * 1e12) if peak_tflops else None,
        memory_s=nbytes / (bandwidth_gbs * 1e9) if nbytes is not None and bandwidth_gbs else None,
    )


def ceilings_for(description: Mapping[str, Any], ceilings: Ceilings | None) -> tuple[Ceilings | None, str]:
    """The ceilings that apply to a backend (the probe's, when it ran on the same kind of device), and a note."""
    if ceilings is None:
        return None, "no probe.json: no measured ceilings"
    device = str(description.get("device") or "")
    if device.startswith("cuda") or device == "gpu":
        placed = "cuda"
    elif device == "cpu":
        placed = "cpu"
    elif device == "partial":
        return (ceilings, "partly offloaded to the CPU (Ollama /api/ps): the GPU ceilings overstate what it can "
                          "reach") if ceilings.device == "cuda" else (None, "partly on the GPU: no CPU ceilings apply")
    else:
        return ceilings, f"device not reported: the probe's device ({ceilings.device}) assumed"
    if placed != ceilings.device:
        return None, f"ran on {placed}, the probe measured {ceilings.device}: no ceilings for it"
    return ceilings, ""


# --- rows --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RooflineRow:
    """One backend on one text set at its best throughput setting."""

    backend: str
    text_set: str
    setting: str  # the best throughput point, e.g. "batch 32" or "≤16384 tokens"
    texts: int
    calls: int  # forward calls in the pass: the weights are read once per call
    tokens: int  # useful tokens: real per-text counts, capped at the backend's max tokens
    useful_tflop: float  # forward FLOPs of the set at those counts, in TFLOP (1e12)
    gbytes: float | None  # bytes the pass moves (module docstring), in GB (1e9)
    wall_s: float
    achieved_tflops: float
    peak_key: str  # which probe matmul rate is the peak: fp32, fp16, bf16
    measured_peak_tflops: float | None
    mfu_measured: float | None  # achieved / measured peak
    datasheet_peak_tflops: float | None
    mfu_datasheet: float | None  # achieved / datasheet dense BF16
    bound: Bound
    bound_texts_per_s: float | None  # texts / attainable time
    reached: float | None  # attainable / wall
    note: str


@dataclass(frozen=True)
class SingleTextRow:
    """One backend on one text set: single-text latency against its floor."""

    backend: str
    text_set: str
    calls: int  # single-text calls the floor is taken over (the scenario's)
    median_tokens: int  # of the median call (the lower middle for an even count), whose floor this is
    bound: Bound  # of the median-floor text: compute and memory time, in seconds
    floor_ms: float | None  # attainable time of the median call (bound's larger side), in ms
    p50_ms: float
    n: int  # successful calls behind p50
    weight_bytes: float | None  # bytes per weight the floor assumes
    note: str

    @property
    def multiple(self) -> float | None:
        """p50 / floor: how far above the floor this side sits."""
        return self.p50_ms / self.floor_ms if self.floor_ms else None

    @property
    def reached(self) -> float | None:
        return self.floor_ms / self.p50_ms if self.floor_ms and self.p50_ms > 0 else None


def roofline_row(*, backend: str, text_set: str, setting: str, token_counts: Sequence[int], calls: int,
                 wall_s: float, shape: ModelShape, precision: Precision, ceilings: Ceilings | None,
                 vendor: VendorFigures | None, note: str = "") -> RooflineRow:
    """One row from already-capped per-text token counts and the wall of the pass."""
    if not wall_s > 0:
        raise ValueError(f"wall_s must be > 0, got {wall_s!r}")
    flops = useful_flops(token_counts, shape)
    nbytes = forward_bytes(int(sum(token_counts)), calls, shape, precision)
    achieved = flops / wall_s / 1e12
    peak = (ceilings.matmul_tflops.get(precision.peak_key) if ceilings else None)
    # The datasheet figure is dense bf16 (fp16 the same on these parts): an fp32 row has no such peak.
    sheet = vendor.tflops if vendor and precision.peak_key in ("fp16", "bf16") else None
    bound = bound_of(flops, nbytes, peak, ceilings.bandwidth_gbs if ceilings else None)
    attainable = bound.attainable_s
    return RooflineRow(
        backend=backend,
        text_set=text_set,
        setting=setting,
        texts=len(token_counts),
        calls=calls,
        tokens=int(sum(token_counts)),
        useful_tflop=flops / 1e12,
        gbytes=None if nbytes is None else nbytes / 1e9,
        wall_s=wall_s,
        achieved_tflops=achieved,
        peak_key=precision.peak_key,
        measured_peak_tflops=peak,
        mfu_measured=achieved / peak if peak else None,
        datasheet_peak_tflops=sheet,
        mfu_datasheet=achieved / sheet if sheet else None,
        bound=bound,
        bound_texts_per_s=len(token_counts) / attainable if attainable else None,
        reached=attainable / wall_s if attainable else None,
        note="; ".join(n for n in (precision.note, note) if n),
    )


def single_text_row(*, backend: str, text_set: str, call_tokens: Sequence[int], p50_ms: float, n: int,
                    shape: ModelShape, precision: Precision, ceilings: Ceilings | None, note: str = "") -> SingleTextRow:
    """A set's single-text floor: the attainable time of the median one-text call (lower middle when even)."""
    peak = ceilings.matmul_tflops.get(precision.peak_key) if ceilings else None
    bandwidth = ceilings.bandwidth_gbs if ceilings else None
    bounds = sorted((bound_of(forward_flops(t, shape), forward_bytes(t, 1, shape, precision), peak, bandwidth)
                     for t in call_tokens), key=lambda b: b.attainable_s or 0.0)
    middle = bounds[(len(bounds) - 1) // 2] if bounds else Bound(None, None)
    return SingleTextRow(
        backend=backend,
        text_set=text_set,
        calls=len(call_tokens),
        median_tokens=statistics.median_low(call_tokens) if call_tokens else 0,
        bound=middle,
        floor_ms=middle.attainable_s * 1e3 if middle.attainable_s is not None else None,
        p50_ms=p50_ms,
        n=n,
        weight_bytes=precision.weight_bytes,
        note="; ".join(x for x in (precision.note, note) if x),
    )


def _backend_inputs(bench: Mapping[str, Any], backend: str, ceilings: Ceilings | None
                    ) -> tuple[Mapping[str, Any], Precision, Ceilings | None, str]:
    description = (bench["backends"].get(backend) or {}).get("description") or {}
    applied, note = ceilings_for(description, ceilings)
    return description, precision_of(description), applied, note


def roofline_rows(bench: Mapping[str, Any], probe: Mapping[str, Any] | None) -> list[RooflineRow]:
    """A row per backend and text set with a complete throughput pass; [] without a recorded model config."""
    from bench.analyse.figures import all_figures
    from bench.measure.batching import capped_counts

    shape = ModelShape.from_config(bench.get("environment", {}).get("model_config"))
    if shape is None:
        return []
    ceilings = probe_ceilings(probe)
    vendor = vendor_figures(((probe or {}).get("facts") or {}).get("device_name"))
    rows = []
    for f in all_figures(bench):
        best = f.best_throughput
        if best is None or best.wall_s is None:
            continue
        description, precision, applied, note = _backend_inputs(bench, f.backend, ceilings)
        capped = capped_counts(best.token_counts, description.get("max_tokens"))
        calls = len(capped) if description.get("one_call_per_text") else calls_per_pass(best, capped)
        rows.append(roofline_row(
            backend=f.backend, text_set=f.text_set, setting=best.label, token_counts=capped, calls=calls,
            wall_s=best.wall_s, shape=shape, precision=precision, ceilings=applied,
            vendor=vendor if applied is not None and applied.device == "cuda" else None, note=note,
        ))
    return rows


def calls_per_pass(point: Any, capped_counts: Sequence[int]) -> int:
    """Forward calls one pass of a throughput setting (bench.analyse.figures.ThroughputPoint) makes: its batches."""
    from bench.measure.batching import token_budget_batches

    if point.token_budget is not None:
        return len(token_budget_batches(capped_counts, point.token_budget))
    return math.ceil(len(capped_counts) / point.batch_size)


def single_text_rows(bench: Mapping[str, Any], probe: Mapping[str, Any] | None) -> list[SingleTextRow]:
    """A row per backend and text set with single-text latency; [] without a recorded model config.

    The calls cycle through the texts the scenario ran on (the set minus texts left out as
    per-text failures), as bench/measure/scenarios.py's single_text_latency does."""
    from bench.analyse.figures import set_figures, working_counts
    from bench.measure.batching import capped_counts

    shape = ModelShape.from_config(bench.get("environment", {}).get("model_config"))
    if shape is None:
        return []
    ceilings = probe_ceilings(probe)
    counts = {s["name"]: s["token_counts"] for s in bench["workload"]["sets"]}
    rows = []
    for m in bench["measurements"]:
        if m["scenario"] != "single":
            continue
        f = set_figures(bench, m["backend"], m["text_set"])
        if f.single_ms is None or f.single_ms.p50 is None:
            continue
        description, precision, applied, note = _backend_inputs(bench, m["backend"], ceilings)
        capped = capped_counts(working_counts(m, counts[m["text_set"]]), description.get("max_tokens"))
        if not capped:
            continue
        calls = int(m["params"].get("calls") or len(capped))
        rows.append(single_text_row(
            backend=m["backend"], text_set=m["text_set"], call_tokens=[capped[i % len(capped)] for i in range(calls)],
            p50_ms=f.single_ms.p50, n=f.single_ms.count, shape=shape, precision=precision, ceilings=applied,
            note=note,
        ))
    return rows


# --- the floor each text set puts under single-text latency ------------------------------------


@dataclass(frozen=True)
class FloorMultiple:
    backend: str
    p50_ms: float
    n: int
    multiple: float  # p50 / the set's floor


@dataclass(frozen=True)
class SetFloor:
    """A text set's single-text floor and how far above it each measured side sits."""

    text_set: str
    floor_ms: float  # the lowest floor of the backends measured on this set
    floor_backend: str  # whose weights, dtype and token cap give that floor
    weight_bytes: float | None  # bytes per weight of that backend
    bound: str  # "memory" or "compute" for that floor
    sides: tuple[FloorMultiple, ...]

    def multiple_of(self, backend: str) -> float | None:
        return next((s.multiple for s in self.sides if s.backend == backend), None)

    def speedup_out_of_reach(self, backend: str, speedup: float) -> bool:
        """True when `backend` already sits within `speedup`× of the floor, so no backend that reads
        the weights as `floor_backend` does can be `speedup`× faster than it on this metric."""
        multiple = self.multiple_of(backend)
        return multiple is not None and multiple < speedup


def single_text_floors(rows: Sequence[SingleTextRow]) -> tuple[SetFloor, ...]:
    """Per text set (in row order): the lowest floor among its rows and every row's multiple of it. Pure."""
    floors = []
    for text_set in dict.fromkeys(r.text_set for r in rows):
        mine = [r for r in rows if r.text_set == text_set and r.floor_ms]
        if not mine:
            continue
        lowest = min(mine, key=lambda r: r.floor_ms)
        floors.append(SetFloor(
            text_set=text_set,
            floor_ms=lowest.floor_ms,
            floor_backend=lowest.backend,
            weight_bytes=lowest.weight_bytes,
            bound=lowest.bound.kind,
            sides=tuple(FloorMultiple(r.backend, r.p50_ms, r.n, r.p50_ms / lowest.floor_ms) for r in mine),
        ))
    return tuple(floors)


def read_model_config(model: str) -> dict[str, Any]:
    """The config numbers the roofline needs, read once at run time; never raises.

    Returns {key: int for CONFIG_KEYS} plus "model_type" and "source", or {"error": why}.
    """
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(model)
    except Exception as err:  # noqa: BLE001 - a missing config only drops the roofline table
        lines = str(err).strip().splitlines()
        return {"error": f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]}
    values: dict[str, Any] = {k: getattr(config, k, None) for k in CONFIG_KEYS}
    values["model_type"] = getattr(config, "model_type", None)
    values["source"] = f"transformers.AutoConfig.from_pretrained({model!r})"
    return values
