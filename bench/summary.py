"""The summary table printed at the end of `bench run`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from bench.analysis import all_figures
from probe.view import format_value


def print_summary(console: Console, state) -> None:
    payload = state.payload()
    table = Table(title=f"Bench summary ({payload['status']})")
    for column in ("backend", "set", "single p50 ms (n)", "single p95 ms", "batch ms (n)",
                   "best texts/s (setting)", "16 callers req/s"):
        table.add_column(column)
    for f in all_figures(payload):
        best = f.best_throughput
        c16 = next((c for c in f.concurrency if c.callers == 16), None)
        table.add_row(
            f.backend, f.text_set,
            f"{format_value(f.single_ms.p50)} ({f.single_ms.count})" if f.single_ms else "not measured",
            format_value(f.single_ms.p95) if f.single_ms else "",
            f"{format_value(f.batch_ms.p50)} ({f.batch_ms.count})" if f.batch_ms else "not measured",
            f"{format_value(best.texts_per_s)} ({best.label})" if best else "not measured",
            format_value(c16.requests_per_s) if c16 else "not measured",
        )
    console.print(table)
    for failure in payload["failures"]:
        console.print(f"[red]failed[/] {failure['backend']} {failure['text_set'] or ''} "
                      f"{failure['scenario']}: {failure['error']}")
