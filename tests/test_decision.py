"""The ticket's outcome table, one test per outcome, including the honest 'Inconclusive'."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bench.decision import MIGRATION_SPEEDUP, SIMILAR_BELOW, DecisionInputs, Outcome, SpeedComparison, decide


def speed(*ratios):
    return tuple(SpeedComparison(f"set{i}", "throughput (best batch size)", r, r * 0.9, r * 1.1, "")
                 for i, r in enumerate(ratios))


BASE = DecisionInputs(
    probe_status="compatible", probe_target_probed=True, probe_reason="all critical checks passed",
    workarounds=(), bench_complete=True, native_device="cuda", missing=(), speed=speed(3.0, 2.5),
    quality_ok=True, quality_issues=(), truncation_issues=(),
)


def test_two_x_everywhere_and_no_issues_is_migration():
    decision = decide(BASE)
    assert decision.outcome is Outcome.MIGRATE
    assert decision.driving.ratio == 2.5  # the slowest case drives the decision


def test_one_slow_set_below_the_bar_makes_it_conditional():
    decision = decide(replace(BASE, speed=speed(3.0, 1.6)))
    assert decision.outcome is Outcome.CONDITIONAL
    assert any(f"{MIGRATION_SPEEDUP}" in r for r in decision.reasons)


@pytest.mark.parametrize("change", [
    {"workarounds": ("torch.backends.cuda.enable_flash_sdp(False)",)},
    {"quality_ok": False, "quality_issues": ("cosine below threshold",)},
    {"truncation_issues": ("'documents': ollama cut 40 texts, native-fp16 cut 0",)},
])
def test_fast_but_with_issues_is_conditional(change):
    decision = decide(replace(BASE, **change))
    assert decision.outcome is Outcome.CONDITIONAL
    issue = next(iter(v for v in change.values() if isinstance(v, tuple)))[0]
    assert any(issue in r for r in decision.reasons)


def test_similar_speed_keeps_ollama():
    decision = decide(replace(BASE, speed=speed(1.1, 3.0)))
    assert decision.outcome is Outcome.KEEP
    assert decision.driving.ratio == 1.1 < SIMILAR_BELOW


def test_incompatible_probe_closes_the_td_whatever_the_speed():
    decision = decide(replace(BASE, probe_status="incompatible", probe_reason="kernels: matmul bf16 wrong"))
    assert decision.outcome is Outcome.CLOSE
    assert "matmul bf16" in decision.reasons[0]


@pytest.mark.parametrize("change, says", [
    ({"missing": ("the Ollama side was not measured",)}, "Ollama side"),
    ({"probe_status": None}, "no probe results"),
    ({"probe_target_probed": False, "probe_status": "target not probed"}, "no CUDA device"),
    ({"native_device": "cpu"}, "not on the target GPU"),
    ({"bench_complete": False}, "partial"),
    ({"speed": ()}, "no speed comparison"),
    ({"quality_ok": None}, "no quality comparison"),
])
def test_missing_evidence_is_inconclusive_and_says_what_is_missing(change, says):
    decision = decide(replace(BASE, **change))
    assert decision.outcome is Outcome.INCONCLUSIVE
    assert any(says in r for r in decision.reasons)
