"""The ceilings check: memory bandwidth (copy and streaming read) and, on a CPU, the matmul peak.

Real measurements on this machine's CPU at small sizes; fakes for wrong results and failures."""

from __future__ import annotations

import json
import types

import pytest

from probe.checks import ceilings, kernels
from probe.output import to_jsonable
from probe.registry import ProbeContext
from probe.result import Status

SMALL = ceilings.BandwidthPlan(8 << 20, kernels.TimingPolicy(warmup=1, min_reps=3, max_reps=3, min_time_s=0.0))


def _ctx(device=None, quick=False) -> ProbeContext:
    return ProbeContext(model="m", ollama_host="http://x", ollama_model="bge-m3", device=device, quick=quick)


def _small_matmul():
    ops = tuple(op for op in kernels.DEFAULT_OPS if op.name in ceilings.CPU_MATMUL_OPS)
    return kernels.run_kernel_suite("cpu", kernels.CPU_SIZES, kernels.CPU_TIMING, ops)


def test_cpu_bandwidth_and_matmul_are_measured_and_checked():
    result = ceilings.check_ceilings(_ctx(), plan=SMALL, matmul=_small_matmul)
    assert result.status is Status.PASS, result.reason
    assert result.reason.startswith("on CPU (target not probed): bandwidth ")
    figures = result.figures
    assert figures["device"] == "cpu" and figures["target_probed"] is False
    assert figures["memory"].startswith("CPU main memory")
    copy, read = figures["bandwidth"]["copy"], figures["bandwidth"]["read"]
    assert copy["ok"] and read["ok"] and copy["reps"] == read["reps"] == 3
    assert copy["bytes_per_call"] == 2 * read["bytes_per_call"] == 2 * SMALL.buffer_bytes
    for fig in (copy, read):
        assert 0 < fig["gbs_worst"] <= fig["gbs_median"] <= fig["gbs_best"]
    assert figures["bandwidth_gbs"] == max(copy["gbs_best"], read["gbs_best"])
    assert figures["bandwidth_basis"] in ("copy", "read")
    assert set(figures["matmul_tflops"]) == {"fp32", "bf16"} and all(v > 0 for v in figures["matmul_tflops"].values())
    json.dumps(to_jsonable(figures), allow_nan=False)


def test_measure_bandwidth_rates_follow_from_the_timings(monkeypatch):
    """With the clock faked, GB/s = bytes moved / seconds exactly: 2x the buffer for a copy, 1x for a read."""
    times = iter([0.5, 0.25, 1.0, 0.5, 0.25, 1.0])
    monkeypatch.setattr(kernels, "time_call", lambda torch, device, fn, policy: [next(times) for _ in range(3)])
    copy, read = ceilings.measure_bandwidth("cpu", SMALL)
    nbytes = SMALL.buffer_bytes
    assert copy.gbs_best == pytest.approx(2 * nbytes / 0.25 / 1e9)
    assert copy.gbs_median == pytest.approx(2 * nbytes / 0.5 / 1e9)
    assert copy.gbs_worst == pytest.approx(2 * nbytes / 1.0 / 1e9)
    assert read.gbs_best == pytest.approx(nbytes / 0.25 / 1e9)
    assert ceilings.bandwidth_basis(copy, read) == (copy.gbs_best, "copy")


def test_a_wrong_result_is_not_timed_and_not_used():
    import torch

    wrong = ceilings.measure_one(torch, "cpu", "read", lambda: torch.tensor(1.0), lambda total: "sum 1 vs 2",
                                 100, SMALL.timing)
    assert not wrong.ok and wrong.error == "sum 1 vs 2" and wrong.reps == 0 and wrong.gbs_best is None

    def boom():
        raise RuntimeError("CUDA error: out of memory\nmore")

    failed = ceilings.measure_one(torch, "cpu", "copy", boom, lambda _: None, 100, SMALL.timing)
    assert failed.error == "RuntimeError: CUDA error: out of memory" and not failed.ok
    good = ceilings.BandwidthOutcome("copy", True, None, 100, 5.0, 4.0, 3.0, 3)
    assert ceilings.bandwidth_basis(good, wrong) == (5.0, "copy")
    assert ceilings.bandwidth_basis(failed, wrong) == (None, None)


