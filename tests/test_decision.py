"""The ticket's outcome table with structure (issues 14 and 10): throughput decides, by its CI
across passes; latency is reported beside; placement, per-text failures and uncertainty are
part of the rule; Inconclusive only for missing evidence."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from bench.analyse.decision import (
    MIGRATION_SPEEDUP,
    RULES,
    SIMILAR_BELOW,
    DecisionInputs,
    Outcome,
    SpeedClass,
    SpeedComparison,
    decide,
    read_set,
)


def tput(*ratios, spread=0.1, passes=3):
    """One throughput comparison per set, CI ±spread·ratio (a tight CI unless asked otherwise)."""
    return tuple(SpeedComparison(f"set{i}", "throughput (best setting)", r, r * (1 - spread), r * (1 + spread),
                                 "test figures", (passes, passes)) for i, r in enumerate(ratios))


def lat(*ratios):
    return tuple(SpeedComparison(f"set{i}", "single-text latency p50", r, r * 0.95, r * 1.05, "p50 test", (200, 200))
                 for i, r in enumerate(ratios))


BASE = DecisionInputs(
    probe_status="compatible", probe_target_probed=True, probe_reason="all critical checks passed",
    workarounds=(), bench_complete=True, native_device="cuda", missing=(), throughput=tput(3.0, 2.5),
    quality_ok=True, quality_issues=(), truncation_issues=(), latency=lat(1.1, 1.0),
)


def test_two_x_everywhere_with_tight_cis_and_no_issues_is_migration():
    decision = decide(BASE)
    assert decision.outcome is Outcome.MIGRATE
    assert [s.speed_class for s in decision.sets] == [SpeedClass.MIGRATION, SpeedClass.MIGRATION]
    assert not decision.borderline


def test_four_x_throughput_everywhere_with_latency_near_one_is_not_keep():
    """GB10: one query text is memory-bound (both sides near the ~4 ms floor), so single-text
    latency 1.2× must not turn a 4× throughput win into 'Keep Ollama'."""
    decision = decide(replace(BASE, throughput=tput(4.0, 4.0, 4.0), latency=lat(1.2, 1.2, 1.2)))
    assert decision.outcome is Outcome.MIGRATE
    assert any("beside the decision" in r and "1.20×" in r for r in decision.reasons)


def test_native_slower_on_one_set_is_called_slower_never_similar():
    decision = decide(replace(BASE, throughput=tput(3.0, 1 / 3)))
    assert decision.outcome is Outcome.CONDITIONAL  # mixed: faster on one set, slower on another
    slow = next(r for r in decision.reasons if r.startswith("'set1'"))
    assert "slower" in slow and "similar" not in slow
    assert any("below the ticket's 2× bar on 'set1' (slower)" in r for r in decision.reasons)


def test_native_slower_everywhere_keeps_ollama_and_says_slower():
    decision = decide(replace(BASE, throughput=tput(0.5, 0.6)))
    assert decision.outcome is Outcome.KEEP
    assert all("slower" in r for r in decision.reasons if r.startswith("'set"))


def test_similar_in_every_set_keeps_ollama():
    decision = decide(replace(BASE, throughput=tput(1.05, 0.95, spread=0.05)))
    assert decision.outcome is Outcome.KEEP
    assert {s.speed_class for s in decision.sets} == {SpeedClass.SIMILAR}


def test_faster_but_below_two_x_is_conditional_naming_the_sets():
    decision = decide(replace(BASE, throughput=tput(3.0, 1.6)))
    assert decision.outcome is Outcome.CONDITIONAL
    assert any(f"below the ticket's {MIGRATION_SPEEDUP:g}× bar on 'set1' (faster, below 2×)" in r
               for r in decision.reasons)


def test_ratio_2_02_with_ci_1_45_to_2_60_is_borderline_and_not_migration():
    comparison = SpeedComparison("short", "throughput (best setting)", 2.02, 1.45, 2.60, "test", (3, 3))
    decision = decide(replace(BASE, throughput=(comparison,)))
    assert decision.outcome is Outcome.CONDITIONAL
    assert decision.borderline
    assert decision.sets[0].speed_class is SpeedClass.FASTER  # the conservative reading
    reason = next(r for r in decision.reasons if r.startswith("'short'"))
    assert reason.startswith("'short': native faster, below 2× (2.02×")
    assert "borderline: the CI crosses 2×" in reason and "passes per side" in reason


def test_faster_with_a_ci_reaching_into_the_similar_band_is_faster_borderline_not_similar():
    """'similar' only when the CI lies inside the band: 1.3× with CI 1.1–1.5 is not similar."""
    comparison = SpeedComparison("short", "throughput (best setting)", 1.3, 1.1, 1.5, "test", (3, 3))
    decision = decide(replace(BASE, throughput=(comparison,)))
    assert decision.outcome is Outcome.CONDITIONAL and decision.borderline
    assert decision.sets[0].speed_class is SpeedClass.FASTER


def test_one_bad_pass_out_of_three_does_not_turn_a_faster_native_into_keep():
    """The reviewer's case: native passes 300, 300, 90 texts/s against Ollama's 100, 100, 100."""
    from bench.analyse.stats import ratio_of_few

    r = ratio_of_few([300.0, 300.0, 90.0], [100.0, 100.0, 100.0])
    comparison = SpeedComparison("short", "throughput (best setting)", r.ratio, r.ci95_low, r.ci95_high, "test", (3, 3))
    decision = decide(replace(BASE, throughput=(comparison,)))
    assert decision.outcome is Outcome.CONDITIONAL  # faster by the passes, not settled: never "similar"/Keep
    assert decision.sets[0].speed_class is SpeedClass.FASTER and decision.borderline


def test_a_similar_ratio_whose_ci_reaches_the_faster_band_cannot_keep_ollama():
    """Issue 14: "similar" only when the CI lies inside the band. 1.2× with CI 0.7–1.6 may be faster:
    neither Keep nor Migrate, the conditional middle, saying what would settle it."""
    comparison = SpeedComparison("short", "throughput (best setting)", 1.2, 0.7, 1.6, "test", (3, 3))
    decision = decide(replace(BASE, throughput=(comparison,)))
    assert decision.outcome is Outcome.CONDITIONAL and decision.borderline
    assert decision.sets[0].speed_class is SpeedClass.SIMILAR
    assert decision.reasons[0].startswith("similar only as far as the passes can tell: 'short' reaches 1.60×")
    assert "passes per side" in decision.reasons[0]


@pytest.mark.parametrize("ratio, low, high", [(1.05, 0.95, 1.15), (0.9, 0.7, 1.1), (0.6, 0.5, 0.7)])
def test_similar_or_slower_with_the_ci_below_the_faster_band_keeps_ollama(ratio, low, high):
    comparison = SpeedComparison("short", "throughput (best setting)", ratio, low, high, "test", (3, 3))
    assert decide(replace(BASE, throughput=(comparison,))).outcome is Outcome.KEEP


def test_native_clearly_slower_on_single_text_latency_makes_a_migration_conditional():
    slow = tuple(SpeedComparison(f"set{i}", "single-text latency p50", 0.33, 0.30, 0.36, "p50 test", (200, 200))
                 for i in range(2))
    decision = decide(replace(BASE, latency=slow))
    assert decision.outcome is Outcome.CONDITIONAL
    assert any(r.startswith("native slower on single-text latency on 'set0' (0.33×") for r in decision.reasons)


def test_an_unknown_placement_string_is_not_taken_for_the_gpu():
    decision = decide(replace(BASE, ollama_placement="mixed"))
    assert decision.outcome is Outcome.INCONCLUSIVE


def test_no_ci_cannot_claim_two_x():
    comparison = SpeedComparison("short", "throughput (best setting)", 3.0, None, None, "one pass", (1, 1))
    reading = read_set(comparison)
    assert reading.speed_class is SpeedClass.FASTER and reading.borderline
    assert decide(replace(BASE, throughput=(comparison,))).outcome is Outcome.CONDITIONAL


def test_settle_estimate_is_the_fewest_passes_whose_welch_interval_clears_the_threshold():
    """Checked against scipy directly: with today's standard error shrinking as 1/sqrt(n) and t at
    2(n-1) degrees of freedom, the interval at the named n clears 2.0×, at n-1 it does not."""
    import math
    import re

    from scipy import stats

    comparison = SpeedComparison("s", "throughput (best setting)", 2.2, 1.8, 2.6, "test", (3, 3))
    reading = read_set(comparison)
    n = int(re.search(r"about (\d+) passes", reading.settle).group(1))
    standard_error = math.log(2.6 / 1.8) / 2 / stats.t.ppf(0.975, 4)

    def half_width(passes: int) -> float:
        return stats.t.ppf(0.975, 2 * (passes - 1)) * standard_error * math.sqrt(3 / passes)

    assert half_width(n) < math.log(2.2 / 2.0) <= half_width(n - 1)
    assert n == 7  # not the 12 that reusing today's t (2.78 at 4 degrees of freedom) would claim


@pytest.mark.parametrize("placement", ["partial", "cpu"])
def test_ollama_partly_on_the_cpu_cannot_give_migration_and_says_so(placement):
    decision = decide(replace(BASE, ollama_placement=placement))
    assert decision.outcome is Outcome.INCONCLUSIVE
    assert "CPU" in decision.reasons[0] and "size_vram" in decision.reasons[0]
    assert "num_gpu" in decision.reasons[0]  # the fix


def test_ollama_on_the_cpu_and_native_not_faster_still_keeps():
    decision = decide(replace(BASE, throughput=tput(1.0, 0.9, spread=0.05), ollama_placement="cpu"))
    assert decision.outcome is Outcome.KEEP


def test_unreported_placement_makes_a_migration_conditional():
    decision = decide(replace(BASE, ollama_placement=None))
    assert decision.outcome is Outcome.CONDITIONAL
    assert any("placement was not reported" in r for r in decision.reasons)


@pytest.mark.parametrize("change", [
    {"workarounds": ("torch.backends.cuda.enable_flash_sdp(False)",)},
    {"quality_ok": False, "quality_issues": ("cosine below threshold",)},
    {"truncation_issues": ("'documents': ollama cut 40 texts, native-fp16 cut 0",)},
    {"native_text_failures": ("native-fp16 could not embed 2 of 100 documents texts: out of device memory",)},
])
def test_fast_but_with_issues_is_conditional(change):
    decision = decide(replace(BASE, **change))
    assert decision.outcome is Outcome.CONDITIONAL
    issue = next(iter(v for v in change.values() if isinstance(v, tuple)))[0]
    assert any(issue in r for r in decision.reasons)


def test_ollama_per_text_failures_with_native_clean_and_fast_are_a_finding_not_inconclusive():
    finding = ("ollama could not embed 3 of 40 short texts: embedding contains NaN or Inf values (HTTP 500); "
               "native-fp32 embeds all 3")
    decision = decide(replace(BASE, ollama_text_failures=(finding,)))
    assert decision.outcome is Outcome.MIGRATE
    assert finding in decision.reasons


def test_native_per_text_failures_are_a_native_issue():
    decision = decide(replace(BASE, native_text_failures=("native-fp32 could not embed 1 of 4 documents texts: x",)))
    assert decision.outcome is Outcome.CONDITIONAL


def test_a_dead_ollama_server_is_still_inconclusive():
    decision = decide(replace(BASE, missing=("the Ollama side was not measured (Ollama not reachable at ...)",),
                              throughput=(), quality_ok=None))
    assert decision.outcome is Outcome.INCONCLUSIVE
    assert "not reachable" in decision.reasons[0]


@pytest.mark.parametrize("bench_side", [{"native_device": "cpu"}, {"quality_ok": None}, {"quality_ok": False},
                                        {"throughput": ()}])
def test_incompatible_probe_closes_the_td_whatever_the_speed(bench_side):
    decision = decide(replace(BASE, probe_status="incompatible", probe_reason="kernels: matmul bf16 wrong",
                              **bench_side))
    assert decision.outcome is Outcome.CLOSE
    assert "matmul bf16" in decision.reasons[0]


@pytest.mark.parametrize("failed", [("sentence_transformers",), ("kernels",), ("torch_build", "kernels")])
def test_incompatible_probe_contradicted_by_a_working_native_run_is_inconclusive(failed):
    """Native measured on the GPU with vectors matching Ollama's: 'cannot run here' is in doubt (a
    kernels failure may be a bf16 op while native ran fp16)."""
    decision = decide(replace(BASE, probe_status="incompatible", probe_failed_checks=failed,
                              probe_reason="kernels: matmul_bf16: rel err 0.3"))
    assert decision.outcome is Outcome.INCONCLUSIVE
    assert "matmul_bf16" in decision.reasons[0] and "re-run the probe" in decision.reasons[0]


def test_out_of_memory_outside_the_deciding_figures_is_a_capacity_note_not_an_issue():
    decision = decide(replace(BASE, memory_notes=("native-fp16 failed calls on 'documents' (batch batch_size=100): "
                                                  "2 of 2 calls failed: CUDA out of memory",)))
    assert decision.outcome is Outcome.MIGRATE
    assert any(r.startswith("capacity, beside the decision: native-fp16") for r in decision.reasons)


@pytest.mark.parametrize("failed", [("attention",), ("torch_build", "attention"), ()])
def test_a_failure_the_bench_did_not_exercise_still_closes(failed):
    """Masked attention is not refuted by unpadded one-text vectors."""
    decision = decide(replace(BASE, probe_status="incompatible", probe_failed_checks=failed,
                              probe_reason="attention: no SDPA backend gives correct results with a padding mask"))
    assert decision.outcome is Outcome.CLOSE


def test_texts_only_ollama_fails_rule_out_keep():
    """Issue 10: "the current service cannot embed 76 of 1,217 texts" is not "Keep Ollama", however similar the speed."""
    similar = replace(BASE, throughput=tput(1.0, 1.05, spread=0.05),
                      ollama_text_failures=("ollama could not embed 76 of 1217 short texts: NaN; native-fp16 embeds all 76",))
    assert decide(similar).outcome is Outcome.KEEP  # the line alone is not the count
    decision = decide(replace(similar, ollama_only_failures=76))
    assert decision.outcome is Outcome.CONDITIONAL
    assert decision.reasons[0].startswith("not as fast to matter, but Ollama cannot embed 76 texts that native embeds")


def test_a_similar_set_without_a_ci_cannot_keep_ollama():
    """1.22× from one pass a side (or identical passes): nothing says the CI stays below 1.25."""
    comparison = SpeedComparison("short", "throughput (best setting)", 1.22, None, None, "test", (1, 1))
    decision = decide(replace(BASE, throughput=(comparison,)))
    assert decision.outcome is Outcome.CONDITIONAL and "has no CI" in decision.reasons[0]


def test_failed_calls_outside_the_deciding_figures_are_issues_for_native_and_findings_for_ollama():
    native = decide(replace(BASE, native_call_failures=("native-fp16 failed calls on 'short' (batch batch_size=4): "
                                                         "2 of 2 calls failed: CUBLAS_STATUS_EXECUTION_FAILED",)))
    assert native.outcome is Outcome.CONDITIONAL and "no issues found" not in native.reasons
    similar = replace(BASE, throughput=tput(1.0, 1.05, spread=0.05))
    ollama = decide(replace(similar, ollama_call_failures=("ollama failed calls on 'short' (throughput batch_size=4): "
                                                           "2 of 2 calls failed: runner terminated",)))
    assert ollama.outcome is Outcome.CONDITIONAL and any("runner terminated" in r for r in ollama.reasons)


def test_ollama_only_failures_counts_texts_ollama_failed_and_native_embedded():
    from bench.analyse.comparison import ollama_only_failures

    def record(backend, text_set, indices):
        return {"backend": backend, "text_set": text_set, "flaky": [], "calls": 1, "texts": 6,
                "failures": [{"backend": backend, "text_set": text_set, "index": i, "error": "NaN",
                              "http_status": 400} for i in indices]}

    bench = {"workload": {"sets": [{"name": "short"}, {"name": "long"}]},
             "screening": [record("ollama", "short", (1, 2, 4)), record("native", "short", (2,)),
                           record("ollama", "long", (0,)), record("native", "long", ())]}
    assert ollama_only_failures(bench, "ollama", "native") == 3  # short 1 and 4, long 0


def test_a_set_one_side_cannot_embed_at_all_rules_out_migration():
    decision = decide(replace(BASE, sets_without_comparison=("documents",)))
    assert decision.outcome is Outcome.CONDITIONAL
    assert "no speed comparison on 'documents': one side could embed none of its texts" in decision.reasons


@pytest.mark.parametrize("change, says", [
    ({"missing": ("the Ollama side was not measured",)}, "Ollama side"),
    ({"probe_status": None}, "no probe results"),
    ({"probe_target_probed": False, "probe_status": "target not probed"}, "no CUDA device"),
    ({"probe_status": "not fully probed", "probe_reason": "sentence_transformers: not run: model not downloaded"},
     "not run"),
    ({"native_device": "cpu"}, "not on the target GPU"),
    ({"bench_complete": False}, "partial"),
    ({"throughput": ()}, "no throughput comparison"),
    ({"quality_ok": None}, "no quality comparison"),
])
def test_missing_evidence_is_inconclusive_and_says_what_is_missing(change, says):
    decision = decide(replace(BASE, **change))
    assert decision.outcome is Outcome.INCONCLUSIVE
    assert any(says in r for r in decision.reasons)


def test_rules_are_the_readmes_decision_table():
    """The README's decision table and every verdict print the same rule (bench.analyse.decision.RULES)."""
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for name, rule in RULES:
        assert f"| {name} | {rule} |" in readme, name


