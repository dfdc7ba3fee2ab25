"""From probe.json and bench.json to the decision and the one context object the
verdict templates render. All Markdown lives in templates/verdict/."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.analyse.comparison import decision_inputs
from bench.analyse.decision import (
    RULES,
    Decision,
    Outcome,
    decide,
)
from bench.backends.ollama import OLLAMA_EMBEDDING_CHANGES
from bench.measure.standin_model import recorded_weights_label
from bench.report.checklist import (
    NEXT_STEPS,
    ChecklistItem,
    checklist_sections,
    measured_items,
)
from bench.report.roofline_view import RooflineView, roofline_view
from bench.report.tables import (
    backend_tables,
    environment_table,
    format_ci,
    format_times,
    known_issues_table,
    native_model_label,
    performance_tables,
    plain_columns,
    probe_table,
    quality_tables,
    screening_notes,
    text_failures_table,
    workload_table,
)
from probe.view import Table, format_value, make_table

VERDICT_MD = "verdict.md"
FOLLOW_UP_MD = "TD-follow-up.md"


# ---------------------------------------------------------------- the template context


@dataclass(frozen=True)
class VerdictContext:
    """The one object every verdict template reads (as `ctx`)."""

    outcome: str
    outcome_is_migration: bool
    weights_label: str | None  # "random weights: speed and memory only" for a stand-in model, else None
    reasons: tuple[str, ...]
    control: str | None
    treatment: str | None
    rules: tuple[tuple[str, str], ...]  # (name, rule) from bench.analyse.decision.RULES
    quality_rule: str
    speed: Table
    borderline: bool
    other_servers: Table  # servers beside the ticket's two sides (bench/analyse/other_servers.py), never decisive
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
    screening_notes: tuple[str, ...]  # batch-only failures and flaky texts seen while screening
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




def build_context(probe: dict[str, Any] | None, bench: dict[str, Any],
                  plots: tuple[tuple[str, str], ...] = ()) -> tuple[VerdictContext, Decision]:
    from bench.analyse.other_servers import other_servers

    inputs, control, treatment = decision_inputs(probe, bench)
    decision = decide(inputs)
    items = measured_items(probe, bench)
    speed_rows = [(s.comparison.text_set, s.comparison.metric, format_times(s.comparison.ratio), format_ci(s.comparison),
                   s.speed_class.value + (" (borderline)" if s.borderline else ""), s.comparison.detail)
                  for s in decision.sets]
    speed_rows += [(c.text_set, c.metric, format_times(c.ratio), format_ci(c), "beside the decision", c.detail)
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
                         plain_columns("set", "metric", "ratio", "95% CI (passes: Welch t; calls: bootstrap)", "reading", "figures"), speed_rows),
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
        screening_notes=tuple(screening_notes(bench)),
        known_issues=known_issues_table(bench),
        failures=make_table("Failures recorded", plain_columns("backend", "set", "step", "error"), failures),
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
    from bench.report.plots import render_plots
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
