"""The device-side probe checks: environment, gpu, torch_build, kernels, triton.

Pure and stand-in tests run everywhere (NVML faked, kernels on the CPU with tiny
sizes); tests marked `gpu` need a CUDA device and run with `make test-gpu`.
"""

from __future__ import annotations

import json
import sys

import pytest
from fake_torch import NOT_COMPATIBLE, FakeCudaTorch

from probe.checks import environment, gpu, kernels, torch_build, triton_compile
from probe.checks.torch_build import ArchCoverage, classify_arch_coverage, parse_arch
from probe.output import to_jsonable
from probe.registry import ProbeContext
from probe.required_env import REQUIRED_ENV
from probe.result import Status

NVCC_13 = "Cuda compilation tools, release 13.0, V13.0.88\n"
IMAGE_ENV = {var.name: var.expected for var in REQUIRED_ENV}


def _ctx(device: str | None, quick: bool = False) -> ProbeContext:
    return ProbeContext(model="m", ollama_host="http://x", ollama_model="bge-m3", device=device, quick=quick)


def _serialisable(figures) -> None:
    json.dumps(to_jsonable(figures), allow_nan=False)


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        return False


needs_cuda = pytest.mark.skipif(not _has_cuda(), reason="needs a CUDA device")


# --- environment -------------------------------------------------------------


def _runner(answer):
    calls = []

    def run(argv):
        calls.append(list(argv))
        return answer

    run.calls = calls
    return run


def test_environment_passes_inside_the_image():
    run = _runner((0, NVCC_13))
    result = environment.check_environment(
        _ctx(None), environ=IMAGE_ENV, run_command=run, is_file=lambda p: True, is_dir=lambda p: True
    )
    assert result.status is Status.PASS, result.reason
    assert result.name == "environment"
    assert all(row["ok"] for row in result.figures["vars"])
    assert {row["name"] for row in result.figures["vars"]} == set(IMAGE_ENV)
    assert run.calls == [[IMAGE_ENV["CUDACXX"], "--version"]]  # the CUDACXX nvcc, not PATH's
    assert result.figures["nvcc"]["release"] == "13.0"
    _serialisable(result.figures)


def test_environment_warns_and_names_unset_vars():
    result = environment.check_environment(
        _ctx(None),
        environ={},
        run_command=_runner((0, NVCC_13)),
        is_file=lambda p: True,
        is_dir=lambda p: True,
    )
    assert result.status is Status.WARN
    assert "unset: TORCH_CUDA_ARCH_LIST, CUDACXX, CUDA_HOME, TORCH_ALLOW_TF32_CUBLAS_OVERRIDE" in result.reason
    assert "informational" in result.reason
    assert [row["actual"] for row in result.figures["vars"]] == [None, None, None, None]


def test_environment_warns_on_different_values_missing_files_and_old_nvcc():
    environ = dict(IMAGE_ENV, TORCH_CUDA_ARCH_LIST="12.0", CUDACXX="/usr/local/cuda-12.8/bin/nvcc")
    result = environment.check_environment(
        _ctx(None),
        environ=environ,
        run_command=_runner((0, "Cuda compilation tools, release 12.8, V12.8.93")),
        is_file=lambda p: False,
        is_dir=lambda p: True,
    )
    assert result.status is Status.WARN
    assert "different from expected: TORCH_CUDA_ARCH_LIST, CUDACXX" in result.reason
    assert "CUDACXX /usr/local/cuda-12.8/bin/nvcc does not exist" in result.reason
    assert "nvcc release 12.8 (expected 13.0)" in result.reason
    rows = {row["name"]: row for row in result.figures["vars"]}
    assert rows["TORCH_CUDA_ARCH_LIST"] == {
        "name": "TORCH_CUDA_ARCH_LIST",
        "expected": "12.1a",
        "actual": "12.0",
        "ok": False,
    }
    assert rows["CUDA_HOME"]["ok"] is True