def test_nothing_measured_is_a_warn_naming_why():
    def broken(device, plan):
        why = "buffers of 8 bytes not allocated: RuntimeError: no memory"
        return (ceilings.BandwidthOutcome("copy", False, why, 16, None, None, None, 0),
                ceilings.BandwidthOutcome("read", False, why, 8, None, None, None, 0))

    result = ceilings.check_ceilings(_ctx(), plan=SMALL, bandwidth=broken, matmul=_small_matmul)
    assert result.status is Status.WARN
    assert "no bandwidth measured" in result.reason and "no memory" in result.reason
    assert result.figures["bandwidth_gbs"] is None


def test_a_wrong_cpu_matmul_is_not_a_ceiling():
    import dataclasses

    def wrong_matmul():
        ops = tuple(dataclasses.replace(op, compute=lambda a, b, rows: a @ b * 1.5) if op.name == "matmul_fp32" else op
                    for op in kernels.DEFAULT_OPS if op.name in ceilings.CPU_MATMUL_OPS)
        return kernels.run_kernel_suite("cpu", kernels.CPU_SIZES, kernels.CPU_TIMING, ops)

    result = ceilings.check_ceilings(_ctx(), plan=SMALL, matmul=wrong_matmul)
    assert set(result.figures["matmul_tflops"]) == {"bf16"}
    assert "not counted: matmul_fp32" in result.reason


def test_on_a_gpu_only_bandwidth_is_measured_here(monkeypatch):
    """The kernels check owns the GPU's matmul peak; this check must not run a CPU matmul there."""
    fake_torch = types.SimpleNamespace(cuda=types.SimpleNamespace(get_device_properties=lambda d: None))
    monkeypatch.setitem(__import__("sys").modules, "torch", fake_torch)
    ok = ceilings.BandwidthOutcome("copy", True, None, 16, 3000.0, 2900.0, 2800.0, 20)
    result = ceilings.check_ceilings(_ctx("cuda"), plan=SMALL, bandwidth=lambda d, p: (ok, ok),
                                     matmul=lambda: pytest.fail("no CPU matmul on a GPU"))
    assert result.status is Status.PASS and result.figures["device"] == "cuda"
    assert "matmul_tflops" not in result.figures
    assert not result.reason.startswith("on CPU")


def test_which_memory_was_measured_is_said():
    class Props:
        name = "NVIDIA GB10"
        is_integrated = 1

    integrated = types.SimpleNamespace(cuda=types.SimpleNamespace(get_device_properties=lambda d: Props()))
    assert "unified LPDDR5x" in ceilings.memory_measured(integrated, "cuda")
    Props.is_integrated = 0
    Props.name = "NVIDIA H100 80GB HBM3"
    assert "the GPU's own device memory" in ceilings.memory_measured(integrated, "cuda")

    def raises(device):
        raise RuntimeError("no device")

    assert "CUDA device memory" in ceilings.memory_measured(
        types.SimpleNamespace(cuda=types.SimpleNamespace(get_device_properties=raises)), "cuda")


def test_plans_stay_far_above_the_last_level_cache():
    assert ceilings.plan_for("cuda", False).buffer_bytes == 1 << 30
    assert ceilings.plan_for("cuda", True).buffer_bytes >= 256 << 20
    assert ceilings.plan_for("cpu", False).buffer_bytes >= 256 << 20
    assert ceilings.plan_for("cpu", True).buffer_bytes >= 128 << 20


@pytest.mark.gpu
def test_gpu_bandwidth_on_device():
    import torch

    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    result = ceilings.check_ceilings(_ctx("cuda", quick=True))
    assert result.status is Status.PASS, result.reason
    assert result.figures["bandwidth_gbs"] > 10
