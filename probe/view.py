"""Prepared context for templates/probe.md.j2: every string the template prints is made here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from probe.result import CheckResult, ProbeReport, Status

STATUS_MARK = {Status.PASS: "✅ pass", Status.WARN: "⚠️ warn", Status.FAIL: "❌ fail", Status.SKIP: "⏭️ skip"}


DEFAULT_DIGITS = 4


# Significant digits of measured figures (timings, rates, sizes): noise lives past the third.
# Agreement figures are read against thresholds such as 0.99, so they keep four.
FIGURE_DIGITS = 3
AGREEMENT_DIGITS = 4


def format_number(value: float, digits: int | None = None) -> str:
    """A number for people: thousands grouped, never scientific notation.

    digits=N: exactly N significant digits, trailing zeros kept, so a table column reads at one
    precision (175 -> "175.0" at 4); a number with more integer digits than N is rounded at the
    Nth (12,345 -> "12,300" at 3). digits=None: integers as they are, other numbers to 4
    significant digits with trailing zeros dropped (for figures in running text).
    """
    if isinstance(value, int) and (digits is None or abs(value) < 10**digits):
        return f"{value:,}"
    value = float(value)
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    rounded = float(f"{value:.{(digits or DEFAULT_DIGITS) - 1}e}")  # exact significant-digit rounding
    decimals = max(0, (digits or DEFAULT_DIGITS) - 1 - math.floor(math.log10(abs(rounded))))
    text = f"{rounded:,.{decimals}f}"
    if digits is None and "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def format_percent(fraction: float | None, digits: int = 3) -> str:
    """A fraction as a percentage at `digits` significant digits; None as 'not available'."""
    return "not available" if fraction is None else f"{format_number(100 * fraction, digits)}%"


def format_value(value: Any, digits: int | None = None) -> str:
    """One figure as text (format_number for numbers), None as 'not available'."""
    if value is None:
        return "not available"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        return format_number(value, digits)
    if isinstance(value, (list, tuple)) and all(not isinstance(v, (dict, list, tuple)) for v in value):
        return ", ".join(format_value(v) for v in value) if value else "none"
    if isinstance(value, dict) and all(not isinstance(v, (dict, list, tuple)) for v in value.values()):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items()) if value else "none"
    return str(value)


@dataclass(frozen=True)
class Table:
    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class Column:
    """A table column: its header (naming the unit) and how many significant digits its numbers
    get (None: counts and other integers as they are)."""

    header: str
    digits: int | None = None


def make_table(title: str, columns: Sequence[Column], rows: Sequence[Sequence[Any]]) -> Table:
    """Rows of raw values -> a Table of text: numbers at their column's digits, text as it is."""
    return Table(title, tuple(c.header for c in columns), tuple(
        tuple(v if isinstance(v, str) else format_value(v, c.digits) for c, v in zip(columns, row, strict=True))
        for row in rows))


@dataclass(frozen=True)
class FigureBlock:
    """Scalar figures as (name, text) pairs, and list-of-record figures as tables."""

    scalars: tuple[tuple[str, str], ...]
    tables: tuple[Table, ...]


def table_from_records(title: str, records: list[dict[str, Any]]) -> Table:
    columns: list[str] = []
    for record in records:
        columns.extend(k for k in record if k not in columns)
    rows = tuple(tuple(format_value(r.get(c)) for c in columns) for r in records)
    return Table(title, tuple(columns), rows)


def figure_blocks(figures: dict[str, Any]) -> FigureBlock:
    scalars, tables = [], []
    for key, value in figures.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            tables.append(table_from_records(key, value))
        elif isinstance(value, dict) and value and all(isinstance(v, dict) for v in value.values()):
            tables.append(table_from_records(key, [{"": k, **v} for k, v in value.items()]))
        else:
            scalars.append((key, format_value(value)))
    return FigureBlock(tuple(scalars), tuple(tables))


@dataclass(frozen=True)
class CheckView:
    name: str
    title: str
    status: str
    reason: str
    duration: str
    figures: FigureBlock
    workarounds: tuple[str, ...]


@dataclass(frozen=True)
class ProbeView:
    overall_status: str
    overall_reason: str
    exit_code: int
    target_probed: bool
    workarounds: tuple[str, ...]
    bench_settings: tuple[tuple[str, str], ...]
    created_at: str
    tool_version: str
    config: tuple[tuple[str, str], ...]
    facts: tuple[tuple[str, str], ...]
    checks: tuple[CheckView, ...]


def check_view(result: CheckResult) -> CheckView:
    duration = "" if result.duration_s is None else f"{result.duration_s:.1f} s"
    return CheckView(
        name=result.name,
        title=result.title,
        status=STATUS_MARK[result.status],
        reason=result.reason.replace("|", "\\|").replace("\n", " "),
        duration=duration,
        figures=figure_blocks(result.figures),
        workarounds=result.workarounds,
    )


def probe_view(report: ProbeReport) -> ProbeView:
    return ProbeView(
        overall_status=report.overall.status.value,
        overall_reason=report.overall.reason,
        exit_code=report.overall.exit_code,
        target_probed=report.overall.target_probed,
        workarounds=report.overall.workarounds,
        bench_settings=tuple((k, str(v)) for k, v in report.bench_settings.items()),
        created_at=report.created_at,
        tool_version=report.tool_version,
        config=tuple((k, format_value(v)) for k, v in report.config.items()),
        facts=tuple((k, format_value(v)) for k, v in report.facts.items()),
        checks=tuple(check_view(r) for r in report.checks),
    )
