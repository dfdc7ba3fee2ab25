"""Roofline: each backend's best throughput as useful TFLOP/s and as a fraction of the device's peak.

Forward FLOPs of one text with T tokens through a BERT-style encoder (BGE-M3 is XLM-RoBERTa
large) with L layers, hidden size h and MLP (intermediate) size i, counting a multiply-add
as 2 FLOPs:

    per layer  2·T·(4·h² + 2·h·i)     Q, K, V and output projections (4·h² MACs per token)
                                       and the two MLP matrices (2·h·i MACs per token)
             + 2·2·T²·h               attention scores Q·Kᵀ and the weighted sum A·V
                                       (T²·h MACs each, summed over the heads)
    total      L · per layer

Left out as negligible: the embedding lookup (a gather, ~0 FLOPs), layer norms, softmax,
GELU, biases and the pooling (O(T·h) each, against O(T·h²) above). The vocabulary size
only sizes the gather; heads do not change the count (h = heads · head_dim).

Useful FLOPs of a text set = the sum of that formula over the texts at their real token
counts (the workload's tokenizer counts, capped at the backend's max tokens where it
reports one). Padding is deliberately not counted: at batch size b every text in a batch
runs at the batch's longest length, so the device does more work than this; that waste
is exactly what MFU should expose, so it counts against the backend, not for it.

Achieved TFLOP/s = useful FLOPs of the set / wall time of the backend's best throughput
pass over that set (the whole-set pass, as the throughput table reports it).

MFU (model FLOPs utilisation) = achieved TFLOP/s / peak TFLOP/s, against two peaks:
  - measured: the probe's square-matmul rate (probe.json, check "kernels",
    figures.matmul_tflops, best of its timed reps) for the dtype the backend ran:
    fp16/bf16 for half-precision native backends, fp32 for native fp32 (torch's default
    float32 matmul precision is "highest": no TF32). Ollama's compute dtype is not
    reported (GGUF weights, often F16): the fp16 peak is used and the row says so.
  - datasheet: the vendor's dense BF16 tensor figure where the GPU is in DATASHEET;
    "not published" where the vendor gives no clear dense BF16 figure (GB10).
Everything here is a pure function of bench.json, probe.json and the model config that
the bench recorded at run time (bench.json environment.model_config); nothing loads a model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

CONFIG_KEYS: tuple[str, ...] = (
    "num_hidden_layers", "hidden_size", "intermediate_size", "num_attention_heads", "vocab_size",
)
FP16_ASSUMED = "compute dtype not reported (Ollama: GGUF weights, often F16): fp16 peak assumed"
# the torch dtype a backend reports -> the probe's matmul_tflops key
PEAK_KEYS: dict[str, str] = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


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


@dataclass(frozen=True)
class DatasheetPeak:
    gpu: str
    tflops: float | None  # dense BF16 tensor TFLOP/s; None: not published
    source: str


# Matched in order against the device name torch reports (first match wins).
DATASHEET: tuple[tuple[str, DatasheetPeak], ...] = (
    ("H100 PCIe", DatasheetPeak("H100 PCIe", 756.0, "NVIDIA H100 datasheet: BF16 Tensor Core 1,513 with sparsity, 756 dense")),
    ("H100 NVL", DatasheetPeak("H100 NVL", None, "not in this table")),
    ("H100", DatasheetPeak("H100 SXM", 989.0, "NVIDIA H100 datasheet: BF16 Tensor Core 1,979 with sparsity, 989 dense")),
    ("H200", DatasheetPeak("H200 SXM", 989.0, "NVIDIA H200 datasheet: BF16 Tensor Core 1,979 with sparsity, 989 dense")),
    ("GB10", DatasheetPeak("GB10", None, "not published: NVIDIA quotes 1 PFLOP FP4 with sparsity and about "
                                         "31 TFLOP/s FP32 (Hot Chips 2025), no dense BF16 figure")),
)


@dataclass(frozen=True)
class RooflineRow:
    """One backend on one text set at its best throughput setting."""

    backend: str
    text_set: str
    setting: str  # the best throughput point, e.g. "batch 32" or "≤16384 tokens"
    texts: int
    tokens: int  # useful tokens: real per-text counts, capped at the backend's max tokens
    useful_tflop: float  # forward FLOPs of the set at those counts, in TFLOP (1e12)
    wall_s: float
    achieved_tflops: float
    peak_key: str  # which probe matmul rate is the peak: fp32, fp16, bf16
    measured_peak_tflops: float | None
    mfu_measured: float | None  # achieved / measured peak
    datasheet_peak_tflops: float | None
    mfu_datasheet: float | None  # achieved / datasheet dense BF16
    note: str


def forward_flops(tokens: int, shape: ModelShape) -> float:
    """FLOPs of one forward pass over one text of `tokens` tokens (formula in the module docstring)."""
    t, h, i = float(tokens), float(shape.hidden), float(shape.intermediate)
    per_layer = 2.0 * t * (4.0 * h * h + 2.0 * h * i) + 2.0 * 2.0 * t * t * h
    return shape.layers * per_layer


def useful_flops(token_counts: Sequence[int], shape: ModelShape) -> float:
    """Sum of forward_flops over the texts at their real (unpadded) token counts."""
    return sum(forward_flops(n, shape) for n in token_counts)


def datasheet_peak(device_name: str | None) -> DatasheetPeak | None:
    """The datasheet row for this GPU name, or None when the GPU is not in the table (or unknown)."""
    if not device_name:
        return None
    for needle, peak in DATASHEET:
        if needle.lower() in device_name.lower():
            return peak
    return None


def measured_peaks(probe: Mapping[str, Any] | None) -> dict[str, float]:
    """The probe's best matmul TFLOP/s per dtype key (fp32, tf32, fp16, bf16); {} when not measured."""
    for check in (probe or {}).get("checks", []):
        if check.get("name") == "kernels":
            rates = (check.get("figures") or {}).get("matmul_tflops") or {}
            return {k: float(v) for k, v in rates.items() if isinstance(v, (int, float))}
    return {}


