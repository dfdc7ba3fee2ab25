"""SDPA backend matrix on BGE-M3's attention shapes, and the backend settings the bench must apply.

Each backend of torch.nn.functional.scaled_dot_product_attention (flash, mem-efficient,
cuDNN, math) is forced alone with torch.nn.attention.sdpa_kernel([backend]) and run for
each dtype on BGE-M3's shapes (16 heads, head dim 64), with and without the padding mask
that transformers' BERT/XLM-R SDPA path passes: a boolean (batch, 1, seq, seq) tensor,
True = attend, padded key positions False (transformers.masking_utils.sdpa_mask; None
when a batch has no padding).

Each cell ends as one of four outcomes:
  ok          ran and matched an fp32 MATH reference within the dtype's tolerance;
  unsupported "No viable backend": the dispatcher refuses these inputs for that backend
              and, with all backends enabled, silently picks another one - no action needed;
  wrong       ran but gave wrong (or non-finite) numbers - the backend must be disabled;
  error       the backend was picked and then crashed (e.g. "no kernel image is available
              for execution on the device") - PyTorch does not fall back, so disable it too.

derive_sdpa_settings() turns the rows into the settings dict the bench applies with
apply_sdpa_settings(). torch is imported inside functions only, so this module imports
cleanly when torch is broken.
"""

from __future__ import annotations

import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

from probe.failures import blames_device, failure_cause
from probe.registry import ProbeContext
from probe.result import CheckResult, Status
from probe.view import format_number

NAME = "attention"
TITLE = "SDPA attention backends on BGE-M3 shapes"

HEADS = 16
HEAD_DIM = 64

# Backend (torch.nn.attention.SDPBackend member name) -> torch.backends.cuda setter.
BACKEND_SETTINGS: dict[str, str] = {
    "FLASH_ATTENTION": "enable_flash_sdp",
    "EFFICIENT_ATTENTION": "enable_mem_efficient_sdp",
    "CUDNN_ATTENTION": "enable_cudnn_sdp",
    "MATH": "enable_math_sdp",
}
BACKENDS: tuple[str, ...] = tuple(BACKEND_SETTINGS)
# PyTorch's defaults: every backend enabled, the dispatcher picks the first viable one.
PYTORCH_DEFAULTS: dict[str, bool] = {setting: True for setting in BACKEND_SETTINGS.values()}

# Max abs error against an fp32 MATH reference computed from the same (rounded) inputs.
# Correct kernels stay one to two orders of magnitude below these; broken ones are O(0.1..inf).
TOLERANCE: dict[str, float] = {"float32": 2e-3, "float16": 1e-2, "bfloat16": 3e-2}

NO_VIABLE_BACKEND = "No viable backend"

OK, UNSUPPORTED, WRONG, ERROR, SKIPPED = "ok", "unsupported", "wrong", "error", "skipped"
NOT_RUN = "not run"  # out of memory others hold, a missing library: no evidence about the backend
BROKEN_OUTCOMES = (WRONG, ERROR)

# (backend, q, k, v, attn_mask or None) -> output tensor. Injected by tests.
SdpaRunner = Callable[[str, Any, Any, Any, Any], Any]


@dataclass(frozen=True)
class Shape:
    batch: int
    seq: int
    heads: int = HEADS
    head_dim: int = HEAD_DIM


@dataclass(frozen=True)
class MatrixPlan:
    """What to run: shapes x dtypes x masked/unmasked x backends, and how long to time each cell."""

    device: str
    shapes: tuple[Shape, ...]
    dtypes: tuple[str, ...]
    max_repeats: int
    max_cell_s: float


@dataclass(frozen=True)
class Cell:
    """One row of the matrix: one backend alone on one (shape, dtype, mask) combination."""

    backend: str
    dtype: str
    batch: int
    seq: int
    masked: bool
    outcome: str  # ok | unsupported | wrong | error | skipped
    supported: bool
    ran: bool
    max_abs_err: float | None
    tolerance: float | None
    median_ms: float | None
    count: int
    error: str | None = None


@dataclass(frozen=True)
class SdpaDecision:
    """The pure answer derived from the matrix."""

    settings: dict[str, bool]
    workarounds: tuple[str, ...]
    broken: tuple[str, ...]  # backends that gave wrong results or crashed after being picked
    unsupported: tuple[str, ...]  # backends that were never viable here (information only)
    masked_ok_dtypes: tuple[str, ...]  # dtypes where every masked shape has a working backend


