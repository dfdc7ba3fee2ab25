"""Servers measured beside the ticket's two sides: any backend whose kind is neither "ollama"
nor "native" (the `openai` backend on llama.cpp, TEI, vLLM, Infinity). The verdict shows
their speed against Ollama and native and their agreement with native; the decision stays
the ticket's (Ollama vs native) and never reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bench.analyse.comparison import backend_kind, quality_record, speed_comparisons
from bench.analyse.figures import excluded_for, set_figures, text_set_names
from bench.analyse.lengths import length_mismatch, same_length_agreement
from probe.view import FIGURE_DIGITS, Column, Table, make_table

TICKET_KINDS = ("ollama", "native")


@dataclass(frozen=True)
class OtherServers:
    table: Table  # per server and text set
    lines: tuple[str, ...]  # one plain sentence per server, for the summary


def other_server_names(bench: dict[str, Any]) -> list[str]:
    """Backends of another kind that loaded and have at least one successful sample."""
    names = []
    for name, record in bench["backends"].items():
        if record.get("error") and not record["error"].startswith("incomplete"):
            continue
        if backend_kind(bench, name) in TICKET_KINDS:
            continue
        if any(s["ok"] for m in bench["measurements"] if m["backend"] == name for s in m["samples"]):
            names.append(name)
    return names


def _throughput_ratio(bench: dict[str, Any], server: str, other: str | None, text_set: str) -> str:
    """`other` ÷ server on best throughput with its 95 % interval across whole passes, as the decision
    reads native ÷ Ollama (verdict.speed_comparisons); "not measured" when either lacks it."""
    if other is None:
        return "not measured"
    throughput, _ = speed_comparisons(bench, server, other)
    found = next((s for s in throughput if s.text_set == text_set), None)
    if found is None:
        return "not measured"
    spread = "" if found.ci95_low is None else f" ({found.ci95_low:.2f}–{found.ci95_high:.2f})"
    return f"{found.ratio:.2f}×{spread}"


def _agreement(bench: dict[str, Any], server: str, native: str | None, text_set: str) -> tuple[Any, ...]:
    """(cosine mean, min, texts compared) against native over the texts both embedded at the same length."""
    q = quality_record(bench, server, native, text_set) if native else None
    if q is None:
        return (None, None, None)
    cos = same_length_agreement(bench, q).cosine
    return (cos.get("mean"), cos.get("min"), cos.get("count"))


def _texts_measured(bench: dict[str, Any], native: str | None, server: str, text_set: str) -> str:
    """How many of the set's texts each side was timed on: a server that refuses some texts
    (llama-server over its batch) is measured on fewer, so its throughput covers other texts."""
    size = len(next(s for s in bench["workload"]["sets"] if s["name"] == text_set)["token_counts"])
    screening = bench.get("screening", [])
    timed = {m["backend"] for m in bench["measurements"] if m["text_set"] == text_set}
    measured = [size - len(excluded_for(screening, name, text_set)) if name in timed else None
                for name in (native, server)]
    return " / ".join("not measured" if n is None else str(n) for n in measured) + f" of {size}"


def _cosine(value: float | None) -> str:
    """Six decimals: agreement between engines lives in the fifth and sixth."""
    return "not available" if value is None else f"{value:.6f}"


def other_servers(bench: dict[str, Any], control: str | None, treatment: str | None) -> OtherServers:
    """Speed of each other server against Ollama (`control`) and native (`treatment`), its vector
    agreement with native over the texts both embedded at the same length, and the texts the two
    embedded at different lengths (from their token counts, even where no vectors could be compared)."""
    rows, lines = [], []
    for server in other_server_names(bench):
        description = (bench["backends"][server].get("description") or {})
        identity = description.get("server_version") or description.get("endpoint") or "unknown server"
        ratios, agreement, lengths = [], [], []
        for text_set in text_set_names(bench):
            best = set_figures(bench, server, text_set).best_throughput
            native_ratio = _throughput_ratio(bench, server, treatment, text_set)
            ollama_ratio = _throughput_ratio(bench, server, control, text_set)
            mean, low, count = _agreement(bench, server, treatment, text_set)
            mismatch = length_mismatch(bench, treatment, server, text_set) if treatment else None
            differ = f"{len(mismatch.indices)} of {mismatch.compared}" if mismatch else None
            if mismatch and mismatch.indices and native_ratio != "not measured":
                native_ratio += ", unequal inputs"  # the two sides embedded different token counts
            rows.append((server, text_set, _texts_measured(bench, treatment, server, text_set),
                         best.texts_per_s if best else None, best.label if best else None,
                         native_ratio, ollama_ratio, _cosine(mean), _cosine(low), count, differ))
            ratios.append(f"{text_set} {native_ratio}")
            if count:
                agreement.append(f"{text_set} mean {_cosine(mean)}, min {_cosine(low)} (n={count})")
            if mismatch and mismatch.indices:
                lengths.append(mismatch.describe())
        native_part = f"native ({treatment}) ÷ it: " + ", ".join(ratios) if treatment else "native not measured"
        cosine_part = (f"cosine vs {treatment}: " + "; ".join(agreement)) if agreement else \
            "no vectors to compare with native"
        length_part = "; texts embedded at different lengths: " + "; ".join(lengths) if lengths else ""
        lines.append(f"{server} ({identity}), best throughput {native_part}; {cosine_part}{length_part}")
    table = make_table(
        "Other servers, not part of the decision (ratios > 1: that side is faster than the server)",
        (*map(Column, ("backend", "set", "texts measured (native / it)")), Column("best texts/s", FIGURE_DIGITS),
         *map(Column, ("setting", "native ÷ it (95% CI)", "Ollama ÷ it (95% CI)", "cosine vs native: mean", "min",
                       "texts", "texts at other lengths"))),
        rows)
    return OtherServers(table, tuple(lines))