def test_similar_band_is_symmetric_around_one():
    assert read_set(tput(1 / SIMILAR_BELOW + 0.01, spread=0.0)[0]).speed_class is SpeedClass.SIMILAR
    assert read_set(tput(1 / SIMILAR_BELOW, spread=0.0)[0]).speed_class is SpeedClass.SLOWER



def test_a_set_without_a_throughput_comparison_is_missing_unless_a_side_embeds_none_of_it():
    """Every set must be compared: a native that ran out of memory on every documents setting must
    not leave a 'Create Migration TD' decided on the other two sets."""
    import json

    from bench.analyse.comparison import uncompared_sets

    fixture = Path(__file__).parent / "fixtures" / "results" / "conditional" / "bench.json"
    bench = json.loads(fixture.read_text())
    bench["failures"].append({"backend": "native-fp16", "text_set": "documents", "scenario": "throughput",
                              "error": "batch_size=1 did not fit in device memory (out of memory)"})
    gaps, findings = uncompared_sets(bench, {"short", "long"}, "ollama", "native-fp16")
    assert gaps == ["no throughput comparison on 'documents' (batch_size=1 did not fit in device memory "
                    "(out of memory))"] and findings == []
    size = len(next(s for s in bench["workload"]["sets"] if s["name"] == "documents")["token_counts"])

    def ollama_fails_every_document(error: str) -> None:
        bench["screening"] = [r for r in bench["screening"] if (r["backend"], r["text_set"]) != ("ollama", "documents")]
        bench["screening"].append({"backend": "ollama", "text_set": "documents", "flaky": [], "calls": 1,
                                   "texts": size, "failures": [{"backend": "ollama", "text_set": "documents", "index": i,
                                                                "error": error, "http_status": 500}
                                                               for i in range(size)]})

    ollama_fails_every_document("Ollama at http://h answered HTTP 500: embedding contains NaN or Inf values")
    assert uncompared_sets(bench, {"short", "long"}, "ollama", "native-fp16") == ([], ["documents"])
    # The same for every text, but an error no per-text cause explains: the runner died, not the texts.
    ollama_fails_every_document("Ollama at http://h answered HTTP 500: llama runner process has terminated")
    gaps, findings = uncompared_sets(bench, {"short", "long"}, "ollama", "native-fp16")
    assert findings == [] and "a server failure, check its log and re-run" in gaps[0]