def plan_for(device: str, quick: bool) -> MatrixPlan:
    """BGE-M3 shapes on a GPU; a small subset on CPU so the check finishes in a few seconds."""
    if device == "cpu":
        shapes = (Shape(1, 512),) if quick else (Shape(1, 512), Shape(1, 1024))
        return MatrixPlan(device, shapes, ("float32", "bfloat16", "float16"), max_repeats=3, max_cell_s=0.1)
    shapes = (Shape(4, 512), Shape(2, 2048))
    if not quick:
        shapes += (Shape(1, 8192),)
    return MatrixPlan(device, shapes, ("float16", "bfloat16", "float32"), max_repeats=10, max_cell_s=1.0)


def padding_mask(shape: Shape, device: str) -> Any:
    """The boolean (batch, 1, seq, seq) mask transformers' SDPA path builds for a padded batch.

    Row b has S - (b + 1) * S // (4 * batch) real tokens, so every row has some padding
    and rows differ, as in a sentence-transformers batch sorted by length.
    """
    import torch

    seq = shape.seq
    lengths = torch.tensor([seq - (b + 1) * seq // (4 * shape.batch) for b in range(shape.batch)], device=device)
    keep = torch.arange(seq, device=device)[None, :] < lengths[:, None]  # (batch, kv)
    return keep[:, None, None, :].expand(shape.batch, 1, seq, seq)


def torch_sdpa_runner(backend: str, q: Any, k: Any, v: Any, mask: Any) -> Any:
    """Run SDPA with only `backend` allowed."""
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with sdpa_kernel([getattr(SDPBackend, backend)]):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:300]


def _max_abs_err(out: Any, ref: Any) -> float:
    import torch

    diff = (out.float() - ref).abs()
    if not bool(torch.isfinite(out.float()).all()):
        return float("inf")
    return float(diff.max())


def run_cell(
    runner: SdpaRunner,
    backend: str,
    dtype: str,
    shape: Shape,
    masked: bool,
    inputs: tuple[Any, Any, Any, Any],
    reference: Any,
    plan: MatrixPlan,
) -> Cell:
    """One backend on one combination. Never raises: any failure becomes the cell's outcome."""
    q, k, v, mask = inputs
    base = dict(backend=backend, dtype=dtype, batch=shape.batch, seq=shape.seq, masked=masked)
    tolerance = TOLERANCE.get(dtype)
    try:
        with warnings.catch_warnings(record=True) as caught:  # PyTorch says why a backend refused
            warnings.simplefilter("always")
            out = runner(backend, q, k, v, mask)  # warm-up; its output is the one checked
            _sync(plan.device)
    except Exception as err:  # noqa: BLE001 - one cell must not stop the others
        message = _one_line(err)
        why = [str(w.message).strip().splitlines()[0] for w in caught if str(w.message).strip()]
        if why:
            message = f"{message} [{'; '.join(dict.fromkeys(why))}]"[:600]
        if NO_VIABLE_BACKEND in message:
            return Cell(**base, outcome=UNSUPPORTED, supported=False, ran=False, max_abs_err=None,
                        tolerance=tolerance, median_ms=None, count=0, error=message)
        return Cell(**base, outcome=_error_outcome(err), supported=True, ran=False, max_abs_err=None,
                    tolerance=tolerance, median_ms=None, count=0, error=message)
    try:
        err_value = _max_abs_err(out, reference) if reference is not None else None
        del out
        times = []
        started = time.perf_counter()
        while len(times) < plan.max_repeats and (not times or time.perf_counter() - started < plan.max_cell_s):
            t0 = time.perf_counter()
            runner(backend, q, k, v, mask)
            _sync(plan.device)
            times.append(time.perf_counter() - t0)
    except Exception as err:  # noqa: BLE001 - e.g. a sticky CUDA error on a repeat
        return Cell(**base, outcome=_error_outcome(err), supported=True, ran=True, max_abs_err=None,
                    tolerance=tolerance, median_ms=None, count=0, error=_one_line(err))
    median_ms = round(statistics.median(times) * 1000, 3)
    if err_value is None:
        outcome, note = SKIPPED, "no fp32 reference for this combination"
    elif tolerance is not None and not err_value <= tolerance:
        outcome, note = WRONG, f"max abs error {format_number(err_value, 3)} > tolerance {format_number(tolerance)}"
    else:
        outcome, note = OK, None
    return Cell(**base, outcome=outcome, supported=True, ran=True, max_abs_err=err_value,
                tolerance=tolerance, median_ms=median_ms, count=len(times), error=note)


def _error_outcome(err: BaseException) -> str:
    """ERROR (the backend is broken here) unless the device was only short of memory or a library."""
    return NOT_RUN if failure_cause(err) == "resource" else ERROR


def run_matrix(plan: MatrixPlan, runner: SdpaRunner = torch_sdpa_runner, seed: int = 0) -> list[Cell]:
    """Every backend alone on every (shape, dtype, masked) combination of the plan."""
    import torch

    cells: list[Cell] = []
    generator = torch.Generator(device="cpu").manual_seed(seed)
    for shape in plan.shapes:
        dims = (shape.batch, shape.heads, shape.seq, shape.head_dim)
        base = [torch.randn(dims, generator=generator) for _ in range(3)]
        for dtype_name in plan.dtypes:
            dtype = getattr(torch, dtype_name)
            for masked in (False, True):
                try:
                    q, k, v = (t.to(plan.device).to(dtype) for t in base)
                    mask = padding_mask(shape, plan.device) if masked else None
                except Exception as err:  # noqa: BLE001 - e.g. out of memory on the device
                    # Not the backends' fault: recorded as skipped, never as broken.
                    message = f"inputs could not be built: {_one_line(err)}"
                    cells.extend(
                        Cell(backend, dtype_name, shape.batch, shape.seq, masked, SKIPPED, False, False,
                             None, TOLERANCE.get(dtype_name), None, 0, message)
                        for backend in BACKENDS
                    )
                    continue
                reference = _reference(q, k, v, mask)
                for backend in BACKENDS:
                    cells.append(run_cell(runner, backend, dtype_name, shape, masked, (q, k, v, mask),
                                          reference, plan))
                del q, k, v, mask, reference
        if plan.device.startswith("cuda"):
            torch.cuda.empty_cache()
    return cells


def _reference(q: Any, k: Any, v: Any, mask: Any) -> Any:
    """fp32 MATH on the same device from the same rounded inputs, so only the kernel's error is measured."""
    try:
        return torch_sdpa_runner("MATH", q.float(), k.float(), v.float(), mask)
    except Exception:  # noqa: BLE001 - cells then report 'skipped' instead of an error value
        return None


def derive_sdpa_settings(cells: Sequence[Cell]) -> SdpaDecision:
    """Matrix rows -> the SDPA settings the bench must apply.

    A backend is disabled only when it is broken here (wrong numbers, or a crash after the
    dispatcher picked it). "No viable backend" is not broken: with every backend enabled the
    dispatcher falls back by itself. MATH stays enabled whatever happens: it is the last fallback.
    """
    broken = tuple(b for b in BACKENDS if any(c.backend == b and c.outcome in BROKEN_OUTCOMES for c in cells))
    unsupported = tuple(
        b for b in BACKENDS
        if any(c.backend == b for c in cells) and all(c.outcome == UNSUPPORTED for c in cells if c.backend == b)
    )
    settings = {BACKEND_SETTINGS[b]: b not in broken for b in BACKENDS}
    settings["enable_math_sdp"] = True
    workarounds = tuple(
        f"torch.backends.cuda.{setting}(False)"
        for setting, value in settings.items()
        if value is False and PYTORCH_DEFAULTS[setting] is True
    )
    masked_ok = []
    for dtype in dict.fromkeys(c.dtype for c in cells):
        groups = {(c.batch, c.seq) for c in cells if c.dtype == dtype and c.masked}
        usable = [
            any(c.outcome == OK and settings[BACKEND_SETTINGS[c.backend]] for c in cells
                if c.dtype == dtype and c.masked and (c.batch, c.seq) == group)
            for group in groups
        ]
        if usable and all(usable):
            masked_ok.append(dtype)
    return SdpaDecision(settings, workarounds, broken, unsupported, tuple(masked_ok))


def apply_sdpa_settings(settings: Mapping[str, bool]) -> None:
    """What the bench calls before loading the model: torch.backends.cuda.<key>(value) for each key.

    The same global flags also steer CPU dispatch. Unknown keys are an error, not ignored.
    """
    import torch

    for key, value in settings.items():
        if key not in PYTORCH_DEFAULTS:
            raise KeyError(f"unknown SDPA setting {key!r}; expected one of {sorted(PYTORCH_DEFAULTS)}")
        getattr(torch.backends.cuda, key)(bool(value))


def current_sdpa_settings() -> dict[str, bool]:
    """The four flags as torch has them now (torch.backends.cuda.*_enabled())."""
    import torch

    cuda = torch.backends.cuda
    return {
        "enable_flash_sdp": bool(cuda.flash_sdp_enabled()),
        "enable_mem_efficient_sdp": bool(cuda.mem_efficient_sdp_enabled()),
        "enable_cudnn_sdp": bool(cuda.cudnn_sdp_enabled()),
        "enable_math_sdp": bool(cuda.math_sdp_enabled()),
    }


@contextmanager
def sdpa_settings_applied(settings: Mapping[str, bool]) -> Iterator[None]:
    """Apply `settings` for the duration of a block, then restore the previous flags."""
    previous = current_sdpa_settings()
    apply_sdpa_settings(settings)
    try:
        yield
    finally:
        apply_sdpa_settings(previous)


def status_for(decision: SdpaDecision, cells: Sequence[Cell], on_cpu: bool) -> tuple[Status, str]:
    """Status and one-line reason from the decision."""
    prefix = "on CPU (target not probed): " if on_cpu else ""
    all_dtypes = tuple(dict.fromkeys(c.dtype for c in cells))
    if not cells:
        return Status.FAIL, prefix + "no SDPA combination was run"
    # Evidence against the GPU: wrong numbers, or an error that blames it. Memory others hold or a
    # bug (a TypeError in the runner, say) still switches that backend off, but proves nothing.
    evidence = [c for c in cells if c.outcome == WRONG or (c.outcome == ERROR and blames_device(c.error or ""))]
    unproven = [c for c in cells if c.outcome in (NOT_RUN, ERROR) and c not in evidence]
    if not decision.masked_ok_dtypes and not evidence and unproven:
        return Status.SKIP, prefix + (
            f"not run: {len(unproven)} of {len(cells)} SDPA combinations could not run for reasons that are not the "
            f"GPU's ({unproven[0].error}); free device memory, or report the error, and re-run the probe")
    if not decision.masked_ok_dtypes:
        return Status.FAIL, prefix + (
            "no SDPA backend gives correct results with a padding mask in any dtype; BGE-M3 cannot run"
        )
    problems = []
    if decision.broken:
        how = {b: sorted({c.outcome for c in cells if c.backend == b and c.outcome in BROKEN_OUTCOMES})
               for b in decision.broken}
        problems.append("broken: " + ", ".join(f"{b} ({', '.join(o)})" for b, o in how.items()))
    if decision.workarounds:
        problems.append("apply " + "; ".join(decision.workarounds))
    missing = [d for d in all_dtypes if d not in decision.masked_ok_dtypes]
    if missing:
        problems.append(f"no working masked backend in {', '.join(missing)}")
    working = sorted({c.backend for c in cells if c.outcome == OK})
    summary = f"working backends: {', '.join(working) or 'none'}"
    if decision.unsupported:
        summary += f"; unsupported (dispatcher falls back): {', '.join(decision.unsupported)}"
    if problems:
        return Status.WARN, prefix + "; ".join(problems) + f" ({summary})"
    return Status.PASS, prefix + f"all run backends correct with and without padding mask ({summary})"


def check_attention(
    ctx: ProbeContext,
    *,
    runner: SdpaRunner = torch_sdpa_runner,
    plan: MatrixPlan | None = None,
) -> CheckResult:
    """The probe check: run the matrix on ctx.device (CPU when None), derive settings and status."""
    device = ctx.device or "cpu"
    plan = plan or plan_for(device, ctx.quick)
    started = time.perf_counter()
    cells = run_matrix(plan, runner)
    decision = derive_sdpa_settings(cells)
    status, reason = status_for(decision, cells, on_cpu=device == "cpu")
    ctx.shared["sdpa_settings"] = dict(decision.settings)
    figures = {
        "device": device,
        "target_probed": device != "cpu",
        "mask": "bool (batch, 1, seq, seq), True = attend; padded keys False (as transformers' sdpa_mask)",
        "shapes": [asdict(s) for s in plan.shapes],
        "dtypes": list(plan.dtypes),
        "tolerance": {d: TOLERANCE[d] for d in plan.dtypes if d in TOLERANCE},
        "reference": "fp32 MATH on the same device from the same rounded inputs",
        "timing": f"1 warm-up, then up to {plan.max_repeats} runs or {plan.max_cell_s} s per cell; median",
        "cells": [asdict(c) for c in cells],
        "broken_backends": list(decision.broken),
        "unsupported_backends": list(decision.unsupported),
        "masked_ok_dtypes": list(decision.masked_ok_dtypes),
        "matrix_s": round(time.perf_counter() - started, 3),
    }
    return CheckResult(
        name=NAME,
        title=TITLE,
        status=status,
        reason=reason,
        figures=figures,
        settings=dict(decision.settings),
        workarounds=decision.workarounds,
    )
