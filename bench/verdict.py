"""From probe.json and bench.json to the decision and the one context object the
verdict templates render. All Markdown lives in templates/verdict/."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analysis import SetFigures, all_figures, backend_names, set_figures, text_set_names
from bench.decision import (
    COSINE_MEAN_MIN,
    COSINE_P1_MIN,
    MIGRATION_SPEEDUP,
    NEIGHBOUR_AGREEMENT_MIN,
    RULES,
    Decision,
    DecisionInputs,
    Outcome,
    SpeedComparison,
    decide,
)
from bench.backends.ollama import OLLAMA_EMBEDDING_CHANGES
from bench.lengths import length_mismatch, same_length_agreement
from bench.roofline_view import RooflineView, roofline_view
from bench.standin_model import recorded_weights_label
from bench.stats import ratio_of_few, ratio_with_spread
from probe.view import Column, Table, format_value, make_table

VERDICT_MD = "verdict.md"
FOLLOW_UP_MD = "TD-follow-up.md"
MIB = 1024 * 1024


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
        mean, p1, agree = _num(cos.get("mean")), _num(cos.get("p1")), _num(nb.get("mean"))
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


def _num(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)  # "NaN"/"Infinity" strings from JSON included
    return number if math.isfinite(number) else None


def speed_comparisons(bench: dict[str, Any], control: str, treatment: str, probe: dict[str, Any] | None = None
                      ) -> tuple[list[SpeedComparison], list[SpeedComparison]]:
    """(throughput, latency): native vs Ollama per text set. Throughput at each side's best
    setting, its CI across whole passes; single-text latency p50, its CI across calls, read
    against the set's physical floor (bench/roofline.py) where the probe measured the ceilings."""
    from bench.roofline import single_text_floors, single_text_rows

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
            throughput.append(SpeedComparison(
                text_set, "throughput (best setting)", spread.ratio if spread else tb.texts_per_s / cb.texts_per_s,
                spread.ci95_low if spread else None, spread.ci95_high if spread else None,
                f"{format_value(tb.texts_per_s, FIGURE_DIGITS)} vs {format_value(cb.texts_per_s, FIGURE_DIGITS)} "
                f"texts/s, "
                f"{tb.label} vs {cb.label}, {tb.passes} vs {cb.passes} passes, "
                + _texts_compared(screening, control, treatment, text_set, tb.texts + tb.excluded),
                (tb.passes, cb.passes)))
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
    if floor.speedup_out_of_reach(control, MIGRATION_SPEEDUP):
        note += f", so a {MIGRATION_SPEEDUP:g}× speed-up on this metric is out of reach for any backend here"
    return note


def _texts_compared(screening: list[dict[str, Any]], control: str, treatment: str, text_set: str,
                    set_size: int) -> str:
    from bench.analysis import excluded_for

    left_out_c = set(excluded_for(screening, control, text_set))
    left_out_t = set(excluded_for(screening, treatment, text_set))
    if left_out_c == left_out_t:
        return f"{set_size - len(left_out_c)} of {set_size} texts, the same on both sides"
    return (f"native on {set_size - len(left_out_t)}, Ollama on {set_size - len(left_out_c)} of {set_size} texts "
            "(different subsets: the backend that ran first could not embed some texts)")


def text_failure_lines(bench: dict[str, Any], backend: str, other: str | None) -> list[str]:
    """Per set, in words: how many texts `backend` could not embed, the error, and whether `other` could."""
    from bench.analysis import text_failures

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
    random_weights = recorded_weights_label(bench)
    if random_weights:
        missing.append(f"{random_weights} — the native model is a stand-in with seeded random weights "
                       f"({bench['config']['model_weights']['source']}), not BAAI/bge-m3, so its vectors "
                       "cannot answer the quality question and no migration can follow from this run")
    quality_ok, quality_problems = (None, [])
    throughput: list[SpeedComparison] = []
    latency: list[SpeedComparison] = []
    if control and treatment:
        quality_ok, quality_problems = quality_issues_for(bench, control, treatment)
        throughput, latency = speed_comparisons(bench, control, treatment, probe)
        missing += uncompared_sets(bench, {c.text_set for c in throughput}, control, treatment)
    overall = (probe or {}).get("overall", {})
    native_device = _description(bench, treatment).get("device") if treatment else None
    inputs = DecisionInputs(
        probe_status=overall.get("status") if probe else None,
        probe_target_probed=bool(overall.get("target_probed")),
        probe_reason=overall.get("reason", ""),
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
    )
    return inputs, control, treatment


