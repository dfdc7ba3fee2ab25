"""Which two backends the decision compares (the fastest Ollama one against the fastest native
one whose vectors match it) and everything the decision is given about them: speed per text set,
quality, truncation, per-text failures, placement. Pure functions over probe.json and bench.json."""

from __future__ import annotations

import math
from typing import Any

from bench.analyse.decision import (
    COSINE_MEAN_MIN,
    COSINE_P1_MIN,
    MIGRATION_SPEEDUP,
    NEIGHBOUR_AGREEMENT_MIN,
    DecisionInputs,
    SpeedComparison,
)
from bench.analyse.figures import backend_names, set_figures, text_set_names
from bench.analyse.lengths import length_mismatch, same_length_agreement
from bench.analyse.stats import geometric_mean, ratio_of_few, ratio_with_spread
from bench.measure.standin_model import recorded_weights_label
from probe.view import FIGURE_DIGITS, format_value


def backend_kind(bench: dict[str, Any], name: str) -> str | None:
    """'ollama' or 'native', as the backend described itself."""
    record = bench["backends"].get(name) or {}
    return (record.get("description") or {}).get("kind")


def measured_backends(bench: dict[str, Any], kind: str) -> list[str]:
    """Backends of a kind that loaded and have at least one successful sample."""
    names = []
    for name in backend_names(bench):
        record = bench["backends"].get(name)
        if record is None or record.get("error") or backend_kind(bench, name) != kind:
            continue
        if any(s["ok"] for m in bench["measurements"] if m["backend"] == name for s in m["samples"]):
            names.append(name)
    return names


def quality_record(bench: dict[str, Any], a: str, b: str, text_set: str) -> dict[str, Any] | None:
    for q in bench["quality"]:
        if {q["control"], q["treatment"]} == {a, b} and q["text_set"] == text_set:
            return q
    return None


def quality_issues_for(bench: dict[str, Any], control: str, treatment: str) -> tuple[bool | None, list[str]]:
    """Does `treatment` reproduce `control`'s vectors on every text set, by the stated thresholds?"""
    issues, compared = [], 0
    for text_set in text_set_names(bench):
        q = quality_record(bench, control, treatment, text_set)
        if q is None:
            continue
        compared += 1
        # Texts embedded at different lengths are a truncation finding (truncation_issues), not
        # an engine disagreement: the cosine bar applies to the texts both embedded alike.
        figures = same_length_agreement(bench, q)
        cos, nb, left_out = figures.cosine, figures.neighbours, figures.left_out
        mean, p1, agree = as_finite_number(cos.get("mean")), as_finite_number(cos.get("p1")), as_finite_number(nb.get("mean"))
        if q["nonfinite_control"] or q["nonfinite_treatment"]:
            issues.append(f"non-finite vectors on '{text_set}': {control} {len(q['nonfinite_control'])}, "
                          f"{treatment} {len(q['nonfinite_treatment'])}")
        judged = cos.get("count") or not left_out  # all texts at other lengths: nothing to judge
        if judged and (mean is None or mean < COSINE_MEAN_MIN or p1 is None or p1 < COSINE_P1_MIN):
            issues.append(f"cosine {treatment} vs {control} on '{text_set}': mean {format_value(mean)}, "
                          f"p1 {format_value(p1)} (need mean >= {COSINE_MEAN_MIN}, p1 >= {COSINE_P1_MIN})"
                          + (f", {left_out} texts embedded at different lengths left out" if left_out else ""))
        if nb and (agree is None or agree < NEIGHBOUR_AGREEMENT_MIN):  # {}: set too small to rank
            issues.append(f"top-10 neighbour agreement on '{text_set}': {format_value(agree)} "
                          f"(need >= {NEIGHBOUR_AGREEMENT_MIN})")
    return (None if compared == 0 else not issues), issues


def as_finite_number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)  # "NaN"/"Infinity" strings from JSON included
    return number if math.isfinite(number) else None


