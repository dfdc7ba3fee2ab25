"""Check: the kernels a BERT-style encoder needs give right answers on the device, and how fast.

Each op runs on the device and is compared with a float64 reference on the CPU
computed from the *same* (already rounded) inputs, so the error measures the
device's arithmetic, not input quantisation. Error metric, for every op:

    rel_err = max |out - ref| / max |ref|

Tolerances (stated in the figures too):
  matmul fp32 1e-5  - IEEE fp32 with fp32 accumulation; observed errors are ~1e-6 at n=4096.
                      NVIDIA's PyTorch images set TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1: in torch
                      >= 2.5 that makes TF32 the *default* fp32 matmul precision ("high"), which
                      allow_tf32=False still overrides (older ATen let it win over the flag). The
                      check sets allow_tf32=False and reads it back: when it stays True, fp32
                      matmul *is* TF32 here, it is judged against the TF32 tolerance and the
                      check warns; when only the default is TF32, it warns that a process that
                      does not pin IEEE runs TF32 (the bench's native-fp32 pins it). A
                      configuration is never "incompatible".
  matmul tf32 1e-2  - inputs rounded to a 10-bit mantissa (2^-11 ~ 4.9e-4 per input); typical ~2e-4
  matmul fp16 1e-2  - output rounded to fp16 (half ulp 2^-11 ~ 4.9e-4), reduced-precision split-K allowed
  matmul bf16 2e-2  - output rounded to bf16 (half ulp 2^-8 ~ 3.9e-3)
  layer_norm, softmax, GELU (fp32) 1e-5; embedding gather 0 (a copy must be exact)

Rates: matmul TFLOP/s = 2 n^3 / time; the other ops GB/s = bytes read + written / time.
Each timing: warm-up, synchronize before reading the clock, repeated to a minimum
count and duration; median and best are reported with the count. The functions are
device-parametric: tests run them on the CPU with tiny sizes.
"""

from __future__ import annotations

import dataclasses
import os
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from probe.failures import failure_cause
from probe.registry import ProbeContext
from probe.result import CheckResult, Status
from probe.view import format_number

NAME = "kernels"
TITLE = "Kernel smoke tests vs float64"
SEED = 1234


@dataclass(frozen=True)
class Sizes:
    matmul_n: int  # square matmul n x n @ n x n
    rows: int  # rows x cols activations for layer_norm / softmax / GELU
    cols: int
    vocab: int  # embedding table vocab x dim, gathered at `tokens` indices
    dim: int
    tokens: int
    check_rows: int  # matmul: rows of the output compared with the float64 reference


GPU_SIZES = Sizes(matmul_n=4096, rows=4096, cols=4096, vocab=32768, dim=1024, tokens=16384, check_rows=256)
GPU_QUICK_SIZES = Sizes(
    matmul_n=2048, rows=1024, cols=4096, vocab=8192, dim=1024, tokens=4096, check_rows=128
)
CPU_SIZES = Sizes(matmul_n=96, rows=32, cols=128, vocab=500, dim=32, tokens=64, check_rows=96)


@dataclass(frozen=True)
class TimingPolicy:
    warmup: int
    min_reps: int
    max_reps: int
    min_time_s: float


GPU_TIMING = TimingPolicy(warmup=3, min_reps=10, max_reps=100, min_time_s=0.25)
GPU_QUICK_TIMING = TimingPolicy(warmup=2, min_reps=5, max_reps=20, min_time_s=0.05)
CPU_TIMING = TimingPolicy(warmup=1, min_reps=3, max_reps=3, min_time_s=0.0)


@dataclass(frozen=True)
class KernelOp:
    """One op: inputs on the device, the computation, its float64 reference and its work.

    `reference` receives the inputs as float64 CPU tensors (integer tensors and plain
    values unchanged) and may cover only leading rows of the output; the output is
    compared on those rows. `work` returns FLOPs (unit TFLOP/s) or bytes (unit GB/s).
    """

    name: str
    dtype: str
    tolerance: float
    unit: str
    make_inputs: Callable[[Any, Sizes, str, Any], tuple]
    compute: Callable[..., Any]
    reference: Callable[..., Any]
    work: Callable[[Sizes], float]
    tf32: bool = False