def uncompared_sets(bench: dict[str, Any], compared: set[str], control: str, treatment: str) -> list[str]:
    """A text set without a throughput comparison is missing evidence -- unless one side could
    embed none of its texts, which text_failure_lines names as a finding or an issue."""
    from bench.analysis import text_failures

    gaps = []
    for s in bench["workload"]["sets"]:
        if s["name"] in compared:
            continue
        size = len(s["token_counts"])
        if any(size and len(text_failures(bench, b, s["name"])) == size for b in (control, treatment)):
            continue
        why = next((f["error"] for f in bench["failures"] if f.get("text_set") == s["name"]
                    and f["backend"] in (control, treatment)), "no complete throughput pass on one side")
        gaps.append(f"no throughput comparison on '{s['name']}' ({why})")
    return gaps


def _description(bench: dict[str, Any], backend: str | None) -> dict[str, Any]:
    return ((bench["backends"].get(backend) or {}).get("description") or {}) if backend else {}


def _failure_hint(bench: dict[str, Any], kind: str) -> str:
    errors = [rec["error"] for name, rec in bench["backends"].items()
              if rec.get("error") and backend_kind(bench, name) == kind]
    return f" ({errors[0]})" if errors else ""


# ---------------------------------------------------------------- the template context


@dataclass(frozen=True)
class ChecklistItem:
    section: str
    item: str
    key: str
    measured: bool
    evidence: str


@dataclass(frozen=True)
class VerdictContext:
    """The one object every verdict template reads (as `ctx`)."""

    outcome: str
    outcome_is_migration: bool
    weights_label: str | None  # "random weights: speed and memory only" for a stand-in model, else None
    reasons: tuple[str, ...]
    control: str | None
    treatment: str | None
    rules: tuple[tuple[str, str], ...]  # (name, rule) from bench.decision.RULES
    quality_rule: str
    speed: Table
    borderline: bool
    other_servers: Table  # servers beside the ticket's two sides (bench/other_servers.py), never decisive
    other_server_lines: tuple[str, ...]
    created_at: str
    bench_status: str
    profile: str
    environment: Table
    probe_overall: str
    probe_reason: str
    probe_checks: Table
    workarounds: tuple[str, ...]
    single: Table
    batch: Table
    throughput: Table
    concurrency: Table
    load: Table
    memory: Table
    overhead: Table
    roofline: RooflineView
    quality: Table
    retrieval: Table
    truncation: Table
    text_failures: Table
    known_issues: Table  # field reports (bench/data/field_knowledge.json) that match this run
    length_notes: tuple[str, ...]  # pairs that embedded some texts at different lengths, in words
    failures: Table
    nonfinite: tuple[str, ...]  # "backend on 'set': k of n vectors contain NaN or inf (...)"
    workload: Table
    checklist: tuple[tuple[str, tuple[ChecklistItem, ...]], ...]  # (section, items) in the ticket's order
    next_steps: tuple[str, ...]
    plots: tuple[tuple[str, str], ...]  # (title, file name next to verdict.md)
    native_facts: tuple[tuple[str, str], ...]
    ollama_embedding_changes: tuple[str, ...]  # Ollama versions whose embedding behaviour changed


# Significant digits of measured figures (timings, rates, sizes): noise lives past the third.
# Agreement figures are read against thresholds such as 0.99, so they keep four.
FIGURE_DIGITS = 3
AGREEMENT_DIGITS = 4


def _plain(*headers: str) -> tuple[Column, ...]:
    """Columns of text and counts: shown as they are (integers with grouped thousands)."""
    return tuple(Column(h) for h in headers)


def _figures(*headers: str, digits: int = FIGURE_DIGITS) -> tuple[Column, ...]:
    return tuple(Column(h, digits) for h in headers)


def _times(ratio: float) -> str:
    return f"{format_value(ratio, FIGURE_DIGITS)}×"


def _range(summary, digits: int = FIGURE_DIGITS) -> str:
    return f"{format_value(summary.min, digits)}–{format_value(summary.max, digits)} (n={summary.count})"


def _ms(summary) -> tuple[Any, ...]:
    return (summary.count, summary.failures, summary.p50, summary.p95, summary.p99, summary.mean, summary.stdev)