def speed_comparisons(bench: dict[str, Any], control: str, treatment: str, probe: dict[str, Any] | None = None
                      ) -> tuple[list[SpeedComparison], list[SpeedComparison]]:
    """(throughput, latency): native vs Ollama per text set. Throughput at each side's best
    setting, its CI across whole passes; single-text latency p50, its CI across calls, read
    against the set's physical floor (bench/analyse/roofline.py) where the probe measured the ceilings."""
    from bench.analyse.roofline import single_text_floors, single_text_rows

    throughput, latency = [], []
    screening = bench.get("screening", [])
    floors = {f.text_set: f for f in single_text_floors(single_text_rows(bench, probe))}
    for text_set in text_set_names(bench):
        c, t = set_figures(bench, control, text_set), set_figures(bench, treatment, text_set)
        cb, tb = c.best_throughput, t.best_throughput
        if cb and tb:
            # Geometric means of the fresh passes with Welch's interval; one pass a side: the point only.
            spread = (ratio_of_few(tb.pass_rates, cb.pass_rates)
                      if min(len(tb.pass_rates), len(cb.pass_rates)) >= 2 else None)
            # The figures shown are the ones the ratio is made of: geometric means of the deciding passes.
            rate_t, rate_c = geometric_mean(tb.pass_rates), geometric_mean(cb.pass_rates)
            throughput.append(SpeedComparison(
                text_set, "throughput (best setting)", spread.ratio if spread else rate_t / rate_c,
                spread.ci95_low if spread else None, spread.ci95_high if spread else None,
                f"{format_value(rate_t, FIGURE_DIGITS)} vs {format_value(rate_c, FIGURE_DIGITS)} texts/s "
                f"(geometric means of {tb.passes} vs {cb.passes} passes), {tb.label} vs {cb.label}, "
                + _texts_compared(screening, control, treatment, text_set, tb.texts + tb.excluded),
                (tb.passes, cb.passes),
                (spread.sd_log_numerator, spread.sd_log_denominator) if spread and spread.ci95_low else None))
        if c.single_samples_ms and t.single_samples_ms:
            r = ratio_with_spread(c.single_samples_ms, t.single_samples_ms)
            latency.append(SpeedComparison(
                text_set, "single-text latency p50", r.ratio, r.ci95_low, r.ci95_high,
                f"p50 {format_value(r.treatment_median, FIGURE_DIGITS)} vs "
                f"{format_value(r.control_median, FIGURE_DIGITS)} ms, "
                f"n={r.n_treatment}, {r.n_control}" + _floor_note(floors.get(text_set), control, treatment),
                (r.n_treatment, r.n_control)))
    return throughput, latency


def _floor_note(floor, control: str, treatment: str) -> str:
    """How far above the set's single-text floor each side sits, and whether 2× is out of reach."""
    if floor is None:
        return "; floor not available (no model config or no measured ceilings)"
    native, ollama = floor.multiple_of(treatment), floor.multiple_of(control)
    note = (f"; floor {format_value(floor.floor_ms, FIGURE_DIGITS)} ms ({floor.bound}-bound): native "
            f"{format_value(native, FIGURE_DIGITS)}×, Ollama {format_value(ollama, FIGURE_DIGITS)}× the floor")
    if any(m is not None and m < 1 for m in (native, ollama)):
        # Nothing runs below a real floor: the probe's ceilings were measured low (other load).
        return note + ", below the floor: the probe's ceilings are too low to judge this (re-run the probe)"
    if floor.speedup_out_of_reach(control, MIGRATION_SPEEDUP):
        note += f", so a {MIGRATION_SPEEDUP:g}× speed-up on this metric is out of reach for any backend here"
    return note


def _texts_compared(screening: list[dict[str, Any]], control: str, treatment: str, text_set: str,
                    set_size: int) -> str:
    from bench.analyse.figures import excluded_for

    left_out_c = set(excluded_for(screening, control, text_set))
    left_out_t = set(excluded_for(screening, treatment, text_set))
    if left_out_c == left_out_t:
        return f"{set_size - len(left_out_c)} of {set_size} texts, the same on both sides"
    return (f"native on {set_size - len(left_out_t)}, Ollama on {set_size - len(left_out_c)} of {set_size} texts "
            "(different subsets: the backend that ran first could not embed some texts)")


def text_failure_lines(bench: dict[str, Any], backend: str, other: str | None) -> list[str]:
    """Per set, in words: how many texts `backend` could not embed, the error, and whether `other` could."""
    from bench.analyse.figures import text_failures

    lines = []
    for text_set in text_set_names(bench):
        failed = text_failures(bench, backend, text_set)
        if not failed:
            continue
        size = len(next(s for s in bench["workload"]["sets"] if s["name"] == text_set)["token_counts"])
        errors: dict[str, int] = {}
        for f in failed:
            status = f" (HTTP {f['http_status']})" if f.get("http_status") and \
                f"HTTP {f['http_status']}" not in f["error"] else ""
            errors[f["error"] + status] = errors.get(f["error"] + status, 0) + 1
        common = max(errors, key=errors.get)
        more = f"; {len(errors) - 1} other error text(s)" if len(errors) > 1 else ""
        line = f"{backend} could not embed {len(failed)} of {size} {text_set} texts: {common}{more}"
        if other is not None:
            other_failed = {f["index"] for f in text_failures(bench, other, text_set)}
            both = len(other_failed & {f["index"] for f in failed})
            if both == 0:
                line += f"; {other} embeds " + ("it" if len(failed) == 1 else f"all {len(failed)}")
            else:
                line += f"; {other} also fails {both} of them"
        lines.append(line)
    return lines


