"""A run on a stand-in with random weights is never mistaken for bge-m3: the decision is
Inconclusive naming why, and the title and quality tables say "random weights: speed and memory only"."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from bench.analyse.comparison import decision_inputs
from bench.analyse.decision import Outcome, SpeedComparison, decide
from bench.measure.standin_model import RANDOM_WEIGHTS_LABEL
from bench.report.verdict import load_results, render_verdict

FIXTURE = Path(__file__).parent / "fixtures" / "results" / "conditional"
STANDIN_WEIGHTS = {"random": True, "label": RANDOM_WEIGHTS_LABEL, "marker": {"random_weights": True, "seed": 73},
                   "source": "/models/bge-m3-standin/config.json key 'standin'"}


@pytest.fixture
def standin_results(tmp_path) -> Path:
    """The synthetic 'conditional' fixture, recorded as if its native model were a stand-in."""
    folder = tmp_path / "results"
    shutil.copytree(FIXTURE, folder)
    bench = json.loads((folder / "bench.json").read_text())
    bench["config"]["model_weights"] = STANDIN_WEIGHTS
    (folder / "bench.json").write_text(json.dumps(bench))
    return folder


def test_random_weights_make_the_decision_inconclusive_naming_why(standin_results):
    probe, bench = load_results(standin_results)
    inputs = decision_inputs(probe, bench)[0]
    assert any(r.startswith(RANDOM_WEIGHTS_LABEL) and "not BAAI/bge-m3" in r for r in inputs.missing)
    assert decide(inputs).outcome is Outcome.INCONCLUSIVE
    bench["config"]["model_weights"]["random"] = False  # the same figures from trained weights
    assert decide(decision_inputs(probe, bench)[0]).outcome is Outcome.CONDITIONAL


def test_random_weights_cannot_yield_a_migration(standin_results):
    """Figures that would create a migration TD (2x+ everywhere, no issues) stay Inconclusive."""
    probe, bench = load_results(standin_results)
    inputs = decision_inputs(probe, bench)[0]
    best_case = replace(inputs, throughput=tuple(SpeedComparison(s, "throughput (best setting)", 3.0, 2.8, 3.2, "",
                                                                 passes=(3, 3))
                                                 for s in ("short", "long", "documents")),
                        quality_ok=True, quality_issues=(), truncation_issues=(), workarounds=(),
                        ollama_placement="gpu", native_text_failures=())
    assert decide(best_case).outcome is Outcome.INCONCLUSIVE
    trained = replace(best_case, missing=tuple(m for m in best_case.missing if not m.startswith(RANDOM_WEIGHTS_LABEL)))
    assert decide(trained).outcome is Outcome.MIGRATE  # the control: only the random weights stop it


def test_title_and_quality_tables_carry_the_label(standin_results):
    decision, written = render_verdict(standin_results, with_plots=False)
    assert decision.outcome is Outcome.INCONCLUSIVE
    verdict = (standin_results / "verdict.md").read_text()
    assert verdict.startswith(f"# TD-073 verdict: Inconclusive ({RANDOM_WEIGHTS_LABEL})\n")
    quality = verdict[verdict.index("## Quality"):verdict.index("### Truncation")]
    assert quality.count(f"> **{RANDOM_WEIGHTS_LABEL}**") == 2  # vector agreement and retrieval
    agreement = quality.index("| backend | vs | set |")
    assert quality.rindex(RANDOM_WEIGHTS_LABEL, 0, agreement) < agreement  # the label comes before the table
    assert "| native weights | random weights: speed and memory only (stand-in, seed 73) |" in verdict
    assert not (standin_results / "TD-follow-up.md").exists()