def performance_tables(bench: dict[str, Any]) -> dict[str, Table]:
    figures: list[SetFigures] = list(all_figures(bench))
    single = [(f.backend, f.text_set, *_ms(f.single_ms)) for f in figures if f.single_ms]
    batch = [(f.backend, f.text_set, f.batch_size, f.batch_ms.count, f.batch_ms.failures, f.batch_ms.p50,
              f.batch_ms.min, f.batch_ms.max) for f in figures if f.batch_ms]
    throughput = []
    for f in figures:
        best = f.best_throughput
        for p in f.throughput:
            throughput.append((f.backend, f.text_set, p.label, p.texts, p.texts_per_s, p.tokens_per_s,
                               _range(p.per_batch_texts_per_s), p.failures, "best" if best is p else ""))
    concurrency = [(f.backend, f.text_set, c.callers, c.requests, c.latency_ms.failures, c.requests_per_s,
                    c.latency_ms.p50, c.latency_ms.p95) for f in figures for c in f.concurrency]
    overhead = [(f.backend, f.text_set, f.wrapper_overhead_ms.count, f.wrapper_overhead_ms.p50,
                 f.wrapper_overhead_ms.p95) for f in figures if f.wrapper_overhead_ms]
    return {
        "single": make_table("Single-text latency", (
            *_plain("backend", "set", "n", "failed"),
            *_figures("p50 (ms)", "p95 (ms)", "p99 (ms)", "mean (ms)", "stdev (ms)")), single),
        "batch": make_table("Batch latency", (
            *_plain("backend", "set", "batch (texts)", "n", "failed"), *_figures("p50 (ms)", "min (ms)", "max (ms)")),
            batch),
        "throughput": make_table("Throughput over the whole set", (
            *_plain("backend", "set", "setting", "texts"), *_figures("texts/s", "tokens/s"),
            *_plain("per-batch texts/s min–max", "failed batches", "")), throughput),
        "concurrency": make_table("Concurrent async callers", (
            *_plain("backend", "set", "callers", "requests", "failed"), *_figures("req/s", "p50 (ms)", "p95 (ms)")),
            concurrency),
        "overhead": make_table("Wrapper overhead on sequential calls", (
            *_plain("backend", "set", "calls"), *_figures("p50 (ms)", "p95 (ms)")), overhead),
    }


def backend_tables(bench: dict[str, Any]) -> dict[str, Table]:
    load, memory = [], []
    for name in backend_names(bench):
        rec = bench["backends"].get(name)
        if not rec:
            continue
        if rec.get("load"):
            ld = rec["load"]
            load.append((name, ld["wall_s"], _cold_text(ld), ld.get("includes", "not recorded"),
                         _parts_text(ld.get("parts_s") or {}), ld.get("reported_load_s"), ld.get("reported_source")))
        for m in rec.get("memory", ()):
            value = None if m.get("bytes") is None else m["bytes"] / MIB
            memory.append((name, m["label"], value, MEMORY_SCOPE[m.get("attributable")], m["source"]))
    return {
        "load": make_table("Model load (one load each, n=1)", (
            *_plain("backend"), *_figures("wall (s)"),
            *_plain("cold", "what the figure includes", "measured beside it"),
            *_figures("backend-reported (s)"), *_plain("source")), load),
        "memory": make_table("Memory", (
            *_plain("backend", "figure"), *_figures("size (MiB)"), *_plain("scope", "source")), memory),
    }


MEMORY_SCOPE = {True: "this backend", False: "wider (secondary)", None: "not recorded"}


def attributable_memory(bench: dict[str, Any], names: list[str]) -> list[str]:
    """Those of `names` with at least one memory figure of their own (not a device- or system-wide delta)."""
    return [n for n in names if any(m.get("attributable") is True and m.get("bytes") is not None
                                    for m in (bench["backends"].get(n) or {}).get("memory", ()))]


def _cold_text(load: dict[str, Any]) -> str:
    cold = load.get("cold")
    if cold is None:
        return "not recorded"
    return "yes" if cold else f"no: {load.get('note') or 'warm'}"


def _parts_text(parts: dict[str, float]) -> str:
    """{"child_imports_s": 2.1} -> "child imports 2.1 s"."""
    return "; ".join(f"{name.removesuffix('_s').replace('_', ' ')} {format_value(value, FIGURE_DIGITS)} s"
                     for name, value in parts.items()) or "none"


