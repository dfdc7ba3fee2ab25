"""`bench compare`: B/A ratios from the raw samples of two runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main as bench_cli
from bench.report.compare import compare_runs

RUN = Path(__file__).parent / "fixtures" / "results" / "conditional" / "bench.json"


def slowed(payload: dict, backend: str, factor: float) -> dict:
    """The same run with every successful latency sample of one backend multiplied by factor."""
    copy = json.loads(json.dumps(payload))
    for m in copy["measurements"]:
        if m["backend"] == backend and m["scenario"] == "single":
            for s in m["samples"]:
                if s["ok"]:
                    s["value"] *= factor
    return copy


def test_ratio_follows_the_samples():
    a = json.loads(RUN.read_text())
    rows = compare_runs(a, slowed(a, "ollama", 2.0))
    p50 = {(r.backend, r.text_set): r for r in rows if r.metric == "single p50 ms"}
    assert p50[("ollama", "short")].ratio == pytest.approx(2.0)
    assert p50[("native-fp16", "short")].ratio == pytest.approx(1.0)


def test_cli_prints_ratios_and_rejects_bad_files(tmp_path):
    b = tmp_path / "b.json"
    b.write_text(json.dumps(slowed(json.loads(RUN.read_text()), "ollama", 2.0)))
    outcome = CliRunner().invoke(bench_cli, ["compare", str(RUN), str(b)])
    assert outcome.exit_code == 0, outcome.output
    assert "2.00×" in outcome.output
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    outcome = CliRunner().invoke(bench_cli, ["compare", str(RUN), str(bad)])
    assert outcome.exit_code == 1 and "bad.json" in outcome.output and "not valid JSON" in outcome.output
