"""Batch plans: token-budget batches and length-sorted order, on hand-checked counts."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import numpy as np
import pytest
from fake_backends import FakeBackend, FakeBehaviour

from bench.analyse.figures import set_figures
from bench.backends import ProbeGate
from bench.config import PROFILES, BenchConfig
from bench.measure import scenarios
from bench.measure.batching import (
    capped_counts,
    length_sorted_order,
    padded_tokens,
    token_budget_batches,
)
from bench.measure.runner import gate_reason, run_bench
from bench.measure.throughput import sweep_plan


def test_batches_fill_the_budget_longest_first():
    counts = [10, 50, 20, 50, 5, 30]
    batches = token_budget_batches(counts, 100)
    # sorted: 1(50) 3(50) 5(30) 2(20) 0(10) 4(5); 2×50=100 fits, 3×50 does not; then 30,20,10 -> 3×30=90, 4×30 > 100
    assert batches == [[1, 3], [5, 2, 0], [4]]
    assert all(padded_tokens(counts, b) <= 100 for b in batches)


def test_every_index_exactly_once():
    counts = [7, 3, 9, 1, 1, 12, 4, 4, 8]
    batches = token_budget_batches(counts, 20)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(counts)))


def test_a_text_over_the_budget_runs_alone():
    counts = [5, 500, 6]
    assert token_budget_batches(counts, 100) == [[1], [2, 0]]


def test_ties_keep_input_order_and_empty_input():
    assert length_sorted_order([3, 5, 3, 5]) == [1, 3, 0, 2]
    assert token_budget_batches([], 10) == []


def test_zero_token_text_still_takes_a_row():
    assert token_budget_batches([0, 0, 0], 2) == [[0, 1], [2]]


def test_bad_budget_is_refused():
    with pytest.raises(ValueError):
        token_budget_batches([1, 2], 0)


def test_capped_counts():
    assert capped_counts([10, 300, 256], 256) == [10, 256, 256]
    assert capped_counts([10, 300], None) == [10, 300]


def test_sentence_transformers_sorts_within_one_encode_call(small_model):
    """The claim in bench/measure/batching.py: encode sorts by length inside a call and restores order."""
    texts = ["a much longer text about the DGX Spark and its unified memory", "short", "mid length text"]
    together = small_model.encode(texts, batch_size=2, convert_to_numpy=True)
    alone = np.stack([small_model.encode([t], convert_to_numpy=True)[0] for t in texts])
    assert np.allclose(together, alone, atol=1e-5)


# ---------------------------------------------------------------- the sweep in the bench



def test_token_budget_pass_returns_vectors_in_input_order():
    texts = ["a", "bbbbbbbb", "cc", "dddd"]
    counts = [1, 8, 2, 4]
    backend = FakeBackend("fake", FakeBehaviour(seconds_per_text=0.0))
    result = asyncio.run(scenarios.token_budget_pass(backend, "s", texts, counts, 8))
    m = result.measurement
    assert m.scenario == "throughput" and m.params == {"token_budget": 8}
    assert len(m.samples) == len(token_budget_batches(counts, 8)) == 3  # [1], [3, 2], [0]
    expected = np.stack([backend._vector(t) for t in texts]).astype(np.float32)
    assert np.allclose(result.vectors, expected)


def test_length_sorted_throughput_pass_keeps_input_order_of_vectors():
    texts = ["a", "bbbbbbbb", "cc", "dddd", "eee"]
    backend = FakeBackend("fake", FakeBehaviour(seconds_per_text=0.0))
    result = asyncio.run(scenarios.throughput_pass(backend, "s", texts, [1, 8, 2, 4, 3], 2, length_sorted=True))
    assert result.measurement.params == {"batch_size": 2, "order": "length"}
    expected = np.stack([backend._vector(t) for t in texts]).astype(np.float32)
    assert np.allclose(result.vectors, expected)


def test_sweep_plan_lists_batch_sizes_then_budgets():
    profile = replace(PROFILES["smoke"], batch_sizes=(1, 8), token_budgets=(4096,), length_sorted_sweep=True)
    assert sweep_plan(profile) == [{"batch_size": 1}, {"batch_size": 8}, {"batch_size": 1, "order": "length"},
                                   {"batch_size": 8, "order": "length"}, {"token_budget": 4096}]


ST_CHECK = {"name": "sentence_transformers", "status": "warn", "reason": "half precision drifts",
            "figures": {"dtypes": {"float16": {"finite": True}, "bfloat16": {"finite": False}},
                        "half_vs_fp32_cosine": {"float16": {"min": 0.95, "mean": 0.99}},
                        "cosine_warn_below": 0.99}}


def test_gate_reason_reads_the_probe_checks():
    checks = {"sentence_transformers": ST_CHECK, "triton": {"status": "warn", "reason": "ptxas sm_121a"}}
    assert "min cosine 0.9500" in gate_reason(ProbeGate(dtype="float16"), checks)
    assert "NaN/inf in the bfloat16" in gate_reason(ProbeGate(dtype="bfloat16"), checks)
    assert "triton is warn: ptxas sm_121a" in gate_reason(ProbeGate(dtype="float16", needs_compile=True), checks)
    assert gate_reason(None, checks) is None
    assert gate_reason(ProbeGate(dtype="float16"), None) is None  # no probe: measure it
    assert "no probe result" in gate_reason(ProbeGate(needs_compile=True), None)
    good = {"sentence_transformers": {"figures": {"dtypes": {"float16": {"finite": True}},
                                                  "half_vs_fp32_cosine": {"float16": {"min": 0.999}},
                                                  "cosine_warn_below": 0.99}}}
    assert gate_reason(ProbeGate(dtype="float16"), good) is None


def test_bench_runs_token_budgets_and_skips_a_flagged_half_variant(tmp_path, small_model_path, monkeypatch):
    import bench.measure.runner

    for name in ("native-fp32", "native-fp16"):
        monkeypatch.setitem(bench.measure.runner.BACKENDS, name,
                            lambda settings, n=name: FakeBackend(n, FakeBehaviour(seconds_per_text=0.0)))
    (tmp_path / "probe.json").write_text(json.dumps({
        "kind": "probe", "schema_version": 1, "tool_version": "0", "created_at": "x", "config": {}, "facts": {},
        "checks": [ST_CHECK], "overall": {}, "bench_settings": {}}))
    profile = replace(PROFILES["smoke"], model=small_model_path, set_sizes={"short": 5, "long": 2, "documents": 1},
                      warmup_calls=1, single_latency_calls=2, batch_latency_repeats=1, batch_sizes=(2,),
                      concurrency_levels=(1,), concurrency_requests=2, quality_pairs=5, token_budgets=(64,))
    config = BenchConfig(profile=profile, backends=("native-fp32", "native-fp16"), results_dir=tmp_path,
                         ollama_host="http://127.0.0.1:9", timeout_s=5.0, device="cpu")
    asyncio.run(run_bench(config))
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["environment"]["model_config"]["hidden_size"] == 384
    assert data["backends"]["native-fp16"]["error"].startswith("probe: float16 min cosine 0.9500")
    assert any(f["backend"] == "native-fp16" and f["scenario"] == "probe gate" for f in data["failures"])
    assert not any(m["backend"] == "native-fp16" for m in data["measurements"])
    figures = set_figures(data, "native-fp32", "short")
    labels = [p.label for p in figures.throughput]
    assert labels == ["batch 2", "≤64 tokens"]
    budget = figures.throughput[1]
    counts = next(s["token_counts"] for s in data["workload"]["sets"] if s["name"] == "short")
    # Every pass of the setting cuts the same batches (the best setting has 3 passes, others 1).
    assert budget.per_batch_texts_per_s.count == budget.passes * len(token_budget_batches(counts, 64))
