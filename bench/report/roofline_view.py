"""The roofline as the verdict shows it: tables, notes and the floor findings, formatted for
templates/verdict/_performance.md.j2 (the formulae are in bench/analyse/roofline.py's docstring and,
for readers, written out once in that template)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from bench.analyse.roofline import (
    Ceilings,
    ModelShape,
    RooflineRow,
    SetFloor,
    SingleTextRow,
    VendorFigures,
    probe_ceilings,
    roofline_rows,
    single_text_floors,
    single_text_rows,
    vendor_figures,
)
from bench.report.tables import figure_columns, format_times, plain_columns
from probe.view import FIGURE_DIGITS, Table, format_percent, format_value, make_table


@dataclass(frozen=True)
class OutOfReach:
    """A text set where the Ollama side already sits within the ticket's speed-up of the floor."""

    text_set: str
    control: str
    control_multiple: str  # e.g. "1.73"
    speedup: str  # the ticket's bar, e.g. "2"
    floor_ms: str
    bound: str
    weight_bytes: str  # bytes per weight the floor assumes, e.g. "2"
    device: str  # "GPU" or "CPU"
    sides: tuple[tuple[str, str, str], ...]  # (backend, p50 ms, multiple of the floor)


@dataclass(frozen=True)
class RooflineView:
    throughput: Table
    single: Table
    floors: Table
    out_of_reach: tuple[OutOfReach, ...]
    notes: tuple[str, ...]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1e3


def throughput_table(rows: Sequence[RooflineRow]) -> Table:

    return make_table("Roofline at the best throughput setting", (
        *plain_columns("backend", "set", "setting", "calls"),
        *figure_columns("useful TFLOP", "moved (GB)", "compute (s)", "memory (s)"), *plain_columns("bound"),
        *figure_columns("bound texts/s", "measured texts/s"), *plain_columns("reached", "probe peak (TFLOP/s)",
                                                                     "MFU (probe peak)", "MFU (datasheet dense bf16)")),
        [(r.backend, r.text_set, r.setting, r.calls, r.useful_tflop, r.gbytes, r.bound.compute_s, r.bound.memory_s,
          r.bound.kind, r.bound_texts_per_s, r.texts / r.wall_s, format_fraction(r.reached),
          f"{r.peak_key} {format_value(r.measured_peak_tflops, FIGURE_DIGITS)}", format_fraction(r.mfu_measured),
          format_fraction(r.mfu_datasheet)) for r in rows])


CEILING_TOO_LOW = "ceiling too low"


def format_fraction(value: float | None) -> str:
    """A fraction of a ceiling; above 100 % the ceiling, not the backend, is wrong, and says so."""
    return format_percent(value) + (f" ({CEILING_TOO_LOW})" if value is not None and value > 1 else "")


def single_table(rows: Sequence[SingleTextRow]) -> Table:

    return make_table("Single-text latency against its floor", (
        *plain_columns("backend", "set", "calls", "median tokens"), *figure_columns("compute (ms)", "memory (ms)"),
        *plain_columns("bound"), *figure_columns("floor (ms)", "p50 (ms)"), *plain_columns("n", "p50 / floor", "reached")),
        [(r.backend, r.text_set, r.calls, r.median_tokens, _ms(r.bound.compute_s), _ms(r.bound.memory_s),
          r.bound.kind, r.floor_ms, r.p50_ms, r.n, "not available" if r.multiple is None else format_times(r.multiple),
          format_fraction(r.reached)) for r in rows])


def floors_table(floors: Sequence[SetFloor]) -> Table:

    return make_table("The floor under single-text latency, per text set (lowest of the measured backends)", (
        *plain_columns("set"), *figure_columns("floor (ms)"), *plain_columns("floor of", "bound",
                                                          "each side's p50 as a multiple of the floor")),
        [(f.text_set, f.floor_ms, f.floor_backend, f.bound,
          ", ".join(f"{s.backend} {format_value(s.multiple, FIGURE_DIGITS)}×" for s in f.sides)) for f in floors])


def out_of_reach(floors: Sequence[SetFloor], control: str | None, speedup: float,
                 ceilings: Ceilings | None) -> tuple[OutOfReach, ...]:
    """The sets where `control` (the Ollama side) is within `speedup`× of the floor."""

    if control is None:
        return ()
    device = "GPU" if ceilings is not None and ceilings.device == "cuda" else "CPU"
    return tuple(
        OutOfReach(text_set=f.text_set, control=control,
                   control_multiple=format_value(f.multiple_of(control), FIGURE_DIGITS), speedup=format_value(speedup),
                   floor_ms=format_value(f.floor_ms, FIGURE_DIGITS), bound=f.bound,
                   weight_bytes=format_value(f.weight_bytes), device=device,
                   sides=tuple((s.backend, format_value(s.p50_ms, FIGURE_DIGITS), format_value(s.multiple, FIGURE_DIGITS))
                               for s in f.sides))
        for f in floors if f.speedup_out_of_reach(control, speedup)
    )