def mean_best_throughput(bench: dict[str, Any], name: str) -> float:
    rates = [f.best_throughput.texts_per_s for f in (set_figures(bench, name, s) for s in text_set_names(bench))
             if f.best_throughput]
    return sum(rates) / len(rates) if rates else 0.0


def choose_pair(bench: dict[str, Any]) -> tuple[str | None, str | None]:
    """Control: the fastest Ollama backend (the fair baseline). Treatment: the fastest native
    backend whose vectors match the control, else the fastest native backend."""
    ollama = sorted(measured_backends(bench, "ollama"), key=lambda n: -mean_best_throughput(bench, n))
    native = sorted(measured_backends(bench, "native"), key=lambda n: -mean_best_throughput(bench, n))
    control = ollama[0] if ollama else None
    if control is None or not native:
        return control, native[0] if native else None
    matching = [n for n in native if quality_issues_for(bench, control, n)[0]]
    return control, (matching or native)[0]


def truncation_issues(bench: dict[str, Any], control: str | None, treatment: str | None) -> list[str]:
    """Texts the two sides embedded at different lengths (one cut and the other did not, or both
    cut at different limits), by each side's own per-text count; where a side reports no
    per-text counts, texts one side cut and the other did not."""
    cut = {(t["backend"], t["text_set"]): set(t["truncated"]) for t in bench["truncation"]}
    issues = []
    for text_set in text_set_names(bench):
        a, b = cut.get((control, text_set)), cut.get((treatment, text_set))
        if a is None or b is None:
            continue
        mismatch = length_mismatch(bench, control, treatment, text_set)
        if mismatch is not None:
            if mismatch.indices:
                issues.append(mismatch.describe())
        elif a != b:
            issues.append(f"'{text_set}': {control} cut {len(a)} texts, {treatment} cut {len(b)} "
                          f"({len(a ^ b)} differ)")
    return issues


def decision_inputs(probe: dict[str, Any] | None, bench: dict[str, Any]) -> tuple[DecisionInputs, str | None, str | None]:
    control, treatment = choose_pair(bench)
    missing = []
    if control is None:
        missing.append("the Ollama side was not measured"
                       + _failure_hint(bench, "ollama"))
    if treatment is None:
        missing.append("the native side was not measured" + _failure_hint(bench, "native"))
    not_bge_m3 = shape_differences(bench["environment"].get("model_config") or {})
    if not_bge_m3:
        missing.append(f"the native model is not bge-m3-shaped ({not_bge_m3}): this run checks the tool and cannot "
                       "answer TD-073 about bge-m3; run the td073 profile with bge-m3 or a fine-tune of it")
    random_weights = recorded_weights_label(bench)
    if random_weights:
        missing.append(f"{random_weights} — the native model is a stand-in with seeded random weights "
                       f"({bench['config']['model_weights']['source']}), not BAAI/bge-m3, so its vectors "
                       "cannot answer the quality question and no migration can follow from this run")
    quality_ok, quality_problems = (None, [])
    throughput: list[SpeedComparison] = []
    latency: list[SpeedComparison] = []
    without_comparison: list[str] = []
    if control and treatment:
        quality_ok, quality_problems = quality_issues_for(bench, control, treatment)
        throughput, latency = speed_comparisons(bench, control, treatment, probe)
        gaps, without_comparison = uncompared_sets(bench, {c.text_set for c in throughput}, control, treatment)
        missing += gaps
    overall = (probe or {}).get("overall", {})
    native_device = _description(bench, treatment).get("device") if treatment else None
    inputs = DecisionInputs(
        probe_status=overall.get("status") if probe else None,
        probe_target_probed=bool(overall.get("target_probed")),
        probe_reason=overall.get("reason", ""),
        probe_failed_checks=tuple(c["name"] for c in (probe or {}).get("checks", []) if c.get("status") == "fail"),
        workarounds=tuple(overall.get("workarounds", ())),
        bench_complete=bench["status"] == "complete",
        native_device=native_device,
        missing=tuple(missing),
        throughput=tuple(throughput),
        latency=tuple(latency),
        quality_ok=quality_ok,
        quality_issues=tuple(quality_problems),
        truncation_issues=tuple(truncation_issues(bench, control, treatment)),
        ollama_placement=_description(bench, control).get("offload") if control else "gpu",
        ollama_text_failures=tuple(text_failure_lines(bench, control, treatment)) if control else (),
        native_text_failures=tuple(text_failure_lines(bench, treatment, control)) if treatment else (),
        ollama_only_failures=ollama_only_failures(bench, control, treatment) if control and treatment else 0,
        ollama_call_failures=tuple(call_failure_lines(bench, control)) if control else (),
        native_call_failures=tuple(call_failure_lines(bench, treatment)) if treatment else (),
        memory_notes=tuple(line for b in (control, treatment) if b for line in call_failure_lines(bench, b, memory=True)),
        sets_without_comparison=tuple(without_comparison),
    )
    return inputs, control, treatment