def cold_loads(bench: dict[str, Any], names: list[str]) -> list[str]:
    """Those of `names` whose recorded load was a true cold load."""
    return [n for n in names if ((bench["backends"].get(n) or {}).get("load") or {}).get("cold") is True]


def quality_tables(bench: dict[str, Any]) -> dict[str, Any]:
    quality, length_notes = [], []
    for q in bench["quality"]:
        figures = same_length_agreement(bench, q)
        cos, sp, nb, left_out = figures.cosine, figures.spearman, figures.neighbours, figures.left_out
        quality.append((q["treatment"], q["control"], q["text_set"], cos.get("count"), left_out,
                        _num(cos.get("mean")), _num(cos.get("min")), _num(cos.get("p1")), _num(sp.get("rho")),
                        sp.get("n_pairs"), _num(nb.get("mean")), nb.get("k"),
                        len(q["nonfinite_control"]) + len(q["nonfinite_treatment"]), len(q.get("excluded", ()))))
        if left_out:
            mismatch = length_mismatch(bench, q["control"], q["treatment"], q["text_set"])
            cosines = [c for c in (_num(q["per_text_cosine"][i]) for i in mismatch.indices) if c is not None]
            low = min(cosines, default=None)
            length_notes.append(f"{q['treatment']} vs {q['control']} on {mismatch.describe()}: their cosine "
                                f"(down to {format_value(low, AGREEMENT_DIGITS)}) compares different inputs, so they "
                                "are left out of the cosine columns and reported under truncation")
    retrieval = [(r["backend"], r["dataset"], r["queries"], r["ndcg_at_10"], r["recall_at_10"]) for r in bench["retrieval"]]
    truncation = []
    for t in bench["truncation"]:
        reported = [x for x in t["reported_tokens"] if x is not None]
        truncation.append((t["backend"], t["text_set"], len(t["expected_tokens"]), max(t["expected_tokens"], default=0),
                           t["limit"], t["limit_source"], len(reported), len(t["truncated"])))
    return {
        "quality": make_table("Vector agreement", (
            *_plain("backend", "vs", "set", "texts", "texts at other lengths"),
            *_figures("cosine mean", "cosine min", "cosine p1", "Spearman rho", digits=AGREEMENT_DIGITS),
            *_plain("pairs"), *_figures("top-k agreement", digits=AGREEMENT_DIGITS),
            *_plain("k", "non-finite", "left out (not embedded)")), quality),
        "length_notes": tuple(length_notes),
        "retrieval": make_table("BEIR retrieval", (
            *_plain("backend", "dataset", "queries"), *_figures("nDCG@10", "Recall@10", digits=AGREEMENT_DIGITS)),
            retrieval),
        "truncation": make_table("Truncation (tokenizer count vs backend-reported count, per text)", _plain(
            "backend", "set", "texts", "max tokens in set", "limit (tokens)", "limit source",
            "texts with a reported count", "texts cut"), truncation),
    }