def test_environment_nvcc_missing_or_runner_raising_is_a_warn():
    for run in (_runner(None), _runner((127, ""))):
        result = environment.check_environment(
            _ctx(None), environ=IMAGE_ENV, run_command=run, is_file=lambda p: True, is_dir=lambda p: True
        )
        assert result.status is Status.WARN
        assert result.figures["nvcc"]["ok"] is False

    def boom(argv):
        raise PermissionError("denied")

    result = environment.check_environment(
        _ctx(None), environ=IMAGE_ENV, run_command=boom, is_file=lambda p: True, is_dir=lambda p: True
    )
    assert result.status is Status.WARN
    assert "PermissionError: denied" in result.reason


def test_environment_real_call_never_raises():
    result = environment.check_environment(_ctx(None))
    assert result.status in (Status.PASS, Status.WARN)
    _serialisable(result.figures)


# --- gpu (NVML faked) --------------------------------------------------------


class FakeMemory:
    def __init__(self, total, free):
        self.total, self.free, self.used = total, free, total - free


class FakeNVML:
    """The slice of pynvml the gpu check uses, GB10-like by default."""

    class NVMLError(Exception):
        pass

    class NVMLError_NotSupported(NVMLError):  # noqa: N801 - pynvml's naming
        pass

    class NVMLError_LibraryNotFound(NVMLError):  # noqa: N801
        pass

    def __init__(self, *, name="NVIDIA GB10", cc=(12, 1), memory=None, init_error=None, count=1):
        self.name, self.cc, self.memory, self.init_error, self.count = name, cc, memory, init_error, count
        self.shutdown_calls = 0

    def nvmlInit(self):  # noqa: N802
        if self.init_error is not None:
            raise self.init_error

    def nvmlShutdown(self):  # noqa: N802
        self.shutdown_calls += 1

    def nvmlDeviceGetCount(self):  # noqa: N802
        return self.count

    def nvmlSystemGetDriverVersion(self):  # noqa: N802
        return b"580.95.05"  # older pynvml returned bytes

    def nvmlSystemGetCudaDriverVersion_v2(self):  # noqa: N802
        return 13000

    def nvmlDeviceGetHandleByIndex(self, index):  # noqa: N802
        return ("handle", index)

    def nvmlDeviceGetName(self, handle):  # noqa: N802
        if isinstance(self.name, Exception):
            raise self.name
        return self.name

    def nvmlDeviceGetCudaComputeCapability(self, handle):  # noqa: N802
        return self.cc

    def nvmlDeviceGetMemoryInfo(self, handle):  # noqa: N802
        if self.memory is None:
            raise self.NVMLError_NotSupported("Not Supported")
        return self.memory


GIB = 1024**3


def test_gpu_gb10_unified_memory_is_a_warn_with_meminfo_fallback():
    nvml = FakeNVML()
    result = gpu.check_gpu(
        _ctx("cuda"),
        nvml=nvml,
        torch_memory=lambda: None,
        host_memory=lambda: {"total_bytes": 128 * GIB, "available_bytes": 100 * GIB},
    )
    assert result.status is Status.WARN
    assert "nvmlDeviceGetMemoryInfo(0)" in result.reason and "/proc/meminfo" in result.reason
    assert "unified memory" in result.reason
    figures = result.figures
    assert figures["devices"][0]["name"] == "NVIDIA GB10"
    assert figures["devices"][0]["compute_capability"] == "12.1"
    assert figures["driver_version"] == "580.95.05"
    assert figures["cuda_driver_version"] == "13.0"
    assert figures["memory"] == {
        "total_bytes": 128 * GIB,
        "total_source": "/proc/meminfo",
        "free_bytes": 100 * GIB,
        "free_source": "/proc/meminfo MemAvailable",
    }
    assert figures["memory_fallback"]["torch.cuda.mem_get_info"] is None
    assert nvml.shutdown_calls == 1
    _serialisable(figures)