def uncompared_sets(bench: dict[str, Any], compared: set[str], control: str, treatment: str
                    ) -> tuple[list[str], list[str]]:
    """(gaps, findings) for the text sets without a throughput comparison. A set one side could
    embed none of is a finding (Ollama) or an issue (native), which text_failure_lines names --
    but when Ollama failed every text with an error no known per-text cause explains (a runner
    that died, not the texts), the set is a gap: missing evidence, as for a server that is down."""
    from bench.analyse.field_knowledge import known_per_text_error
    from bench.analyse.figures import text_failures

    gaps, findings = [], []
    for s in bench["workload"]["sets"]:
        name, size = s["name"], len(s["token_counts"])
        if name in compared:
            continue
        failed = {b: text_failures(bench, b, name) for b in (control, treatment)}
        whole = [b for b in (control, treatment) if size and len(failed[b]) == size]
        unexplained = control in whole and not all(known_per_text_error(f["error"]) for f in failed[control])
        if whole and not unexplained:
            findings.append(name)
            continue
        if unexplained:
            why = (f"{control} failed every text with an error no known per-text cause explains, "
                   f"{failed[control][0]['error']}: a server failure, check its log and re-run")
        else:
            why = next((f["error"] for f in bench["failures"]
                        if f.get("text_set") == name and f["backend"] in (control, treatment)),
                       "no complete throughput pass on one side")
        gaps.append(f"no throughput comparison on '{name}' ({why})")
    return gaps, findings


def call_failure_lines(bench: dict[str, Any], backend: str, memory: bool = False) -> list[str]:
    """Timed calls that failed where the decision does not read them (a batch size, a token
    budget, batch latency, concurrency): the backend stays measured, and this says what failed.
    memory=False: failures for any other reason than memory; True: the out-of-memory ones, a
    capacity note (a batch of 100 documents in one forward pass, say), not a defect."""
    from probe.failures import failure_cause

    return [f"{backend} failed calls on '{f['text_set']}' ({f['scenario'].strip()}): {f['error']}"
            for f in bench["failures"] if f["backend"] == backend and f.get("kind") == "calls"
            and (failure_cause(f["error"]) == "resource") == memory]


def ollama_only_failures(bench: dict[str, Any], control: str, treatment: str) -> int:
    """Texts the Ollama side could not embed that the native side embedded, over all sets."""
    from bench.analyse.figures import text_failures

    return sum(len({f["index"] for f in text_failures(bench, control, name)}
                   - {f["index"] for f in text_failures(bench, treatment, name)})
               for name in text_set_names(bench))


# What makes a model bge-m3-shaped (a fine-tune of it keeps all of these); from its published config.
BGE_M3_SHAPE_KEYS = ("model_type", "num_hidden_layers", "hidden_size", "num_attention_heads", "intermediate_size",
                     "vocab_size")


def shape_differences(model_config: dict[str, Any]) -> str:
    """'' when the recorded native model config has bge-m3's architecture, else what differs, in words."""
    from bench.measure.standin_model import published

    if not model_config:
        return "its config was not recorded"
    if "error" in model_config:
        return f"its config could not be read: {model_config['error']}"
    bge = published()["files"]["config.json"]
    return ", ".join(f"{key} {model_config.get(key)} instead of {bge[key]}" for key in BGE_M3_SHAPE_KEYS
                     if model_config.get(key) != bge[key])


def _description(bench: dict[str, Any], backend: str | None) -> dict[str, Any]:
    return ((bench["backends"].get(backend) or {}).get("description") or {}) if backend else {}


def _failure_hint(bench: dict[str, Any], kind: str) -> str:
    errors = [rec["error"] for name, rec in bench["backends"].items()
              if rec.get("error") and backend_kind(bench, name) == kind]
    return f" ({errors[0]})" if errors else ""