def environment_table(probe: dict[str, Any] | None, bench: dict[str, Any], control: str | None,
                      treatment: str | None) -> Table:
    facts = (probe or {}).get("facts", {})
    libs = bench["environment"].get("libraries", {})
    control_desc = ((bench["backends"].get(control) or {}).get("description") or {}) if control else {}
    native_desc = ((bench["backends"].get(treatment) or {}).get("description") or {}) if treatment else {}
    identity = bench["environment"].get("native_model") or {}
    profile, overrides = bench["config"].get("profile", {}), bench["config"].get("overrides")
    rows = [
        ("GPU", facts.get("device_name"), "probe facts (torch.cuda)"),
        ("compute capability", ".".join(map(str, facts["device_capability"])) if facts.get("device_capability")
         else None, "probe facts (torch.cuda.get_device_capability)"),
        ("driver", facts.get("driver_version"), "probe facts (NVML)"),
        ("CUDA (torch build)", facts.get("torch_cuda_version"), "probe facts (torch.version.cuda)"),
        ("torch", libs.get("torch"), "importlib.metadata"),
        ("sentence-transformers", libs.get("sentence-transformers"), "importlib.metadata"),
        ("transformers", libs.get("transformers"), "importlib.metadata"),
        ("native model", native_model_label(bench), identity.get("revision_source", "bench config (no revision)")),
        ("native model folder", identity.get("path") or bench["config"].get("resolved_model"),
         _given_by(overrides, "model", "--model")),
        ("native weights", _weights_text(bench), "bench config model_weights"),
        ("Ollama model requested", profile.get("ollama_model"), _given_by(overrides, "ollama_model", "--ollama-model")),
        ("text sets", ", ".join(f"{name} {size}" for name, size in (profile.get("set_sizes") or {}).items()),
         _given_by(overrides, "sizes", "--sizes")),
        ("native device / dtype", f"{native_desc.get('device')} / {native_desc.get('dtype')}" if native_desc else None,
         "native backend"),
        ("native fp32 matmul", _fp32_matmul_text(native_desc.get("float32_matmul")),
         "torch.get_float32_matmul_precision, allow_tf32 read-back, TF32 override variables"),
        ("Ollama server", control_desc.get("server_version"), "GET /api/version"),
        ("Ollama model / digest", f"{control_desc.get('model')} / {control_desc.get('digest')}" if control_desc else None,
         "GET /api/ps or /api/tags"),
        ("Ollama options", control_desc.get("options"), "sent with each request"),
        ("Ollama placement", control_desc.get("offload") or "not reported",
         "GET /api/ps size_vram vs size (gpu: all in VRAM)"),
    ]
    return make_table("Environment", _plain("what", "value", "source"), rows)


def native_model_label(bench: dict[str, Any]) -> str:
    """The native model as name @ revision (bench.json's native_model); the configured model for
    runs from before it was recorded."""
    from bench.model_source import ModelIdentity

    identity = bench["environment"].get("native_model")
    return ModelIdentity(**identity).label if identity else str(bench["config"].get("resolved_model"))


def _ci(c: SpeedComparison) -> str:
    return ("n/a (fewer than 2 per side)" if c.ci95_low is None
            else f"{format_value(c.ci95_low, FIGURE_DIGITS)}–{_times(c.ci95_high)}")


TEXT_EXCERPT_CHARS = 60


def text_failures_table(bench: dict[str, Any]) -> Table:
    """Every text a backend could not embed (screening), with the error and the start of the text."""
    texts = {s["name"]: s.get("texts") or [] for s in bench["workload"]["sets"]}
    rows = []
    for record in bench.get("screening", []):
        for f in record["failures"]:
            text = texts.get(f["text_set"], [])
            excerpt = text[f["index"]] if f["index"] < len(text) else ""
            excerpt = " ".join(excerpt.split())
            if len(excerpt) > TEXT_EXCERPT_CHARS:
                excerpt = excerpt[:TEXT_EXCERPT_CHARS] + "…"
            rows.append((f["backend"], f["text_set"], f["index"], f.get("http_status") or "",
                         f["error"].replace("|", "\\|"), excerpt.replace("|", "\\|")))
    return make_table("Texts a backend could not embed (each failed alone, twice)",
                      _plain("backend", "set", "text index", "HTTP status", "error", "text begins"), rows)


def known_issues_table(bench: dict[str, Any]) -> Table:
    from bench.field_knowledge import matches

    rows = [(m.issue.cause, ", ".join(m.issue.upstream), m.issue.fix, m.evidence, m.ollama_version or "not recorded")
            for m in matches(bench)]
    return make_table("Known causes (field reports matching this run)",
                      _plain("known cause", "upstream", "what changes it", "seen here", "Ollama version"), rows)


def _fp32_matmul_text(facts: dict[str, Any] | None) -> str | None:
    if not facts:
        return None
    default = facts.get("default_precision")
    if facts.get("forced_tf32"):
        return f"TF32 forced (allow_tf32=False does not stick; default '{default}'): fp32 matmul ran as TF32"
    if facts.get("pinned") == "highest":
        return f"IEEE fp32, pinned by the bench (process default '{default}')"
    return f"process default '{default}' (not pinned: weights are not fp32)"


def _given_by(overrides: dict[str, Any] | None, key: str, option: str) -> str:
    if overrides is None:  # bench.json from before the options existed
        return "bench config"
    return f"bench config (set by {option})" if key in overrides else "bench config (the profile's)"


def _weights_text(bench: dict[str, Any]) -> str:
    weights = bench["config"].get("model_weights")
    if not weights:
        return "not recorded"
    return f"{weights['label']} (stand-in, seed {weights['marker'].get('seed')})" if weights.get("random") else "trained"


