"""The TD-073 checklist: which of the ticket's items this run measured, with the evidence, and
the next steps for each outcome."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.analyse.comparison import measured_backends
from bench.analyse.decision import (
    Decision,
    Outcome,
)
from bench.report.tables import attributable_memory, cold_loads


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
        "pytorch_cu130": (on_gpu and cuda13, f"torch CUDA {facts.get('torch_cuda_version') or 'not available'} on {gpu_name}"),
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


@dataclass(frozen=True)
class ChecklistItem:
    section: str
    item: str
    key: str
    measured: bool
    evidence: str


def checklist_sections(items: dict[str, tuple[bool, str]]) -> tuple[tuple[str, tuple[ChecklistItem, ...]], ...]:
    sections: dict[str, list[ChecklistItem]] = {}
    for section, label, key in CHECKLIST_LABELS:
        sections.setdefault(section, []).append(ChecklistItem(section, label, key, *items[key]))
    return tuple((name, tuple(entries)) for name, entries in sections.items())


def status_line(decision: Decision) -> str:
    if decision.outcome is Outcome.INCONCLUSIVE:
        return "OPEN (Investigation) — verdict: Inconclusive"
    return f"DONE (Investigation) — verdict: {decision.outcome.value}"
