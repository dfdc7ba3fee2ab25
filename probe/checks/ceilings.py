"""Check: the roofline's ceilings on the device the bench runs on: memory bandwidth (and the matmul peak on a CPU).

Memory bandwidth is measured two ways, each on buffers far larger than any last-level cache:

  copy   dst.copy_(src)   GB/s = 2 · buffer bytes / time   (every byte read once and written once)
  read   src.sum()        GB/s = buffer bytes / time       (a streaming read; the result is one number)

Each timing: warm-up, device synchronised before and after every call, repeated to a minimum
count and duration (probe.checks.kernels.time_call); best, median and worst are reported with
the count. Each result is checked once (the copy must equal its source exactly; the sum must
match a float64 sum of the same buffer within 1e-4), so a fast wrong kernel never counts.
The roofline (bench/analyse/roofline.py) uses the higher of the two best rates as the device's
bandwidth: a floor on time must not assume less bandwidth than the device delivered.

Where: on a CUDA device the buffers are torch CUDA tensors (cudaMalloc through torch's caching
allocator). On an integrated GPU such as GB10 that memory is the unified LPDDR5x the CPU uses
too; the figures say which memory was measured. Without a CUDA device the same functions
measure the CPU's main memory with torch CPU tensors, and, because the kernels check runs on
a GPU only, the CPU's matmul peak too (the kernels check's own fp32/bf16 matmul ops at
n = 1024, checked against float64 the same way), so a CPU run has both ceilings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from probe.checks import kernels
from probe.registry import ProbeContext
from probe.result import CheckResult, Status

NAME = "ceilings"
TITLE = "Roofline ceilings: memory bandwidth (and matmul on a CPU)"
SEED = 4321
READ_TOLERANCE = 1e-4  # float32 sum vs float64 sum of the same values, relative
REFERENCE_CHUNK = 1 << 24  # elements summed in float64 at a time (keeps the reference's memory small)


@dataclass(frozen=True)
class BandwidthPlan:
    buffer_bytes: int  # each buffer; copy needs two
    timing: kernels.TimingPolicy


GPU_PLAN = BandwidthPlan(1 << 30, kernels.TimingPolicy(warmup=3, min_reps=10, max_reps=200, min_time_s=0.25))
GPU_QUICK_PLAN = BandwidthPlan(256 << 20, kernels.TimingPolicy(warmup=2, min_reps=5, max_reps=50, min_time_s=0.05))
# 256 MiB is 8x the 32 MiB L3 of the CI machine's EPYC; larger server L3s stay well below it.
CPU_PLAN = BandwidthPlan(256 << 20, kernels.TimingPolicy(warmup=1, min_reps=10, max_reps=10, min_time_s=0.0))
CPU_QUICK_PLAN = BandwidthPlan(128 << 20, kernels.TimingPolicy(warmup=1, min_reps=5, max_reps=5, min_time_s=0.0))

# The CPU matmul ceiling: the dtypes a CPU bench run uses (torch's CPU fp16 matmul is a slow
# fallback, about 1 GFLOP/s here, and no profile runs fp16 on a CPU).
CPU_MATMUL_OPS: tuple[str, ...] = ("matmul_fp32", "matmul_bf16")
CPU_MATMUL_SIZES = dataclasses.replace(kernels.CPU_SIZES, matmul_n=1024, check_rows=64)
CPU_MATMUL_TIMING = kernels.TimingPolicy(warmup=1, min_reps=5, max_reps=5, min_time_s=0.0)


@dataclass(frozen=True)
class BandwidthOutcome:
    name: str  # "copy" | "read"
    ok: bool
    error: str | None  # why it does not count: an exception's first line or a wrong result
    bytes_per_call: int  # bytes moved by one call (copy: read + written)
    gbs_best: float | None
    gbs_median: float | None
    gbs_worst: float | None
    reps: int

    def figure(self) -> dict[str, Any]:
        def rounded(value: float | None) -> float | None:
            return None if value is None else float(f"{value:.4g}")

        return {"ok": self.ok, "error": self.error, "bytes_per_call": self.bytes_per_call,
                "gbs_best": rounded(self.gbs_best), "gbs_median": rounded(self.gbs_median),
                "gbs_worst": rounded(self.gbs_worst), "reps": self.reps}


def plan_for(device: str, quick: bool) -> BandwidthPlan:
    if str(device).startswith("cuda"):
        return GPU_QUICK_PLAN if quick else GPU_PLAN
    return CPU_QUICK_PLAN if quick else CPU_PLAN


def memory_measured(torch: Any, device: str) -> str:
    """Which memory the buffers lived in, in words (never raises)."""
    if not str(device).startswith("cuda"):
        return f"CPU main memory (torch CPU tensors, {torch.get_num_threads()} threads)"
    try:
        props = torch.cuda.get_device_properties(device)
        name, integrated = props.name, bool(getattr(props, "is_integrated", False))
    except Exception:  # noqa: BLE001 - a label must not fail the measurement
        return "CUDA device memory (cudaMalloc through torch)"
    if integrated:
        return (f"{name}: integrated GPU, so the memory measured is the system memory it shares with "
                "the CPU (on GB10 the unified LPDDR5x), allocated with cudaMalloc through torch")
    return f"{name}: the GPU's own device memory, allocated with cudaMalloc through torch"


def _rates(bytes_per_call: int, samples: list[float]) -> tuple[float | None, float | None, float | None]:
    import statistics

    def rate(seconds: float) -> float | None:
        return bytes_per_call / seconds / 1e9 if seconds > 0 else None

    return rate(min(samples)), rate(statistics.median(samples)), rate(max(samples))


def _float64_sum(torch: Any, x: Any) -> float:
    return sum(float(x[i:i + REFERENCE_CHUNK].double().sum()) for i in range(0, x.numel(), REFERENCE_CHUNK))


def measure_one(torch: Any, device: str, name: str, call: Callable[[], Any], verify: Callable[[Any], str | None],
                bytes_per_call: int, policy: kernels.TimingPolicy) -> BandwidthOutcome:
    """Check one call's result, then time it. Never raises."""
    try:
        problem = verify(call())
        if problem is not None:
            return BandwidthOutcome(name, False, problem, bytes_per_call, None, None, None, 0)
        samples = kernels.time_call(torch, device, call, policy)
    except Exception as err:  # noqa: BLE001 - e.g. out of memory: reported, the other measurement still runs
        return BandwidthOutcome(name, False, kernels._first_line(err), bytes_per_call, None, None, None, 0)
    best, median, worst = _rates(bytes_per_call, samples)
    return BandwidthOutcome(name, True, None, bytes_per_call, best, median, worst, len(samples))