def test_gpu_memory_fallback_prefers_torch_when_it_answers():
    result = gpu.check_gpu(
        _ctx("cuda"),
        nvml=FakeNVML(),
        torch_memory=lambda: {"free_bytes": 90 * GIB, "total_bytes": 119 * GIB},
        host_memory=lambda: {"total_bytes": 128 * GIB, "available_bytes": 100 * GIB},
    )
    assert result.status is Status.WARN
    assert result.figures["memory"]["total_source"] == "torch.cuda.mem_get_info"
    assert result.figures["memory"]["total_bytes"] == 119 * GIB
    assert result.figures["memory_fallback"]["/proc/meminfo"]["total_bytes"] == 128 * GIB


def test_gpu_discrete_card_passes_with_nvml_memory():
    nvml = FakeNVML(name="NVIDIA H100 80GB HBM3", cc=(9, 0), memory=FakeMemory(80 * GIB, 79 * GIB))
    result = gpu.check_gpu(_ctx("cuda"), nvml=nvml, torch_memory=lambda: pytest.fail("no fallback needed"))
    assert result.status is Status.PASS, result.reason
    assert result.figures["memory"]["total_source"] == "nvml"
    assert result.figures["memory"]["total_bytes"] == 80 * GIB
    assert result.figures["memory_fallback"] == {}
    assert "compute capability 9.0" in result.reason


def test_gpu_through_sys_modules_pynvml(monkeypatch):
    nvml = FakeNVML(init_error=FakeNVML.NVMLError_LibraryNotFound("NVML Shared Library Not Found"))
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    result = gpu.check_gpu(_ctx(None))
    assert result.status is Status.SKIP
    assert "NVML library not found" in result.reason


def test_gpu_no_device_and_other_init_errors_skip():
    assert gpu.check_gpu(_ctx(None), nvml=FakeNVML(count=0)).status is Status.SKIP
    result = gpu.check_gpu(_ctx(None), nvml=FakeNVML(init_error=FakeNVML.NVMLError("Driver Not Loaded")))
    assert result.status is Status.SKIP
    assert "Driver Not Loaded" in result.reason


def test_gpu_unexpected_error_in_a_query_is_a_warn_not_a_crash():
    nvml = FakeNVML(name=RuntimeError("wrapper bug"), memory=FakeMemory(10, 5))
    result = gpu.check_gpu(_ctx("cuda"), nvml=nvml)
    assert result.status is Status.WARN
    assert "RuntimeError: wrapper bug" in result.reason
    assert nvml.shutdown_calls == 1


def test_gpu_real_call_here():
    result = gpu.check_gpu(_ctx(None))
    try:
        import pynvml

        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
    except Exception:  # noqa: BLE001 - no driver: the real call must skip
        assert result.status is Status.SKIP, result.reason
    else:
        assert result.status in (Status.PASS, Status.WARN)
    _serialisable(result.figures)


def test_meminfo_memory_reads_this_machine():
    got = gpu.meminfo_memory()
    if got is None:
        pytest.skip("no /proc/meminfo here")
    assert got["total_bytes"] > 0
    assert 0 < got["available_bytes"] <= got["total_bytes"]