@dataclass(frozen=True)
class OpOutcome:
    name: str
    dtype: str
    ok: bool
    tolerance: float
    rel_err: float | None
    error: str | None  # the exception's first line when the op raised
    unit: str
    rate_median: float | None
    rate_best: float | None
    median_s: float | None
    best_s: float | None
    reps: int
    cause: str | None = None  # probe.failures.failure_cause of the whole error, when the op raised

    @property
    def blames_device(self) -> bool:
        """A wrong result, or an error that blames the GPU; not memory others hold, not a bug."""
        return self.error is None or self.cause == "device"


# --- the ops ----------------------------------------------------------------


def _randn(torch: Any, shape: tuple[int, ...], gen: Any, device: str, dtype: Any) -> Any:
    return torch.randn(shape, generator=gen, dtype=torch.float32).to(device=device, dtype=dtype)


def _matmul_inputs(dtype_name: str) -> Callable[[Any, Sizes, str, Any], tuple]:
    def make(torch: Any, sizes: Sizes, device: str, gen: Any) -> tuple:
        dtype = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}[dtype_name]
        n = sizes.matmul_n
        return (
            _randn(torch, (n, n), gen, device, dtype),
            _randn(torch, (n, n), gen, device, dtype),
            min(sizes.check_rows, n),
        )

    return make


def _matmul(a: Any, b: Any, rows: int) -> Any:
    del rows
    return a @ b


def _matmul_ref(a: Any, b: Any, rows: int) -> Any:
    return a[:rows] @ b


def _matmul_flops(sizes: Sizes) -> float:
    return 2.0 * sizes.matmul_n**3


def _activations(torch: Any, sizes: Sizes, device: str, gen: Any) -> tuple:
    return (_randn(torch, (sizes.rows, sizes.cols), gen, device, torch.float32),)


def _layer_norm_inputs(torch: Any, sizes: Sizes, device: str, gen: Any) -> tuple:
    x = _randn(torch, (sizes.rows, sizes.cols), gen, device, torch.float32) * 3 + 1
    weight = _randn(torch, (sizes.cols,), gen, device, torch.float32)
    bias = _randn(torch, (sizes.cols,), gen, device, torch.float32)
    return x, weight, bias


def _layer_norm(x: Any, weight: Any, bias: Any) -> Any:
    import torch.nn.functional as F  # noqa: N812, PLC0415

    return F.layer_norm(x, (x.shape[-1],), weight, bias, eps=1e-5)


