"""The verdict's tables, built from bench.json and probe.json: every figure formatted here, in
Python, so the templates only lay them out."""

from __future__ import annotations

from typing import Any

from bench.analyse.comparison import as_finite_number
from bench.analyse.decision import (
    SpeedComparison,
)
from bench.analyse.figures import SetFigures, all_figures, backend_names
from bench.analyse.lengths import length_mismatch, same_length_agreement
from probe.view import (
    AGREEMENT_DIGITS,
    FIGURE_DIGITS,
    Column,
    Table,
    format_value,
    make_table,
)

MIB = 1024 * 1024


def plain_columns(*headers: str) -> tuple[Column, ...]:
    """Columns of text and counts: shown as they are (integers with grouped thousands)."""
    return tuple(Column(h) for h in headers)


def figure_columns(*headers: str, digits: int = FIGURE_DIGITS) -> tuple[Column, ...]:
    return tuple(Column(h, digits) for h in headers)


def format_times(ratio: float) -> str:
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
            *plain_columns("backend", "set", "n", "failed"),
            *figure_columns("p50 (ms)", "p95 (ms)", "p99 (ms)", "mean (ms)", "stdev (ms)")), single),
        "batch": make_table("Batch latency", (
            *plain_columns("backend", "set", "batch (texts)", "n", "failed"), *figure_columns("p50 (ms)", "min (ms)", "max (ms)")),
            batch),
        "throughput": make_table("Throughput over the whole set", (
            *plain_columns("backend", "set", "setting", "texts"), *figure_columns("texts/s", "tokens/s"),
            *plain_columns("per-batch texts/s min–max", "failed batches", "")), throughput),
        "concurrency": make_table("Concurrent async callers", (
            *plain_columns("backend", "set", "callers", "requests", "failed"), *figure_columns("req/s", "p50 (ms)", "p95 (ms)")),
            concurrency),
        "overhead": make_table("Wrapper overhead on sequential calls", (
            *plain_columns("backend", "set", "calls"), *figure_columns("p50 (ms)", "p95 (ms)")), overhead),
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
            *plain_columns("backend"), *figure_columns("wall (s)"),
            *plain_columns("cold", "what the figure includes", "measured beside it"),
            *figure_columns("backend-reported (s)"), *plain_columns("source")), load),
        "memory": make_table("Memory", (
            *plain_columns("backend", "figure"), *figure_columns("size (MiB)"), *plain_columns("scope", "source")), memory),
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
                        as_finite_number(cos.get("mean")), as_finite_number(cos.get("min")), as_finite_number(cos.get("p1")), as_finite_number(sp.get("rho")),
                        sp.get("n_pairs"), as_finite_number(nb.get("mean")), nb.get("k"),
                        len(q["nonfinite_control"]) + len(q["nonfinite_treatment"]), len(q.get("excluded", ()))))
        if left_out:
            mismatch = length_mismatch(bench, q["control"], q["treatment"], q["text_set"])
            cosines = [c for c in (as_finite_number(q["per_text_cosine"][i]) for i in mismatch.indices) if c is not None]
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
            *plain_columns("backend", "vs", "set", "texts", "texts at other lengths"),
            *figure_columns("cosine mean", "cosine min", "cosine p1", "Spearman rho", digits=AGREEMENT_DIGITS),
            *plain_columns("pairs"), *figure_columns("top-k agreement", digits=AGREEMENT_DIGITS),
            *plain_columns("k", "non-finite", "left out (not embedded)")), quality),
        "length_notes": tuple(length_notes),
        "retrieval": make_table("BEIR retrieval", (
            *plain_columns("backend", "dataset", "queries"), *figure_columns("nDCG@10", "Recall@10", digits=AGREEMENT_DIGITS)),
            retrieval),
        "truncation": make_table("Truncation (tokenizer count vs backend-reported count, per text)", plain_columns(
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
    return make_table("Environment", plain_columns("what", "value", "source"), rows)


def native_model_label(bench: dict[str, Any]) -> str:
    """The native model as name @ revision (bench.json's native_model); the configured model for
    runs from before it was recorded."""
    from bench.measure.model_source import ModelIdentity

    identity = bench["environment"].get("native_model")
    return ModelIdentity(**identity).label if identity else str(bench["config"].get("resolved_model"))


def format_ci(c: SpeedComparison) -> str:
    return ("n/a (fewer than 2 per side)" if c.ci95_low is None
            else f"{format_value(c.ci95_low, FIGURE_DIGITS)}–{format_times(c.ci95_high)}")


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
                      plain_columns("backend", "set", "text index", "HTTP status", "error", "text begins"), rows)


def screening_notes(bench: dict[str, Any]) -> list[str]:
    """What screening saw besides per-text failures: batches that failed although each of their
    texts embedded alone, and texts that failed once and then worked (kept in the set)."""
    notes = []
    for record in bench.get("screening", []):
        where = f"{record['backend']} · {record['text_set']}"
        for error in record.get("batch_errors", ()):
            notes.append(f"{where}: {error} (a batch-size-dependent failure: a timed setting that meets it is "
                         "left out of the throughput choice and listed under Failures)")
        if record.get("flaky"):
            indices = ", ".join(str(i) for i in record["flaky"])
            notes.append(f"{where}: text(s) {indices} failed once alone and then worked (flaky: kept in the set)")
    return notes


def known_issues_table(bench: dict[str, Any]) -> Table:
    from bench.analyse.field_knowledge import matches

    rows = [(m.issue.cause, ", ".join(m.issue.upstream), m.issue.fix, m.evidence, m.ollama_version or "not recorded")
            for m in matches(bench)]
    return make_table("Known causes (field reports matching this run)",
                      plain_columns("known cause", "upstream", "what changes it", "seen here", "Ollama version"), rows)


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
    return make_table("Probe checks", plain_columns("check", "status", "reason"), rows)


def workload_table(bench: dict[str, Any]) -> Table:
    rows = []
    for s in bench["workload"]["sets"]:
        counts = s["token_counts"]
        rows.append((s["name"], len(counts), s.get("target_tokens"), sum(counts) / len(counts) if counts else None,
                     min(counts, default=None), max(counts, default=None)))
    return make_table("Workload (tokens by the native model's tokenizer)", (
        *plain_columns("set", "texts", "target tokens"), *figure_columns("mean tokens", digits=4),
        *plain_columns("min tokens", "max tokens")), rows)