def measure_bandwidth(device: str, plan: BandwidthPlan) -> tuple[BandwidthOutcome, BandwidthOutcome]:
    """(copy, read) on `device`; buffers are freed before returning. Never raises."""
    import torch  # noqa: PLC0415

    elements = plan.buffer_bytes // 4  # float32
    nbytes = elements * 4
    try:
        gen = torch.Generator(device=device).manual_seed(SEED)
        src = torch.rand(elements, generator=gen, device=device)
        dst = torch.empty_like(src)
    except Exception as err:  # noqa: BLE001 - no memory for the buffers: both measurements fail alike
        why = f"buffers of {nbytes} bytes not allocated: {kernels._first_line(err)}"
        return (BandwidthOutcome("copy", False, why, 2 * nbytes, None, None, None, 0),
                BandwidthOutcome("read", False, why, nbytes, None, None, None, 0))

    def copy_equal(_: Any) -> str | None:
        return None if torch.equal(dst, src) else "the copy differs from its source"

    expected = _float64_sum(torch, src)

    def sum_close(total: Any) -> str | None:
        got = float(total)
        error = abs(got - expected) / abs(expected)
        return None if error <= READ_TOLERANCE else f"sum {got:.9g} vs float64 {expected:.9g} (rel err {error:.2g})"

    try:
        copy = measure_one(torch, device, "copy", lambda: dst.copy_(src), copy_equal, 2 * nbytes, plan.timing)
        read = measure_one(torch, device, "read", src.sum, sum_close, nbytes, plan.timing)
    finally:
        del src, dst
        if str(device).startswith("cuda"):
            torch.cuda.empty_cache()
    return copy, read