# --- torch_build ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("arch_list", "capability", "coverage", "arch"),
    [
        (["sm_80", "sm_90", "sm_100", "sm_120"], (12, 1), ArchCoverage.SAME_MAJOR_CUBIN, "sm_120"),
        (["sm_121"], (12, 1), ArchCoverage.EXACT_CUBIN, "sm_121"),
        (["sm_120", "sm_121"], (12, 1), ArchCoverage.EXACT_CUBIN, "sm_121"),
        (["sm_121a"], (12, 1), ArchCoverage.EXACT_CUBIN, "sm_121a"),
        (["sm_90", "compute_90"], (12, 1), ArchCoverage.PTX_JIT, "compute_90"),
        (["sm_80"], (12, 1), ArchCoverage.NOT_COVERED, None),
        # arch-specific "a" variants are not forward compatible, not even within the major
        (["sm_90a", "sm_100a", "sm_120a"], (12, 1), ArchCoverage.NOT_COVERED, None),
        (["sm_90a"], (9, 0), ArchCoverage.EXACT_CUBIN, "sm_90a"),
        (["compute_90a"], (12, 1), ArchCoverage.NOT_COVERED, None),
        # family "f" variants run within the major version
        (["sm_120f"], (12, 1), ArchCoverage.SAME_MAJOR_CUBIN, "sm_120f"),
        (["sm_100f"], (12, 1), ArchCoverage.NOT_COVERED, None),
        # a cubin for a higher minor does not run on a lower one; PTX from the future neither
        (["sm_122"], (12, 1), ArchCoverage.NOT_COVERED, None),
        (["sm_86"], (8, 0), ArchCoverage.NOT_COVERED, None),
        (["compute_122"], (12, 1), ArchCoverage.NOT_COVERED, None),
        # a cubin beats PTX; the highest usable entry wins
        (["sm_120", "compute_120"], (12, 1), ArchCoverage.SAME_MAJOR_CUBIN, "sm_120"),
        (["compute_80", "compute_90", "compute_100"], (12, 1), ArchCoverage.PTX_JIT, "compute_100"),
        (["sm_80", "sm_86", "sm_89"], (8, 9), ArchCoverage.EXACT_CUBIN, "sm_89"),
        (["sm_80", "sm_86"], (8, 9), ArchCoverage.SAME_MAJOR_CUBIN, "sm_86"),
        ([], (12, 1), ArchCoverage.NOT_COVERED, None),
        (["garbage", "sm_", "sm_1"], (12, 1), ArchCoverage.NOT_COVERED, None),
    ],
)
def test_classify_arch_coverage(arch_list, capability, coverage, arch):
    assert classify_arch_coverage(arch_list, capability) == (coverage, arch)


def test_parse_arch():
    assert parse_arch("sm_121a") == ("sm", 12, 1, "a")
    assert parse_arch("compute_90") == ("compute", 9, 0, "")
    assert parse_arch("sm_100f") == ("sm", 10, 0, "f")
    assert parse_arch("gfx90a") is None


def test_torch_build_without_cuda_skips_but_reports_the_build():
    import torch

    result = torch_build.check_torch_build(_ctx(None))
    assert result.status is Status.SKIP
    assert result.reason.startswith("no CUDA device: target not probed")
    assert result.figures["torch_version"] == torch.__version__
    assert result.figures["cpu_build"] is (torch.version.cuda is None)
    if torch.version.cuda is None:
        assert "is a CPU build" in result.reason
    _serialisable(result.figures)


