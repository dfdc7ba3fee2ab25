"""The probe stage as a plain function: gather facts, run checks, derive the answer, write files."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from probe import __version__
from probe.facts import redact_url_credentials
from probe.output import render_markdown, write_json_atomic, write_text_atomic
from probe.overall import derive_overall, merge_bench_settings
from probe.registry import Check, ProbeContext, run_checks
from probe.result import PROBE_SCHEMA_VERSION, CheckResult, ProbeReport
from probe.view import probe_view

PROBE_JSON = "probe.json"
PROBE_MD = "probe.md"


def run_probe(
    ctx: ProbeContext,
    checks: Sequence[Check],
    critical: frozenset[str],
    facts: object,
    on_result: Callable[[CheckResult], None] | None = None,
) -> ProbeReport:
    results = run_checks(checks, ctx, on_result)
    return ProbeReport(
        schema_version=PROBE_SCHEMA_VERSION,
        tool_version=__version__,
        created_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        config={
            "model": ctx.model,
            "ollama_host": redact_url_credentials(ctx.ollama_host),
            "ollama_model": ctx.ollama_model,
            "device": ctx.device,
            "quick": ctx.quick,
            "checks": [c.name for c in checks],
        },
        facts=dataclasses.asdict(facts) if dataclasses.is_dataclass(facts) else dict(facts),
        checks=tuple(results),
        overall=derive_overall(results, critical, target_probed=ctx.device is not None),
        bench_settings=merge_bench_settings(results),
    )


def write_probe_outputs(report: ProbeReport, results_dir: Path) -> tuple[Path, Path]:
    """probe.json first (the data), then probe.md rendered from it."""
    json_path = results_dir / PROBE_JSON
    md_path = results_dir / PROBE_MD
    write_json_atomic(json_path, report)
    write_text_atomic(md_path, render_markdown("probe.md.j2", probe_view(report)))
    return json_path, md_path