def probe_table(probe: dict[str, Any] | None) -> Table:
    rows = [(c["title"], c["status"], c["reason"].replace("|", "\\|")) for c in (probe or {}).get("checks", [])]
    return make_table("Probe checks", _plain("check", "status", "reason"), rows)


def workload_table(bench: dict[str, Any]) -> Table:
    rows = []
    for s in bench["workload"]["sets"]:
        counts = s["token_counts"]
        rows.append((s["name"], len(counts), s.get("target_tokens"), sum(counts) / len(counts) if counts else None,
                     min(counts, default=None), max(counts, default=None)))
    return make_table("Workload (tokens by the native model's tokenizer)", (
        *_plain("set", "texts", "target tokens"), *_figures("mean tokens", digits=4),
        *_plain("min tokens", "max tokens")), rows)


def _check(probe: dict[str, Any] | None, name: str) -> dict[str, Any]:
    return next((c for c in (probe or {}).get("checks", []) if c["name"] == name), {})


def measured_items(probe: dict[str, Any] | None, bench: dict[str, Any]) -> dict[str, tuple[bool, str]]:
    """Each TD-073 checklist key -> (measured?, evidence). Only what this run measured counts."""
    facts = (probe or {}).get("facts", {})
    on_gpu = bool((probe or {}).get("overall", {}).get("target_probed"))
    capability = facts.get("device_capability")
    on_sm121 = on_gpu and list(capability or []) == [12, 1]
    cuda13 = str(facts.get("torch_cuda_version") or "").startswith("13")
    ollama, native = measured_backends(bench, "ollama"), measured_backends(bench, "native")
    both = bool(ollama and native)
    scen = {m["scenario"] for m in bench["measurements"] if any(s["ok"] for s in m["samples"])}
    # Memory answers the ticket only with figures each side can call its own.
    mem = bool(attributable_memory(bench, ollama)) and bool(attributable_memory(bench, native))
    own_memory = attributable_memory(bench, ollama + native)
    mem_evidence = f"memory table, figures of their own: {', '.join(own_memory) or 'none'}"
    # A warm load answers nothing about loading time: both sides must have loaded cold.
    loads = bool(cold_loads(bench, ollama)) and bool(cold_loads(bench, native))
    load_evidence = f"load table, cold loads: {', '.join(cold_loads(bench, ollama + native)) or 'none'}"
    quality = any({q["control"], q["treatment"]} & set(ollama) and {q["control"], q["treatment"]} & set(native)
                  for q in bench["quality"])
    retrieval = {r["backend"] for r in bench["retrieval"]}
    st_ok = _check(probe, "sentence_transformers").get("status") in ("pass", "warn")
    attention_on_gpu = on_gpu and _check(probe, "attention").get("status") in ("pass", "warn", "fail")
    gpu_name = facts.get("device_name") or "no GPU"
    # The ticket's performance questions compare two sides: one side alone does not answer them.
    sides = "both sides" if both else f"one side only ({', '.join(ollama + native) or 'none'})"
    items = {
        "single_text_latency": (both and "single" in scen, f"single-text latency table, {sides}"),
        "batch_latency": (both and "batch" in scen, f"batch latency table, {sides}"),
        "throughput": (both and "throughput" in scen, f"throughput table, {sides}"),
        "memory": (mem, mem_evidence),
        "sm121_cuda_support": (on_sm121, f"probe on {gpu_name}"),
        "flash_attention_workaround": (attention_on_gpu, f"SDPA matrix on {gpu_name}"),
        "pytorch_cu130": (on_gpu and cuda13, f"torch CUDA {facts.get('torch_cuda_version')} on {gpu_name}"),
        "embedding_consistency": (quality, "per-text cosine Ollama vs native"),
        "cosine_correlation": (quality, "Spearman over sampled pairs"),
        "downstream_performance": (bool(retrieval & set(ollama)) and bool(retrieval & set(native)), "BEIR nDCG@10"),
        "model_loading_time": (loads, load_evidence),
        "memory_management": (mem, mem_evidence),
        "multi_gpu": (False, "not measured: one GPU"),
        "integration_complexity": (False, "assessed in text, not measured"),
        "install_st_cu130": (on_gpu and cuda13 and st_ok, "probe: sentence-transformers on cu13 torch"),
        "load_bge_m3": (on_gpu and st_ok and "bge-m3" in str(bench["config"].get("resolved_model", "")).lower(),
                        "probe + native load of BAAI/bge-m3"),
        "check_dgx_compat": (on_sm121, f"probe on {gpu_name}"),
        "benchmark_suite": (True, "this tool"),
        "ollama_baseline": (bool(ollama), ", ".join(ollama) or "not measured"),
        "native_benchmarks": (bool(native), ", ".join(native) or "not measured"),
        "quality_comparison": (quality, "vector agreement table"),
        "document_results": (True, "this verdict"),
        "ac_compat_checked": (on_sm121, f"probe on {gpu_name}"),
        "ac_benchmarks_documented": (both, "performance tables"),
        "ac_quality_done": (quality, "vector agreement table"),
    }
    return items