def test_only_a_bge_m3_shaped_native_model_can_answer_the_ticket():
    """Review: the smoke model (or any --model override that is not bge-m3) must not decide TD-073."""
    import json

    from bench.analyse.comparison import decision_inputs, shape_differences
    from bench.measure.standin_model import published

    bge = published()["files"]["config.json"]
    assert shape_differences(bge) == ""
    assert shape_differences({**bge, "_name_or_path": "my-finetune", "torch_dtype": "float16"}) == ""  # a fine-tune
    minilm = {"model_type": "bert", "num_hidden_layers": 6, "hidden_size": 384, "num_attention_heads": 12,
              "intermediate_size": 1536, "vocab_size": 30522}
    assert shape_differences(minilm).startswith("model_type bert instead of xlm-roberta, num_hidden_layers 6")
    assert shape_differences({}) == "its config was not recorded"

    results = Path(__file__).parent / "fixtures" / "results" / "conditional"
    probe, bench = (json.loads((results / f).read_text()) for f in ("probe.json", "bench.json"))
    assert decide(decision_inputs(probe, bench)[0]).outcome is Outcome.CONDITIONAL
    bench["environment"]["model_config"] = minilm
    inputs = decision_inputs(probe, bench)[0]
    assert any("not bge-m3-shaped" in m for m in inputs.missing)
    assert decide(inputs).outcome is Outcome.INCONCLUSIVE


def test_each_sides_spread_reaches_the_settle_estimate():
    """The passes-to-settle sentence uses each side's own spread across passes, not a shared one."""
    import json

    import numpy as np

    from bench.analyse.comparison import choose_pair, speed_comparisons
    from bench.analyse.figures import set_figures

    bench = json.loads((Path(__file__).parent / "fixtures" / "results" / "conditional" / "bench.json").read_text())
    control, treatment = choose_pair(bench)
    throughput, _ = speed_comparisons(bench, control, treatment)
    for c in throughput:
        native = set_figures(bench, treatment, c.text_set).best_throughput.pass_rates
        ollama = set_figures(bench, control, c.text_set).best_throughput.pass_rates
        assert c.sd_logs == pytest.approx((np.std(np.log(native), ddof=1), np.std(np.log(ollama), ddof=1)))
    wide = replace(throughput[0], ratio=2.3, ci95_low=1.8, ci95_high=2.9, passes=(3, 3))
    lopsided = read_set(replace(wide, sd_logs=(0.2, 0.02))).settle
    alike = read_set(replace(wide, sd_logs=None)).settle
    assert lopsided != alike  # the spreads, not only the CI, decide how many passes
