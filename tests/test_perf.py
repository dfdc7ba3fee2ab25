"""`bench perf` runs on a tiny input and returns a well-formed result (no assertion on the ratio)."""

from __future__ import annotations

import asyncio

from click.testing import CliRunner

from bench.analyse.roofline import read_model_config
from bench.backends import BACKENDS
from bench.backends.base import BackendSettings
from bench.measure.perf import batches_of, run_perf


def test_batches_of():
    assert batches_of(5, 2) == [slice(0, 2), slice(2, 4), slice(4, 5)]
    assert batches_of(0, 3) == []


def test_run_perf_on_a_tiny_input(small_model_path):
    backend = BACKENDS["native-fp32"](BackendSettings(model=small_model_path, device="cpu",
                                                      fresh_process_cold_load=False))
    texts = ["ein kurzer Text", "a second, slightly longer text for the batch", "drei"]
    result = asyncio.run(run_perf(backend, texts, batch_size=2, rounds=2,
                                  model_config=read_model_config(small_model_path), probe=None))
    assert result.rounds == 2 and len(result.bare_s) == 2 and len(result.harness_s) == 2
    assert all(s > 0 for s in result.bare_s + result.harness_s)
    assert result.ratio.n_control == 2 and result.ratio.ratio > 0
    assert result.ratio.ci95_low <= result.ratio.ratio <= result.ratio.ci95_high
    assert [r.backend for r in result.roofline] == ["bare model.encode", "bench harness"]
    # no probe.json: the CPU's ceilings are measured on the spot, so both sides of the roofline exist
    assert all(r.achieved_tflops > 0 and r.mfu_measured > 0 for r in result.roofline)
    assert all(r.bound.compute_s > 0 and r.bound.memory_s > 0 and 0 < r.reached for r in result.roofline)
    assert all(r.calls == 2 and r.peak_key == "fp32" for r in result.roofline)
    assert any("ceilings from measured now on cpu" in note for note in result.roofline_notes)
    assert result.texts == 3 and result.tokens > 0


def test_perf_prefers_the_probes_ceilings_for_the_same_device():
    from bench.measure.perf import perf_ceilings

    probe = {"config": {"device": None},
             "checks": [{"name": "ceilings", "figures": {"device": "cpu", "bandwidth_gbs": 12.0,
                                                          "matmul_tflops": {"fp32": 0.05}}}]}
    ceilings, source = perf_ceilings(probe, "cpu")
    assert (ceilings.bandwidth_gbs, ceilings.matmul_tflops, source) == (12.0, {"fp32": 0.05}, "probe.json")


def test_perf_command_prints_ratio_and_roofline(tmp_path):
    outcome = CliRunner().invoke(
        __import__("bench.cli", fromlist=["main"]).main,
        ["perf", "--profile", "smoke", "--per-set", "2", "--rounds", "2", "--batch-size", "4",
         "--device", "cpu", "--results", str(tmp_path)])
    assert outcome.exit_code == 0, outcome.output
    assert "harness / bare =" in outcome.output
    assert "Roofline" in outcome.output
    assert "bandwidth" in outcome.output and "reached" in outcome.output
