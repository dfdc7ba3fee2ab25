"""Whose fault is a failed GPU call (probe/failures.py), and what each check does with it: only
an error that blames the GPU makes a check FAIL ("incompatible"); memory other processes hold
(a Spark shares its 128 GB with the team's LLM) or a crashed check makes it "not run"."""

from __future__ import annotations

import sys

import pytest
from fake_torch import FakeCudaTorch
from test_probe_attention import TINY, ctx
from test_probe_checks_device import _ctx, _replace_op

from probe.checks import kernels, torch_build
from probe.checks.attention import NOT_RUN, check_attention
from probe.failures import failure_cause
from probe.overall import Overall, derive_overall
from probe.registry import Check, ProbeContext, run_checks
from probe.result import Status

OOM = "CUDA out of memory. Tried to allocate 2.00 GiB; other processes hold 120 GiB"


@pytest.mark.parametrize("error, cause", [
    ("torch.OutOfMemoryError: " + OOM, "resource"),
    ("RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`", "resource"),
    ("RuntimeError: cuDNN error: CUDNN_STATUS_ALLOC_FAILED", "resource"),
    ("RuntimeError: CUDA error: CUBLAS_STATUS_NOT_INITIALIZED when calling `cublasCreate(handle)`", "resource"),
    ("RuntimeError: CUDA error: no kernel image is available for execution on the device", "device"),
    ("RuntimeError: CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx`", "device"),
    ("RuntimeError: CUDA error: an illegal memory access was encountered", "device"),
    ("KeyError: 'pooling_mode'", "other"),
    ("OSError: We couldn't connect to 'https://huggingface.co'", "other"),
])
def test_failure_cause(error, cause):
    assert failure_cause(error) == cause


def _crashing(error: BaseException) -> Check:
    def run(_ctx):
        raise error
    return Check("sentence_transformers", "model smoke", run)


def test_a_crashed_check_is_not_run_not_incompatible():
    results = run_checks([_crashing(KeyError("pooling_mode"))], ProbeContext("m", "h", "o", "cuda"))
    assert results[0].status is Status.SKIP
    assert results[0].reason.startswith("not run: check raised KeyError") and "probe bug" in results[0].reason
    overall = derive_overall(results, critical={"sentence_transformers"}, target_probed=True)
    assert overall.status is Overall.INCOMPLETE


def test_a_check_crashing_on_a_gpu_fault_still_fails():
    results = run_checks([_crashing(RuntimeError("CUDA error: an illegal memory access was encountered"))],
                         ProbeContext("m", "h", "o", "cuda"))
    assert results[0].status is Status.FAIL
    assert derive_overall(results, critical={"sentence_transformers"}, target_probed=True).status is Overall.INCOMPATIBLE


def test_kernels_out_of_memory_is_not_run():
    def out_of_memory(x):
        raise RuntimeError(OOM)

    result = kernels.check_kernels(_ctx("cpu"), ops=_replace_op("softmax", compute=out_of_memory))
    assert result.status is Status.SKIP
    assert result.reason.startswith("not run: 1/") and "free device memory" in result.reason


def test_kernels_out_of_memory_beside_a_wrong_op_still_fails():
    def out_of_memory(x):
        raise RuntimeError(OOM)

    ops = _replace_op("softmax", compute=out_of_memory)
    ops = tuple(op if op.name != "gelu" else type(op)(**{**op.__dict__, "compute": lambda x: x * float("nan")})
                for op in ops)
    assert kernels.check_kernels(_ctx("cpu"), ops=ops).status is Status.FAIL


def test_attention_out_of_memory_everywhere_is_not_run():
    def runner(backend, q, k, v, mask):
        raise RuntimeError(OOM)

    result = check_attention(ctx(), runner=runner, plan=TINY)
    assert result.status is Status.SKIP and "not run:" in result.reason
    assert all(c["outcome"] == NOT_RUN for c in result.figures["cells"])
    assert result.settings["enable_flash_sdp"] and result.settings["enable_mem_efficient_sdp"]  # nothing disabled


@pytest.mark.parametrize("error, status", [
    ("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`", Status.SKIP),
    ("CUDA error: no kernel image is available for execution on the device", Status.FAIL),
])
def test_torch_build_tiny_kernel_failure_fails_only_when_the_gpu_is_to_blame(monkeypatch, error, status):
    monkeypatch.setitem(sys.modules, "torch", FakeCudaTorch(["sm_120"], smoke_error=error))
    result = torch_build.check_torch_build(_ctx("cuda"))
    assert result.status is status
    assert result.reason.startswith("not run: ") is (status is Status.SKIP)


def test_not_initialized_is_read_as_memory_whichever_library_says_it():
    """cuBLAS and cuDNN NOT_INITIALIZED are most often a handle or workspace that could not be
    allocated (a Spark's memory held by another model): "not run", never "incompatible"."""
    assert failure_cause("RuntimeError: cuDNN error: CUDNN_STATUS_NOT_INITIALIZED") == "resource"
    assert failure_cause("RuntimeError: CUDA error: CUBLAS_STATUS_NOT_INITIALIZED when calling cublasCreate") \
        == "resource"


def test_attention_crashing_on_a_bug_is_not_run():
    def runner(backend, q, k, v, mask):
        raise TypeError("scaled_dot_product_attention() got an unexpected keyword argument 'enable_gqa'")

    result = check_attention(ctx(), runner=runner, plan=TINY)
    assert result.status is Status.SKIP and "not run:" in result.reason and "TypeError" in result.reason


def test_torch_build_tiny_kernel_with_wrong_numbers_fails(monkeypatch):
    fake = FakeCudaTorch(["sm_120"])
    real_arange = fake.arange
    fake.arange = lambda n, device=None, dtype=None: real_arange(n, dtype=dtype) + 1  # every element off by one
    monkeypatch.setitem(sys.modules, "torch", fake)
    result = torch_build.check_torch_build(_ctx("cuda"))
    assert result.status is Status.FAIL and "wrong result" in result.reason
