"""Texts two backends embedded at different lengths: found from their own per-text token
counts, reported as truncation, and kept out of the engine-agreement figures."""

from __future__ import annotations

import math

import pytest

from bench.analyse.comparison import quality_issues_for, truncation_issues
from bench.analyse.lengths import length_mismatch, same_length_agreement

# Five texts of a 'long' set: the tokenizer counts; native stops at 256, llama.cpp embeds up to 512.
EXPECTED = (120, 387, 300, 60, 255)


def truncation(backend, reported, limit):
    cut = tuple(i for i, (want, got) in enumerate(zip(EXPECTED, reported)) if got is not None and got < want - 2)
    return {"backend": backend, "text_set": "long", "limit": limit, "limit_source": "test",
            "expected_tokens": list(EXPECTED), "reported_tokens": list(reported), "truncated": list(cut)}


def bench_with(native_reported, other_reported, cosines):
    return {
        "workload": {"sets": [{"name": "long", "token_counts": list(EXPECTED)}]},
        "truncation": [truncation("native-fp32", native_reported, 256), truncation("openai", other_reported, 512)],
        "quality": [{"control": "native-fp32", "treatment": "openai", "text_set": "long",
                     "cosine": {"count": len(cosines), "mean": sum(cosines) / len(cosines), "min": min(cosines),
                                "p1": min(cosines)},
                     "spearman": {"rho": 0.9, "n_pairs": 10}, "neighbours": {"mean": 0.6, "k": 4},
                     "nonfinite_control": [], "nonfinite_treatment": [], "per_text_cosine": list(cosines)}],
    }


NATIVE = (120, 256, 256, 60, 255)  # cut the 387- and 300-token texts at 256
LLAMA = (120, 387, 300, 61, 255)  # whole; one special token more on one text (within the slack)
COSINES = (0.99999, 0.7743, 0.86, 0.99998, 0.99997)


def test_mismatch_names_the_texts_and_each_sides_tokens():
    m = length_mismatch(bench_with(NATIVE, LLAMA, COSINES), "native-fp32", "openai", "long")
    assert m.compared == 5 and m.indices == (1, 2)
    assert m.a_tokens == (256, 256) and m.b_tokens == (387, 300)
    assert m.describe() == ("'long': 2 of 5 texts embedded at different lengths "
                            "(native-fp32 256 tokens, openai 300–387)")


def test_no_mismatch_at_the_same_limit_and_unknown_without_per_text_counts():
    bench = bench_with(NATIVE, NATIVE, COSINES)
    assert length_mismatch(bench, "native-fp32", "openai", "long").indices == ()
    bench = bench_with(NATIVE, (None,) * 5, COSINES)
    assert length_mismatch(bench, "native-fp32", "openai", "long") is None


def test_counts_that_differ_while_neither_side_cut_are_a_tokenizer_difference_kept_in_the_cosine():
    """Review: half-width katakana gives llama.cpp fewer tokens than transformers, though neither
    cut the text; calling that 'different lengths' would hide a real disagreement from the cosine."""
    retokenised = (120, 387, 300, 52, 255)  # text 3: 8 tokens fewer than the workload's 60, not cut
    whole = (120, 387, 300, 60, 255)
    bench = bench_with(whole, retokenised, (0.99999, 0.99998, 0.99997, 0.36, 0.99996))
    assert length_mismatch(bench, "native-fp32", "openai", "long").indices == ()
    figures = same_length_agreement(bench, bench["quality"][0])
    assert figures.left_out == 0 and figures.cosine["min"] == 0.36  # the disagreement stays visible


def test_a_cut_ends_at_the_backends_ceiling_a_shorter_count_elsewhere_is_no_cut():
    from bench.measure.throughput import cut_indices

    assert cut_indices(EXPECTED, (120, 256, 256, 52, 255)) == (1, 2)  # 52 of 60: tokenised differently
    assert cut_indices(EXPECTED, (120, 2048, 2048, 60, None)) == ()  # nothing short of its count
    assert cut_indices((3000, 2500, 1000), (2048, 2048, 1000)) == (0, 1)  # Ollama's num_batch cut


def test_both_cut_at_different_limits_is_a_truncation_issue():
    """The old rule (texts cut by one side only) missed this: both cut the 387-token text."""
    both_cut = (120, 128, 128, 60, 128)
    bench = bench_with(NATIVE, both_cut, COSINES)
    assert len(bench["truncation"][0]["truncated"]) == 2 and len(bench["truncation"][1]["truncated"]) == 3
    issues = truncation_issues(bench, "native-fp32", "openai")
    assert issues == ["'long': 3 of 5 texts embedded at different lengths (native-fp32 255–256 tokens, openai 128)"]


def test_agreement_leaves_the_other_lengths_out():
    bench = bench_with(NATIVE, LLAMA, COSINES)
    figures = same_length_agreement(bench, bench["quality"][0])
    assert figures.left_out == 2
    assert figures.cosine["count"] == 3
    assert math.isclose(figures.cosine["min"], 0.99997)
    assert math.isclose(figures.cosine["mean"], (0.99999 + 0.99998 + 0.99997) / 3)
    assert figures.spearman == {} and figures.neighbours == {}


def test_low_cosine_from_lengths_is_not_an_engine_disagreement():
    bench = bench_with(NATIVE, LLAMA, COSINES)
    ok, issues = quality_issues_for(bench, "native-fp32", "openai")
    assert ok and issues == []
    assert truncation_issues(bench, "native-fp32", "openai")  # reported there instead
    # At the same lengths the same low cosine is a real disagreement and is reported.
    same = bench_with(LLAMA, LLAMA, COSINES)
    ok, issues = quality_issues_for(same, "native-fp32", "openai")
    assert not ok and "cosine openai vs native-fp32 on 'long'" in issues[0]


def test_a_low_cosine_among_same_length_texts_still_counts():
    cosines = (0.95, 0.7743, 0.86, 0.99998, 0.99997)  # text 0: same length, low cosine
    ok, issues = quality_issues_for(bench_with(NATIVE, LLAMA, cosines), "native-fp32", "openai")
    assert not ok
    assert "2 texts embedded at different lengths left out" in issues[0]


@pytest.mark.slow
def test_max_seq_length_reaches_the_native_backend(tmp_path, small_model_path):
    """`bench run --max-seq-length N`: native embeds at most N tokens, and says so per text."""
    import asyncio
    from dataclasses import replace

    from bench.config import PROFILES, BenchConfig
    from bench.measure.runner import run_bench

    profile = replace(PROFILES["smoke"], model=small_model_path, set_sizes={"long": 2}, warmup_calls=1,
                      single_latency_calls=1, batch_latency_repeats=1, batch_sizes=(1,), concurrency_levels=(),
                      quality_pairs=1, token_budgets=())
    config = BenchConfig(profile=profile, backends=("native-fp32",), results_dir=tmp_path,
                         ollama_host="http://127.0.0.1:9", timeout_s=5.0, device="cpu", max_seq_length=128)
    state = asyncio.run(run_bench(config))
    record = state.truncation[0]
    assert state.backends["native-fp32"].description["max_seq_length"] == 128
    assert record.limit == 128 and max(record.reported_tokens) == 128 and len(record.truncated) == 2