CHECKLIST_LABELS: tuple[tuple[str, str, str], ...] = (
    ("Performance", "Single Text Latency", "single_text_latency"),
    ("Performance", "Batch Processing Speed", "batch_latency"),
    ("Performance", "Throughput (texts/sec)", "throughput"),
    ("Performance", "Memory Efficiency", "memory"),
    ("Compatibility", "DGX Spark (sm_121) CUDA Support", "sm121_cuda_support"),
    ("Compatibility", "Flash Attention Workaround nötig?", "flash_attention_workaround"),
    ("Compatibility", "PyTorch cu130 Kompatibilität", "pytorch_cu130"),
    ("Quality", "Embedding Consistency (Ollama vs Native)", "embedding_consistency"),
    ("Quality", "Cosine Similarity Correlation", "cosine_correlation"),
    ("Quality", "Downstream Task Performance", "downstream_performance"),
    ("Operations", "Model Loading Time", "model_loading_time"),
    ("Operations", "Memory Management", "memory_management"),
    ("Operations", "Multi-GPU Support", "multi_gpu"),
    ("Operations", "Integration Complexity", "integration_complexity"),
)

NEXT_STEPS: dict[Outcome, tuple[str, ...]] = {
    Outcome.MIGRATE: (
        "File the follow-up TD drafted in TD-follow-up.md (migration to native sentence-transformers).",
        "Re-run `make bench` on the production Spark image after the migration to confirm the figures.",
    ),
    Outcome.CONDITIONAL: (
        "File the conditional TD drafted in TD-follow-up.md, with the workarounds and issues listed above.",
        "Resolve the listed issues (workarounds, quality, truncation) and re-run `make bench`.",
    ),
    Outcome.KEEP: (
        "Keep the Ollama path; close TD-073 with this verdict attached.",
        "Re-run after an Ollama or PyTorch upgrade (`python -m bench compare old.json new.json`).",
    ),
    Outcome.CLOSE: (
        "Close TD-073 with these findings; native PyTorch does not run on this machine as probed.",
        "Re-probe after a PyTorch/NGC release that lists sm_121 (`docker compose run probe`).",
    ),
    Outcome.INCONCLUSIVE: (
        "Measure what is missing (listed in the summary) on the DGX Spark: `make bench`.",
        "Then re-render with `make verdict`; nothing needs re-running that was already measured.",
    ),
}


def checklist_sections(items: dict[str, tuple[bool, str]]) -> tuple[tuple[str, tuple[ChecklistItem, ...]], ...]:
    sections: dict[str, list[ChecklistItem]] = {}
    for section, label, key in CHECKLIST_LABELS:
        sections.setdefault(section, []).append(ChecklistItem(section, label, key, *items[key]))
    return tuple((name, tuple(entries)) for name, entries in sections.items())


def status_line(decision: Decision) -> str:
    if decision.outcome is Outcome.INCONCLUSIVE:
        return "OPEN (Investigation) — verdict: Inconclusive"
    return f"DONE (Investigation) — verdict: {decision.outcome.value}"