def peak_key(dtype: str | None) -> tuple[str, str]:
    """(probe matmul key, note) for the dtype a backend reported; unknown dtypes get fp16, said so."""
    if dtype in PEAK_KEYS:
        return PEAK_KEYS[dtype], ""
    return "fp16", FP16_ASSUMED


def roofline_row(*, backend: str, text_set: str, setting: str, token_counts: Sequence[int], wall_s: float,
                 shape: ModelShape, dtype: str | None, peaks: Mapping[str, float],
                 datasheet: DatasheetPeak | None) -> RooflineRow:
    """One row from already-capped per-text token counts and the wall of the pass."""
    if not wall_s > 0:
        raise ValueError(f"wall_s must be > 0, got {wall_s!r}")
    flops = useful_flops(token_counts, shape)
    achieved = flops / wall_s / 1e12
    key, note = peak_key(dtype)
    measured = peaks.get(key)
    sheet = datasheet.tflops if datasheet else None
    return RooflineRow(
        backend=backend,
        text_set=text_set,
        setting=setting,
        texts=len(token_counts),
        tokens=int(sum(token_counts)),
        useful_tflop=flops / 1e12,
        wall_s=wall_s,
        achieved_tflops=achieved,
        peak_key=key,
        measured_peak_tflops=measured,
        mfu_measured=achieved / measured if measured else None,
        datasheet_peak_tflops=sheet,
        mfu_datasheet=achieved / sheet if sheet else None,
        note=note,
    )


def roofline_rows(bench: Mapping[str, Any], probe: Mapping[str, Any] | None) -> list[RooflineRow]:
    """A row per backend and text set with a complete throughput pass; [] without a recorded model config."""
    from bench.analysis import all_figures
    from bench.batching import capped_counts

    shape = ModelShape.from_config(bench.get("environment", {}).get("model_config"))
    if shape is None:
        return []
    peaks = measured_peaks(probe)
    device_name = ((probe or {}).get("facts") or {}).get("device_name")
    sheet = datasheet_peak(device_name)
    rows = []
    for f in all_figures(bench):
        best = f.best_throughput
        if best is None or best.wall_s is None:
            continue
        description = (bench["backends"].get(f.backend) or {}).get("description") or {}
        rows.append(roofline_row(
            backend=f.backend, text_set=f.text_set, setting=best.label,
            token_counts=capped_counts(best.token_counts, description.get("max_tokens")),
            wall_s=best.wall_s, shape=shape, dtype=description.get("dtype"), peaks=peaks, datasheet=sheet,
        ))
    return rows


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
