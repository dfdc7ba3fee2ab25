"""The summary table printed at the end of `bench run`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from bench.analyse.figures import all_figures
from probe.view import format_value


def print_summary(console: Console, state) -> None:
    """One row per backend and text set that was measured; what was not is listed below."""
    payload = state.payload()
    table = Table(title=f"Bench summary ({payload['status']})")
    table.add_column("backend", no_wrap=True)
    table.add_column("set", no_wrap=True)
    for column in ("single p50/p95 ms (n)", "batch p50 ms (n)", "best texts/s", "req/s, most callers"):
        table.add_column(column, justify="right")
    for f in all_figures(payload):
        if not (f.single_ms or f.batch_ms or f.throughput or f.concurrency):
            continue
        best = f.best_throughput
        top = max(f.concurrency, key=lambda c: c.callers, default=None)
        table.add_row(
            f.backend, f.text_set,
            f"{format_value(f.single_ms.p50)}/{format_value(f.single_ms.p95)} ({f.single_ms.count})"
            if f.single_ms else "not measured",
            f"{format_value(f.batch_ms.p50)} ({f.batch_ms.count})" if f.batch_ms else "not measured",
            f"{format_value(best.texts_per_s)} ({best.label})" if best else "not measured",
            f"{format_value(top.requests_per_s)} ({top.callers})" if top else "not measured",
        )
    console.print(table)
    for record in payload["screening"]:
        if record["failures"]:
            first = record["failures"][0]
            console.print(f"[yellow]cannot embed[/] {record['backend']} {record['text_set']}: "
                          f"{len(record['failures'])} text(s), e.g. text {first['index']}: {first['error']}")
    for failure in payload["failures"]:
        where = " ".join(x for x in (failure["text_set"], failure["scenario"]) if x)
        console.print(f"[red]failed[/] {failure['backend']} {where}: {failure['error']}")