def build_context(probe: dict[str, Any] | None, bench: dict[str, Any],
                  plots: tuple[tuple[str, str], ...] = ()) -> tuple[VerdictContext, Decision]:
    from bench.other_servers import other_servers

    inputs, control, treatment = decision_inputs(probe, bench)
    decision = decide(inputs)
    items = measured_items(probe, bench)
    speed_rows = [(s.comparison.text_set, s.comparison.metric, _times(s.comparison.ratio), _ci(s.comparison),
                   s.speed_class.value + (" (borderline)" if s.borderline else ""), s.comparison.detail)
                  for s in decision.sets]
    speed_rows += [(c.text_set, c.metric, _times(c.ratio), _ci(c), "beside the decision", c.detail)
                   for c in inputs.latency]
    native_desc = ((bench["backends"].get(treatment) or {}).get("description") or {}) if treatment else {}
    others = other_servers(bench, control, treatment)
    failures = [(f["backend"], f["text_set"] or "", f["scenario"], f["error"]) for f in bench["failures"]]
    ctx = VerdictContext(
        outcome=decision.outcome.value,
        outcome_is_migration=decision.outcome in (Outcome.MIGRATE, Outcome.CONDITIONAL),
        weights_label=recorded_weights_label(bench),
        reasons=decision.reasons,
        control=control,
        treatment=treatment,
        rules=RULES,
        quality_rule=dict(RULES)["quality"],
        speed=make_table("Native vs Ollama speed ratio (> 1: native faster)",
                         _plain("set", "metric", "ratio", "95% CI (bootstrap)", "reading", "figures"), speed_rows),
        borderline=decision.borderline,
        other_servers=others.table,
        other_server_lines=others.lines,
        created_at=bench.get("updated_at", ""),
        bench_status=bench["status"],
        profile=bench["config"]["profile"]["name"],
        environment=environment_table(probe, bench, control, treatment),
        probe_overall=(probe or {}).get("overall", {}).get("status", "not run"),
        probe_reason=(probe or {}).get("overall", {}).get("reason", "no probe.json found"),
        probe_checks=probe_table(probe),
        workarounds=tuple((probe or {}).get("overall", {}).get("workarounds", ())),
        **performance_tables(bench),
        roofline=roofline_view(probe, bench, control),
        **backend_tables(bench),
        **quality_tables(bench),
        text_failures=text_failures_table(bench),
        known_issues=known_issues_table(bench),
        failures=make_table("Failures recorded", _plain("backend", "set", "step", "error"), failures),
        nonfinite=tuple(f"{f['backend']} on '{f['text_set']}': {f['error']}"
                        for f in bench["failures"] if f["scenario"] == "vectors"),
        workload=workload_table(bench),
        checklist=checklist_sections(items),
        next_steps=NEXT_STEPS[decision.outcome],
        plots=plots,
        native_facts=tuple((k, native_model_label(bench) if k == "model" else format_value(native_desc.get(k)))
                           for k in ("model", "dimension", "max_seq_length", "attn_implementation", "dtype")
                           if k in native_desc),
        ollama_embedding_changes=OLLAMA_EMBEDDING_CHANGES,
    )
    return ctx, decision


def load_results(results_dir: Path) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """(probe or None, bench). bench.json is required; a missing probe.json is allowed."""
    from bench.results import BENCH_SCHEMA_VERSION
    from probe.output import ResultsFileError, read_results_json
    from probe.result import PROBE_SCHEMA_VERSION

    bench = read_results_json(results_dir / "bench.json", "bench", BENCH_SCHEMA_VERSION)
    try:
        probe = read_results_json(results_dir / "probe.json", "probe", PROBE_SCHEMA_VERSION)
    except ResultsFileError as err:
        if "not found" not in str(err):
            raise
        probe = None
    return probe, bench


def render_verdict(results_dir: Path, with_plots: bool = True) -> tuple[Decision, list[Path]]:
    """Write verdict.md (and the plots, and TD-follow-up.md when a TD is recommended)."""
    from bench.plots import render_plots
    from probe.output import render_markdown, write_text_atomic

    probe, bench = load_results(results_dir)
    _, control, treatment = decision_inputs(probe, bench)
    plots = render_plots(bench, control, treatment, results_dir) if with_plots else ()
    ctx, decision = build_context(probe, bench, plots)
    written = [results_dir / VERDICT_MD]
    write_text_atomic(written[0], render_markdown("verdict/verdict.md.j2", ctx))
    follow_up = results_dir / FOLLOW_UP_MD
    if ctx.outcome_is_migration:
        write_text_atomic(follow_up, render_markdown("verdict/follow_up.md.j2", ctx))
        written.append(follow_up)
    else:
        follow_up.unlink(missing_ok=True)  # a stale draft from an earlier run must not survive
    written.extend(results_dir / f for _, f in plots)
    return decision, written