def bandwidth_basis(copy: BandwidthOutcome, read: BandwidthOutcome) -> tuple[float | None, str | None]:
    """(GB/s, which measurement) the roofline uses: the higher best rate of the two that were right."""
    usable = [o for o in (copy, read) if o.ok and o.gbs_best is not None]
    if not usable:
        return None, None
    top = max(usable, key=lambda o: o.gbs_best)
    return top.gbs_best, top.name


def cpu_matmul_peaks(ops: tuple[kernels.KernelOp, ...] | None = None) -> list[kernels.OpOutcome]:
    """The CPU's matmul ceiling with the kernels check's own ops (checked against float64)."""
    chosen = ops if ops is not None else tuple(op for op in kernels.DEFAULT_OPS if op.name in CPU_MATMUL_OPS)
    return kernels.run_kernel_suite("cpu", CPU_MATMUL_SIZES, CPU_MATMUL_TIMING, chosen)


def _describe(outcome: BandwidthOutcome) -> str:
    if not outcome.ok:
        return f"{outcome.name}: {outcome.error}"
    return (f"{outcome.name} {outcome.gbs_best:.4g} GB/s best (median {outcome.gbs_median:.4g}, "
            f"worst {outcome.gbs_worst:.4g}, n={outcome.reps})")


def check_ceilings(
    ctx: ProbeContext,
    plan: BandwidthPlan | None = None,
    bandwidth: Callable[[str, BandwidthPlan], tuple[BandwidthOutcome, BandwidthOutcome]] = measure_bandwidth,
    matmul: Callable[[], list[kernels.OpOutcome]] = cpu_matmul_peaks,
) -> CheckResult:
    """Bandwidth on ctx.device (the CPU without one); on the CPU the matmul peak too. WARN when nothing counts."""
    try:
        import torch  # noqa: PLC0415
    except Exception as err:  # noqa: BLE001
        return CheckResult(NAME, TITLE, Status.WARN, f"torch not importable: {kernels._first_line(err)}")
    device = ctx.device or "cpu"
    plan = plan or plan_for(device, ctx.quick)
    copy, read = bandwidth(device, plan)
    basis, basis_name = bandwidth_basis(copy, read)
    figures: dict[str, Any] = {
        "device": "cuda" if device.startswith("cuda") else "cpu",
        "target_probed": ctx.device is not None,
        "memory": memory_measured(torch, device),
        "buffer_bytes": plan.buffer_bytes,
        "timing": {"warmup": plan.timing.warmup, "min_reps": plan.timing.min_reps,
                   "min_time_s": plan.timing.min_time_s},
        "bandwidth": {"copy": copy.figure(), "read": read.figure()},
        "bandwidth_gbs": None if basis is None else float(f"{basis:.4g}"),
        "bandwidth_basis": basis_name,
    }
    parts = [_describe(copy), _describe(read)]
    if not device.startswith("cuda"):
        outcomes = matmul()
        peaks = kernels.matmul_tflops(outcomes)
        figures["matmul_tflops"] = {k: float(f"{v:.4g}") for k, v in peaks.items()}
        figures["matmul"] = {o.name: kernels._op_figure(o) for o in outcomes}
        figures["matmul_n"] = CPU_MATMUL_SIZES.matmul_n
        wrong = [o.name for o in outcomes if not o.ok]
        parts.append("matmul TFLOP/s (best): " + (", ".join(f"{k} {v:.3g}" for k, v in peaks.items()) or "none")
                     + (f"; not counted: {', '.join(wrong)}" if wrong else ""))
    prefix = "" if ctx.device is not None else "on CPU (target not probed): "
    where = f" in {figures['memory']}"
    if basis is None:
        return CheckResult(NAME, TITLE, Status.WARN, prefix + "no bandwidth measured" + where + ": "
                           + "; ".join(parts), figures=figures)
    return CheckResult(NAME, TITLE, Status.PASS, prefix + f"bandwidth {basis:.4g} GB/s ({basis_name})" + where
                       + ": " + "; ".join(parts), figures=figures)