def _layer_norm_ref(x: Any, weight: Any, bias: Any) -> Any:
    mean = x.mean(dim=-1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
    return (x - mean) / (var + 1e-5).sqrt() * weight + bias


def _softmax(x: Any) -> Any:
    return x.softmax(dim=-1)


def _softmax_ref(x: Any) -> Any:
    shifted = x - x.max(dim=-1, keepdim=True).values
    exp = shifted.exp()
    return exp / exp.sum(dim=-1, keepdim=True)


def _gelu(x: Any) -> Any:
    import torch.nn.functional as F  # noqa: N812, PLC0415

    return F.gelu(x)


def _gelu_ref(x: Any) -> Any:
    return 0.5 * x * (1.0 + (x / 2.0**0.5).erf())


def _rw_bytes(sizes: Sizes) -> float:
    return 2.0 * sizes.rows * sizes.cols * 4  # read x, write out (fp32)


def _embedding_inputs(torch: Any, sizes: Sizes, device: str, gen: Any) -> tuple:
    weight = _randn(torch, (sizes.vocab, sizes.dim), gen, device, torch.float32)
    ids = torch.randint(0, sizes.vocab, (sizes.tokens,), generator=gen).to(device)
    return weight, ids


def _embedding(weight: Any, ids: Any) -> Any:
    import torch.nn.functional as F  # noqa: N812, PLC0415

    return F.embedding(ids, weight)


def _embedding_ref(weight: Any, ids: Any) -> Any:
    return weight[ids]


def _embedding_bytes(sizes: Sizes) -> float:
    return 2.0 * sizes.tokens * sizes.dim * 4 + sizes.tokens * 8  # rows read + written, ids read


DEFAULT_OPS: tuple[KernelOp, ...] = (
    KernelOp(
        "matmul_fp32",
        "float32",
        1e-5,
        "TFLOP/s",
        _matmul_inputs("float32"),
        _matmul,
        _matmul_ref,
        _matmul_flops,
    ),
    KernelOp(
        "matmul_tf32",
        "tf32",
        1e-2,
        "TFLOP/s",
        _matmul_inputs("float32"),
        _matmul,
        _matmul_ref,
        _matmul_flops,
        tf32=True,
    ),
    KernelOp(
        "matmul_fp16",
        "float16",
        1e-2,
        "TFLOP/s",
        _matmul_inputs("float16"),
        _matmul,
        _matmul_ref,
        _matmul_flops,
    ),
    KernelOp(
        "matmul_bf16",
        "bfloat16",
        2e-2,
        "TFLOP/s",
        _matmul_inputs("bfloat16"),
        _matmul,
        _matmul_ref,
        _matmul_flops,
    ),
    KernelOp(
        "layer_norm", "float32", 1e-5, "GB/s", _layer_norm_inputs, _layer_norm, _layer_norm_ref, _rw_bytes
    ),
    KernelOp("softmax", "float32", 1e-5, "GB/s", _activations, _softmax, _softmax_ref, _rw_bytes),
    KernelOp("gelu", "float32", 1e-5, "GB/s", _activations, _gelu, _gelu_ref, _rw_bytes),
    KernelOp(
        "embedding", "float32", 0.0, "GB/s", _embedding_inputs, _embedding, _embedding_ref, _embedding_bytes
    ),
)

TF32_TOLERANCE = 1e-2  # the matmul_tf32 op's: inputs rounded to a 10-bit mantissa
# Variables that change TF32 in this process, recorded as set: PyTorch's (ATen reads it once,
# at start-up, for the default fp32 matmul precision) and cuBLAS's (0 disables TF32 everywhere).
TF32_OVERRIDE_VARS: tuple[str, ...] = ("TORCH_ALLOW_TF32_CUBLAS_OVERRIDE", "NVIDIA_TF32_OVERRIDE")

# matmul op name -> the key the bench's roofline reads from ctx.shared["matmul_tflops"]
MATMUL_KEYS = {"matmul_fp32": "fp32", "matmul_tf32": "tf32", "matmul_fp16": "fp16", "matmul_bf16": "bf16"}


# --- running ----------------------------------------------------------------


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def _synchronize(torch: Any, device: str) -> None:
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def relative_error(torch: Any, out: Any, ref: Any) -> float:
    """max |out - ref| / max |ref| in float64 (max |out - ref| when ref is all zeros)."""
    out64 = out.detach().to(device="cpu", dtype=torch.float64)[: ref.shape[0]]
    diff = float((out64 - ref).abs().max())
    scale = float(ref.abs().max())
    return diff / scale if scale > 0 else diff


def _as_reference_input(torch: Any, value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        value = value.detach().to("cpu")
        return value.to(torch.float64) if value.is_floating_point() else value
    return value


def time_call(torch: Any, device: str, fn: Callable[[], Any], policy: TimingPolicy) -> list[float]:
    """Seconds per call: warm-up, then synchronised samples to a minimum count and duration."""
    for _ in range(policy.warmup):
        fn()
    _synchronize(torch, device)
    samples: list[float] = []
    started = time.perf_counter()
    while len(samples) < policy.max_reps and (
        len(samples) < policy.min_reps or time.perf_counter() - started < policy.min_time_s
    ):
        _synchronize(torch, device)
        t0 = time.perf_counter()
        fn()
        _synchronize(torch, device)
        samples.append(time.perf_counter() - t0)
    return samples


def run_op(op: KernelOp, device: str, sizes: Sizes, policy: TimingPolicy) -> OpOutcome:
    """Run one op: correctness against float64, then timing. Never raises."""
    import torch  # noqa: PLC0415

    tf32_before: bool | None = None
    rel_err: float | None = None
    try:
        tf32_before = bool(torch.backends.cuda.matmul.allow_tf32)
        torch.backends.cuda.matmul.allow_tf32 = op.tf32
        gen = torch.Generator().manual_seed(SEED)
        inputs = op.make_inputs(torch, sizes, device, gen)
        out = op.compute(*inputs)
        _synchronize(torch, device)
        ref = op.reference(*(_as_reference_input(torch, value) for value in inputs))
        rel_err = relative_error(torch, out, ref)
        del out, ref
        samples = time_call(torch, device, lambda: op.compute(*inputs), policy)
    except Exception as err:  # noqa: BLE001 - one broken op must not stop the others
        return OpOutcome(
            op.name,
            op.dtype,
            False,
            op.tolerance,
            rel_err,
            _first_line(err),
            op.unit,
            None,
            None,
            None,
            None,
            0,
            failure_cause(err),
        )
    finally:
        if tf32_before is not None:
            try:
                torch.backends.cuda.matmul.allow_tf32 = tf32_before
            except Exception:  # noqa: BLE001 - restoring must not turn a result into a crash
                pass

    ok = rel_err == rel_err and rel_err <= op.tolerance  # NaN fails
    median_s, best_s = statistics.median(samples), min(samples)
    scale = 1e12 if op.unit == "TFLOP/s" else 1e9
    work = op.work(sizes)
    return OpOutcome(
        name=op.name,
        dtype=op.dtype,
        ok=ok,
        tolerance=op.tolerance,
        rel_err=rel_err,
        error=None,
        unit=op.unit,
        rate_median=work / median_s / scale if median_s > 0 else None,
        rate_best=work / best_s / scale if best_s > 0 else None,
        median_s=median_s,
        best_s=best_s,
        reps=len(samples),
    )


def run_kernel_suite(
    device: str, sizes: Sizes, policy: TimingPolicy, ops: Sequence[KernelOp] = DEFAULT_OPS
) -> list[OpOutcome]:
    return [run_op(op, device, sizes, policy) for op in ops]


def matmul_tflops(outcomes: Sequence[OpOutcome]) -> dict[str, float]:
    """Best measured TFLOP/s per matmul dtype, only for matmuls whose result was right."""
    return {
        MATMUL_KEYS[o.name]: o.rate_best
        for o in outcomes
        if o.name in MATMUL_KEYS and o.ok and o.rate_best is not None
    }


def _op_figure(outcome: OpOutcome) -> dict[str, Any]:
    def rounded(value: float | None, digits: int = 4) -> float | None:
        return None if value is None else float(f"{value:.{digits}g}")

    return {
        "dtype": outcome.dtype,
        "ok": outcome.ok,
        "rel_err": rounded(outcome.rel_err, 3),
        "tolerance": outcome.tolerance,
        "error": outcome.error,
        "unit": outcome.unit,
        "rate_median": rounded(outcome.rate_median),
        "rate_best": rounded(outcome.rate_best),
        "median_ms": rounded(None if outcome.median_s is None else outcome.median_s * 1e3),
        "reps": outcome.reps,
    }


def sizes_for(device: str, quick: bool) -> tuple[Sizes, TimingPolicy]:
    if str(device).startswith("cuda"):
        return (GPU_QUICK_SIZES, GPU_QUICK_TIMING) if quick else (GPU_SIZES, GPU_TIMING)
    return CPU_SIZES, CPU_TIMING


@dataclass(frozen=True)
class Float32Matmul:
    """What an fp32 matmul really computes in this process, and why."""

    default_precision: str | None  # torch.get_float32_matmul_precision() as found ("high": TF32)
    allow_tf32_reads_back: bool | None  # allow_tf32 read after setting it False (None: not readable)
    environment: dict[str, str | None]  # each TF32 variable as set (None: unset)

    @property
    def forced(self) -> bool:
        """TF32 even when IEEE fp32 is asked for: nothing in this process can pin fp32."""
        return bool(self.allow_tf32_reads_back)

    @property
    def tf32_by_default(self) -> bool:
        """TF32 unless the code pins IEEE fp32 (what NGC's TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 does)."""
        return self.default_precision not in (None, "highest")

    def figures(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "forced_tf32": self.forced, "tf32_by_default": self.tf32_by_default}


def float32_matmul_facts(torch: Any, environ: Mapping[str, str]) -> Float32Matmul:
    """The default fp32 matmul precision, and whether IEEE fp32 can be pinned. Never raises.

    Sets allow_tf32 False and reads it back (True: TF32 is forced), then restores the
    precision found, so the probe leaves the process as it was.
    """
    env = {var: environ.get(var) for var in TF32_OVERRIDE_VARS}
    default: str | None = None
    readback: bool | None = None
    try:
        default = str(torch.get_float32_matmul_precision())
        torch.backends.cuda.matmul.allow_tf32 = False
        readback = bool(torch.backends.cuda.matmul.allow_tf32)
        torch.set_float32_matmul_precision(default)
    except Exception:  # noqa: BLE001 - a fact, not a crash
        pass
    return Float32Matmul(default, readback, env)


def _judged_as_tf32(ops: Sequence[KernelOp]) -> tuple[KernelOp, ...]:
    """The fp32 matmul judged by what it computes when TF32 is forced: the TF32 tolerance."""
    return tuple(
        dataclasses.replace(op, tolerance=TF32_TOLERANCE, dtype="float32 (TF32 forced)")
        if op.name == "matmul_fp32" else op
        for op in ops
    )


def _tf32_warning(facts: Float32Matmul) -> str | None:
    """One line on TF32 for the check's reason; None when fp32 is IEEE by default and when asked."""
    setting = ", ".join(f"{var}={value}" for var, value in facts.environment.items() if value is not None)
    fix = ("set TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=0 and leave NVIDIA_TF32_OVERRIDE unset "
           "(docker/Dockerfile does)")
    if facts.forced:
        return (f"fp32 matmul stays TF32 even with allow_tf32=False ({setting or 'no TF32 variable set'}): judged "
                f"against the TF32 tolerance {TF32_TOLERANCE:g}, and native-fp32 is TF32 here; {fix}")
    if facts.tf32_by_default:
        return (f"fp32 matmul defaults to TF32 in this process (precision '{facts.default_precision}'"
                f"{', ' + setting if setting else ''}): code that does not pin IEEE fp32 runs TF32 (the bench's "
                f"native-fp32 pins it); {fix}")
    return None


def check_kernels(ctx: ProbeContext, ops: Sequence[KernelOp] = DEFAULT_OPS,
                  environ: Mapping[str, str] | None = None) -> CheckResult:
    """Run every op on ctx.device; FAIL if any op errors or misses its tolerance.

    Forced TF32 is a configuration, not the GPU: the fp32 matmul is then judged as TF32 and
    the check warns instead of failing (see the module docstring).
    """
    if ctx.device is None:
        return CheckResult(NAME, TITLE, Status.SKIP, "no CUDA device: kernels not run")
    try:
        import torch  # noqa: PLC0415
    except Exception as err:  # noqa: BLE001
        return CheckResult(NAME, TITLE, Status.FAIL, f"torch not importable: {_first_line(err)}")

    fp32 = float32_matmul_facts(torch, os.environ if environ is None else environ)
    tf32_note = _tf32_warning(fp32)
    if fp32.forced:
        ops = _judged_as_tf32(ops)
    sizes, policy = sizes_for(ctx.device, ctx.quick)
    outcomes = run_kernel_suite(ctx.device, sizes, policy, ops)
    tflops = matmul_tflops(outcomes)
    ctx.shared["matmul_tflops"] = dict(tflops)
    figures = {
        "device": ctx.device,
        "sizes": {
            "matmul_n": sizes.matmul_n,
            "matmul_checked_rows": min(sizes.check_rows, sizes.matmul_n),
            "activations": [sizes.rows, sizes.cols],
            "embedding": {"vocab": sizes.vocab, "dim": sizes.dim, "tokens": sizes.tokens},
        },
        "error_metric": "max|out-ref| / max|ref| vs float64 on CPU",
        "timing": {"warmup": policy.warmup, "min_reps": policy.min_reps, "min_time_s": policy.min_time_s},
        "ops": {o.name: _op_figure(o) for o in outcomes},
        "matmul_tflops": {k: float(f"{v:.4g}") for k, v in tflops.items()},
        "float32_matmul": fp32.figures(),
    }

    failed = [o for o in outcomes if not o.ok]
    if failed and not any(o.blames_device for o in failed):
        # Out of memory (other processes hold it), a missing library, a bug: not evidence about the GPU.
        return CheckResult(
            NAME,
            TITLE,
            Status.SKIP,
            f"not run: {len(failed)}/{len(outcomes)} ops could not run on {ctx.device}, for reasons that are not "
            f"the GPU's: " + "; ".join(f"{o.name}: {o.error}" for o in failed)
            + " (free device memory, e.g. stop other models, and re-run the probe)",
            figures=figures,
        )
    if failed:
        parts = [
            f"{o.name}: {o.error}"
            if o.error
            else f"{o.name}: rel err {format_number(o.rel_err, 3)} > tolerance {format_number(o.tolerance)}"
            for o in failed
        ]
        return CheckResult(
            NAME,
            TITLE,
            Status.FAIL,
            f"{len(failed)}/{len(outcomes)} ops failed on {ctx.device}: " + "; ".join(parts)
            + (f" ({tf32_note})" if tf32_note else ""),
            figures=figures,
        )
    rates = ", ".join(f"{k} {format_number(v, 3)}" for k, v in tflops.items())
    summary = f"{len(outcomes)} ops within tolerance on {ctx.device}" + (
        f"; matmul TFLOP/s (best): {rates}" if rates else "")
    if tf32_note:
        return CheckResult(NAME, TITLE, Status.WARN, f"{tf32_note}; {summary}", figures=figures)
    return CheckResult(NAME, TITLE, Status.PASS, summary, figures=figures)