def ceilings_note(ceilings: Ceilings | None) -> str:
    if ceilings is None:
        return "measured ceilings: none (no probe.json), so no bound is computed"
    rates = ", ".join(f"{k} {format_value(v)}" for k, v in sorted(ceilings.matmul_tflops.items()))
    where = "GPU" if ceilings.device == "cuda" else "CPU"
    bandwidth = (f"{format_value(ceilings.bandwidth_gbs)} GB/s ({ceilings.bandwidth_detail})"
                 if ceilings.bandwidth_gbs is not None else ceilings.bandwidth_detail)
    return (f"measured ceilings (probe, {where}; memory measured: {ceilings.memory}): matmul "
            f"{rates + ' TFLOP/s (best)' if rates else 'not measured'}; bandwidth {bandwidth}. "
            "These are the basis of every bound, floor and MFU here.")


def vendor_notes(vendor: VendorFigures | None, device_name: str | None, ceilings: Ceilings | None) -> list[str]:
    """The datasheet line and, where someone reported a measurement, that line, both labelled."""
    if ceilings is not None and ceilings.device == "cpu":
        return ["datasheet figures: none apply (the ceilings are the CPU's)"]
    if vendor is None:
        return [f"datasheet figures for {device_name or 'no GPU'}: not in bench/data/device_figures.json"]
    compute = (f"dense BF16 {format_value(vendor.tflops)} TFLOP/s ({vendor.compute_source})" if vendor.tflops
               else f"dense BF16 {vendor.compute_source}")
    bandwidth = (f"memory bandwidth {format_value(vendor.bandwidth_gbs)} GB/s ({vendor.bandwidth_source})"
                 if vendor.bandwidth_gbs else f"memory bandwidth {vendor.bandwidth_source}")
    notes = [f"datasheet (vendor) figures for {vendor.gpu}, for comparison only: {compute}; {bandwidth}"]
    if vendor.reported is not None:
        r = vendor.reported
        parts = [f"BF16 dense matmul {format_value(r.bf16_tflops)} TFLOP/s" if r.bf16_tflops else None,
                 f"memory bandwidth {format_value(r.bandwidth_gbs)} GB/s" if r.bandwidth_gbs else None]
        notes.append(f"reported measurement for {vendor.gpu} (someone else's measurement, not a datasheet figure "
                     f"and not the basis here): {', '.join(p for p in parts if p)} ({r.source})")
    return notes


def model_note(shape: ModelShape | None, config: dict[str, Any], where: str = "recorded in bench.json") -> str:
    if shape is None:
        return f"no model config {where} ({config.get('error', 'run before the roofline existed')}): no roofline"
    return (f"model: {shape.layers} layers, hidden {shape.hidden}, intermediate {shape.intermediate}, "
            f"{shape.heads} heads, vocabulary {shape.vocab} (the model config {where}); "
            f"weights read per forward pass: {shape.layers * shape.layer_parameters:,} layer parameters plus "
            f"2 × {shape.hidden} per token from the word and position tables (the {shape.vocab:,} × "
            f"{shape.hidden} word table is gathered, never read whole)")


def roofline_view(probe: dict[str, Any] | None, bench: dict[str, Any], control: str | None) -> RooflineView:
    """Everything the verdict's roofline section prints."""
    from bench.analyse.decision import MIGRATION_SPEEDUP

    throughput = roofline_rows(bench, probe)
    single = single_text_rows(bench, probe)
    floors = single_text_floors(single)
    ceilings = probe_ceilings(probe)
    config = bench["environment"].get("model_config") or {}
    device_name = ((probe or {}).get("facts") or {}).get("device_name")
    notes = [model_note(ModelShape.from_config(config), config), ceilings_note(ceilings),
             *vendor_notes(vendor_figures(device_name), device_name, ceilings)]
    notes.extend(sorted({f"{r.backend}: {r.note}" for r in [*throughput, *single] if r.note}))
    fractions = [f for r in throughput for f in (r.reached, r.mfu_measured, r.mfu_datasheet)]
    fractions += [r.reached for r in single]
    if any(f is not None and f > 1 for f in fractions):
        notes.append(f"a fraction above 100 % is marked '{CEILING_TOO_LOW}': a backend cannot beat a real ceiling, so "
                     "that ceiling was measured low (the probe ran at other load, or with other threads, than the "
                     "bench); re-run the probe on an idle machine before reading MFU or 'reached' from this run")
    return RooflineView(
        throughput=throughput_table(throughput),
        single=single_table(single),
        floors=floors_table(floors),
        out_of_reach=out_of_reach(floors, control, MIGRATION_SPEEDUP, ceilings),
        notes=tuple(notes),
    )