def test_torch_build_with_broken_torch_fails(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    result = torch_build.check_torch_build(_ctx("cuda"))
    assert result.status is Status.FAIL
    assert "torch not importable" in result.reason


@pytest.mark.parametrize(
    ("arch_list", "status", "coverage"),
    [
        (["sm_80", "sm_90", "sm_100", "sm_120"], Status.PASS, "same-major cubin"),
        (["sm_121"], Status.PASS, "exact cubin"),
        (["sm_80", "sm_90", "compute_90"], Status.WARN, "PTX JIT only"),
        # not covered on paper, yet the kernel ran: unexplained, the kernels check decides
        (["sm_80", "sm_90"], Status.WARN, "not covered"),
    ],
)
def test_torch_build_device_path_with_a_fake_gb10(monkeypatch, arch_list, status, coverage):
    fake = FakeCudaTorch(arch_list)
    monkeypatch.setitem(sys.modules, "torch", fake)
    result = torch_build.check_torch_build(_ctx("cuda"))
    assert result.status is status, result.reason
    assert result.figures["coverage"] == coverage
    assert result.figures["device_sm"] == "sm_121"
    assert result.figures["kernel_smoke_ok"] is True
    assert result.figures["cpu_build"] is False
    _serialisable(result.figures)


def test_torch_build_not_covered_records_torchs_warning_and_fails(monkeypatch):
    error = "CUDA error: no kernel image is available for execution on the device"
    fake = FakeCudaTorch(["sm_80", "sm_90"], warning=NOT_COMPATIBLE, smoke_error=error)
    monkeypatch.setitem(sys.modules, "torch", fake)
    result = torch_build.check_torch_build(_ctx("cuda"))
    assert result.status is Status.FAIL
    assert result.figures["coverage"] == "not covered"
    assert result.figures["torch_warns_incompatible"] is True
    assert "sm_121 is not compatible" in result.figures["torch_warnings"][0]
    assert "no kernel image is available" in result.reason


def test_torch_build_failing_kernel_is_a_fail_even_when_the_arch_list_looks_fine(monkeypatch):
    error = "CUDA error: no kernel image is available for execution on the device\nCUDA kernel errors ..."
    monkeypatch.setitem(sys.modules, "torch", FakeCudaTorch(["sm_120"], smoke_error=error))
    result = torch_build.check_torch_build(_ctx("cuda"))
    assert result.status is Status.FAIL
    assert "RuntimeError: CUDA error: no kernel image is available" in result.reason
    assert "CUDA kernel errors" not in result.reason
    assert result.figures["kernel_smoke_ok"] is False


# --- kernels (on the CPU, tiny sizes) -------------------------------------------


def test_kernels_skip_without_a_device():
    ctx = _ctx(None)
    result = kernels.check_kernels(ctx)
    assert result.status is Status.SKIP
    assert "matmul_tflops" not in ctx.shared


def test_kernels_pass_on_cpu_and_share_matmul_tflops():
    import torch

    ctx = _ctx("cpu")
    tf32_before = torch.backends.cuda.matmul.allow_tf32
    result = kernels.check_kernels(ctx)
    assert result.status is Status.PASS, result.reason
    ops = result.figures["ops"]
    assert set(ops) == {
        "matmul_fp32",
        "matmul_tf32",
        "matmul_fp16",
        "matmul_bf16",
        "layer_norm",
        "softmax",
        "gelu",
        "embedding",
    }
    for name, op in ops.items():
        assert op["ok"] and op["error"] is None, name
        assert op["rel_err"] <= op["tolerance"], name
        assert op["reps"] == kernels.CPU_TIMING.min_reps
        assert op["rate_median"] > 0
    assert ops["embedding"]["rel_err"] == 0.0
    assert set(ctx.shared["matmul_tflops"]) == {"fp32", "tf32", "fp16", "bf16"}
    assert all(v > 0 for v in ctx.shared["matmul_tflops"].values())
    assert result.figures["matmul_tflops"].keys() == ctx.shared["matmul_tflops"].keys()
    assert torch.backends.cuda.matmul.allow_tf32 is tf32_before  # restored
    _serialisable(result.figures)


def _replace_op(name: str, **changes):
    import dataclasses

    return tuple(dataclasses.replace(op, **changes) if op.name == name else op for op in kernels.DEFAULT_OPS)


def test_kernels_wrong_result_fails_and_is_not_shared():
    broken = _replace_op("matmul_fp32", compute=lambda a, b, rows: a @ b * (1 + 1e-3))
    ctx = _ctx("cpu")
    result = kernels.check_kernels(ctx, ops=broken)
    assert result.status is Status.FAIL
    assert result.reason.startswith("1/8 ops failed on cpu: matmul_fp32: rel err")
    assert "> tolerance 0.00001" in result.reason  # people read 0.00001, not 1e-05
    assert result.figures["ops"]["matmul_fp32"]["ok"] is False
    assert result.figures["ops"]["matmul_fp32"]["rel_err"] == pytest.approx(1e-3, rel=0.01)
    assert result.figures["ops"]["matmul_tf32"]["ok"] is True
    assert "fp32" not in ctx.shared["matmul_tflops"]  # a wrong answer's speed means nothing
    assert "bf16" in ctx.shared["matmul_tflops"]


def test_kernels_an_erroring_op_does_not_stop_the_others():
    def cuda_error(x):
        raise RuntimeError(
            "CUDA error: no kernel image is available for execution on the device\nmore detail"
        )

    ops = _replace_op("softmax", compute=cuda_error)
    result = kernels.check_kernels(_ctx("cpu"), ops=ops)
    assert result.status is Status.FAIL
    softmax = result.figures["ops"]["softmax"]
    assert (
        softmax["error"]
        == "RuntimeError: CUDA error: no kernel image is available for execution on the device"
    )
    assert softmax["rate_median"] is None and softmax["reps"] == 0
    assert "softmax: RuntimeError: CUDA error" in result.reason
    assert result.figures["ops"]["gelu"]["ok"] and result.figures["ops"]["embedding"]["ok"]


def test_kernels_nan_output_fails():
    ops = _replace_op("gelu", compute=lambda x: x * float("nan"))
    result = kernels.check_kernels(_ctx("cpu"), ops=ops)
    assert result.status is Status.FAIL
    assert result.figures["ops"]["gelu"]["ok"] is False
    _serialisable(result.figures)


def test_kernels_toggle_tf32_per_op_and_restore():
    import dataclasses

    import torch

    seen = {}

    def recording(name):
        def compute(a, b, rows):
            seen.setdefault(name, torch.backends.cuda.matmul.allow_tf32)
            return a @ b

        return compute

    ops = tuple(
        dataclasses.replace(op, compute=recording(op.name)) if op.name.startswith("matmul") else op
        for op in kernels.DEFAULT_OPS
    )
    before = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True  # whatever it was before must come back
    try:
        outcomes = kernels.run_kernel_suite("cpu", kernels.CPU_SIZES, kernels.CPU_TIMING, ops)
        after = torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before
    assert all(o.ok for o in outcomes)
    assert seen == {"matmul_fp32": False, "matmul_tf32": True, "matmul_fp16": False, "matmul_bf16": False}
    assert after is True


def test_relative_error_and_timing_helpers():
    import torch

    ref = torch.tensor([[2.0, -4.0], [1.0, 0.0]], dtype=torch.float64)
    out = torch.tensor([[2.0, -4.0], [1.5, 0.0]], dtype=torch.float32)
    assert kernels.relative_error(torch, out, ref) == pytest.approx(0.5 / 4.0)
    assert kernels.relative_error(torch, out, ref[:1]) == 0.0  # only the reference's rows count

    calls = []
    policy = kernels.TimingPolicy(warmup=2, min_reps=4, max_reps=4, min_time_s=0.0)
    samples = kernels.time_call(torch, "cpu", lambda: calls.append(1), policy)
    assert len(samples) == 4 and len(calls) == 6 and all(s >= 0 for s in samples)


def test_kernel_sizes_depend_on_device_and_quick():
    assert kernels.sizes_for("cuda", False) == (kernels.GPU_SIZES, kernels.GPU_TIMING)
    assert kernels.sizes_for("cuda", True) == (kernels.GPU_QUICK_SIZES, kernels.GPU_QUICK_TIMING)
    assert kernels.sizes_for("cpu", False)[0].matmul_n < kernels.GPU_QUICK_SIZES.matmul_n


# --- triton / torch.compile --------------------------------------------------------

Smoke = triton_compile.SmokeOutcome


def test_triton_skips_without_a_device():
    result = triton_compile.check_triton(_ctx(None))
    assert result.status is Status.SKIP
    assert "no CUDA device" in result.reason


def test_triton_not_importable_skips():
    result = triton_compile.check_triton(
        _ctx("cuda"),
        triton_smoke=lambda device: Smoke("unavailable", "triton not importable (ModuleNotFoundError)"),
        compile_smoke=lambda device: pytest.fail("torch.compile needs triton; must not run"),
    )
    assert result.status is Status.SKIP
    assert result.reason.startswith("triton not importable")
    assert result.figures["torch_compile"]["state"] == "unavailable"


def test_triton_vector_add_reports_unavailable_when_triton_is_missing():
    try:
        import triton  # noqa: F401
    except ImportError:
        assert triton_compile.triton_vector_add("cpu").state == "unavailable"
    else:
        pytest.skip("triton is installed here")


def test_triton_compile_error_is_a_warn_with_the_first_line():
    ptxas = "ptxas fatal   : Value 'sm_121a' is not defined for option 'gpu-name'"
    result = triton_compile.check_triton(
        _ctx("cuda"),
        triton_smoke=lambda device: Smoke("error", f"RuntimeError: {ptxas}"),
        compile_smoke=lambda device: Smoke("ok", "backend inductor", 1.0),
    )
    assert result.status is Status.WARN
    assert ptxas in result.reason
    assert "not needed by sentence-transformers" in result.reason
    assert result.figures["torch_compile"]["state"] == "ok"


def test_triton_wrong_result_or_raising_smoke_is_a_warn():
    def raises(device):
        raise ValueError("unexpected\nsecond line")

    result = triton_compile.check_triton(
        _ctx("cuda"),
        triton_smoke=lambda device: Smoke("mismatch", "max abs error 1", 0.5),
        compile_smoke=raises,
    )
    assert result.status is Status.WARN
    assert "Triton vector add mismatch" in result.reason
    assert "torch.compile error: ValueError: unexpected" in result.reason
    assert "second line" not in result.reason
    _serialisable(result.figures)


def test_triton_both_ok_passes():
    result = triton_compile.check_triton(
        _ctx("cuda"),
        triton_smoke=lambda device: Smoke("ok", "triton 3.5.0", 2.0),
        compile_smoke=lambda device: Smoke("ok", "backend inductor", 5.0),
    )
    assert result.status is Status.PASS, result.reason
    assert result.figures["triton"] == {"state": "ok", "detail": "triton 3.5.0", "first_call_s": 2.0}


def test_torch_compile_smoke_runs_on_cpu_with_the_eager_backend():
    # inductor on the CPU would spend ~15 s compiling C++; "eager" still goes through dynamo.
    outcome = triton_compile.torch_compile_smoke("cpu", backend="eager")
    assert outcome.state == "ok", outcome.detail


# --- on a real CUDA device (make test-gpu) ------------------------------------------


@pytest.mark.gpu
@needs_cuda
def test_gpu_torch_build_on_device():
    result = torch_build.check_torch_build(_ctx("cuda"))
    assert result.status in (Status.PASS, Status.WARN, Status.FAIL)
    assert result.figures["device_sm"].startswith("sm_")
    _serialisable(result.figures)


@pytest.mark.gpu
@needs_cuda
def test_gpu_kernels_on_device_quick():
    ctx = _ctx("cuda", quick=True)
    result = kernels.check_kernels(ctx)
    assert result.status is Status.PASS, result.reason
    assert set(ctx.shared["matmul_tflops"]) == {"fp32", "tf32", "fp16", "bf16"}


@pytest.mark.gpu
@needs_cuda
def test_gpu_nvml_on_device():
    result = gpu.check_gpu(_ctx("cuda"))
    assert result.status in (Status.PASS, Status.WARN)
    assert result.figures["memory"]["total_bytes"]


@pytest.mark.gpu
@needs_cuda
def test_gpu_triton_on_device():
    result = triton_compile.check_triton(_ctx("cuda"))
    assert result.status in (Status.PASS, Status.WARN, Status.SKIP)
    _serialisable(result.figures)


# --- TF32 (NGC images set TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1) -----------------------------


def _tf32_rounded(t):
    """float32 -> the nearest value with TF32's 10-bit mantissa (what a TF32 tensor core reads)."""
    import torch

    bits = t.contiguous().view(torch.int32)
    return ((bits + 0x1000) & ~0x1FFF).view(torch.float32)


def _tf32_matmul_ops():
    """A fake device whose fp32 matmul computes in TF32, as cuBLAS does when TF32 is on."""
    return _replace_op("matmul_fp32", compute=lambda a, b, rows: _tf32_rounded(a) @ _tf32_rounded(b))


class ForcingTorch:
    """torch's fp32-matmul switches as an ATen that lets TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 win
    over allow_tf32=False (torch before 2.5): setting the flag False does not stick."""

    def __init__(self) -> None:
        self.precision = "high"
        torch_like = self

        class Matmul:
            @property
            def allow_tf32(self) -> bool:
                return True  # the override wins

            @allow_tf32.setter
            def allow_tf32(self, value: bool) -> None:
                torch_like.precision = "high" if value else "highest"

        self.backends = type("Backends", (), {"cuda": type("Cuda", (), {"matmul": Matmul()})()})()

    def get_float32_matmul_precision(self) -> str:
        return self.precision

    def set_float32_matmul_precision(self, precision: str) -> None:
        self.precision = precision


def _with_torch(monkeypatch, fake) -> None:
    real = kernels.float32_matmul_facts
    monkeypatch.setattr(kernels, "float32_matmul_facts", lambda torch, environ: real(fake, environ))


def test_kernels_tf32_rounded_fp32_matmul_fails_when_nothing_forces_tf32():
    result = kernels.check_kernels(_ctx("cpu"), ops=_tf32_matmul_ops(), environ={})
    assert result.status is Status.FAIL  # fp32 that is not fp32 is wrong when fp32 was asked for
    op = result.figures["ops"]["matmul_fp32"]
    assert op["ok"] is False and op["tolerance"] == 1e-5
    assert 1e-5 < op["rel_err"] < kernels.TF32_TOLERANCE
    assert result.figures["float32_matmul"]["forced_tf32"] is False


def test_kernels_forced_tf32_warns_names_the_variable_and_judges_as_tf32(monkeypatch):
    _with_torch(monkeypatch, ForcingTorch())
    env = {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"}
    result = kernels.check_kernels(_ctx("cpu"), ops=_tf32_matmul_ops(), environ=env)
    assert result.status is Status.WARN, result.reason  # a configuration, never "incompatible"
    assert "stays TF32 even with allow_tf32=False (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1)" in result.reason
    assert "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=0" in result.reason  # the fix
    op = result.figures["ops"]["matmul_fp32"]
    assert op["ok"] is True and op["tolerance"] == kernels.TF32_TOLERANCE
    assert op["dtype"] == "float32 (TF32 forced)"
    facts = result.figures["float32_matmul"]
    assert facts["forced_tf32"] is True and facts["allow_tf32_reads_back"] is True
    assert facts["environment"] == {"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1", "NVIDIA_TF32_OVERRIDE": None}
    _serialisable(result.figures)


def test_kernels_forced_tf32_still_fails_an_op_that_is_wrong_even_for_tf32(monkeypatch):
    _with_torch(monkeypatch, ForcingTorch())
    ops = _replace_op("matmul_fp32", compute=lambda a, b, rows: a @ b * 1.05)
    result = kernels.check_kernels(_ctx("cpu"), ops=ops, environ={"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"})
    assert result.status is Status.FAIL
    assert "TF32" in result.reason


def test_kernels_tf32_by_default_warns_but_judges_fp32_as_fp32_and_restores_the_default():
    """torch >= 2.5 under the NGC variable: TF32 is only the default; allow_tf32=False pins IEEE."""
    import torch

    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        result = kernels.check_kernels(_ctx("cpu"), environ={"TORCH_ALLOW_TF32_CUBLAS_OVERRIDE": "1"})
        after = torch.get_float32_matmul_precision()
    finally:
        torch.set_float32_matmul_precision(before)
    assert result.status is Status.WARN and "defaults to TF32 in this process" in result.reason
    assert "native-fp32 pins it" in result.reason
    assert result.figures["ops"]["matmul_fp32"]["tolerance"] == 1e-5  # fp32 was pinned, so judged as fp32
    facts = result.figures["float32_matmul"]
    assert facts["forced_tf32"] is False and facts["tf32_by_default"] is True
    assert facts["default_precision"] == "high" and after == "high"


def test_kernels_nvidia_tf32_override_alone_neither_forces_nor_warns():
    result = kernels.check_kernels(_ctx("cpu"), environ={"NVIDIA_TF32_OVERRIDE": "1"})
    assert result.status is Status.PASS, result.reason
    assert result.figures["float32_matmul"]["environment"]["NVIDIA_TF32_OVERRIDE"] == "1"
