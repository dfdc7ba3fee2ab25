"""The ticket's 'Expected Outcomes' table as a pure function of measured figures.

Thresholds are constants here and are printed in the verdict itself, so a reader can
check the decision by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

MIGRATION_SPEEDUP = 2.0  # the ticket: "Native 2x+ faster"
SIMILAR_BELOW = 1.25  # below this speed-up the backends count as "similar performance"
COSINE_MEAN_MIN = 0.99
COSINE_P1_MIN = 0.98
NEIGHBOUR_AGREEMENT_MIN = 0.90  # mean top-10 overlap between Ollama and native rankings


class Outcome(str, Enum):
    MIGRATE = "Create Migration TD"
    CONDITIONAL = "Document workarounds, conditional TD"
    KEEP = "Keep Ollama (simpler architecture)"
    CLOSE = "Close TD, document findings"
    INCONCLUSIVE = "Inconclusive"


@dataclass(frozen=True)
class SpeedComparison:
    """Native vs Ollama on one text set and one metric; ratio > 1 means native is faster."""

    text_set: str
    metric: str  # "throughput (best setting)" | "single-text latency p50"
    ratio: float
    ci95_low: float | None
    ci95_high: float | None
    detail: str


@dataclass(frozen=True)
class DecisionInputs:
    probe_status: str | None  # probe.json overall status; None if no probe ran
    probe_target_probed: bool
    probe_reason: str
    workarounds: tuple[str, ...]
    bench_complete: bool
    native_device: str | None
    missing: tuple[str, ...]  # sides or figures that were not measured, in words
    speed: tuple[SpeedComparison, ...]
    quality_ok: bool | None  # None: not compared
    quality_issues: tuple[str, ...]
    truncation_issues: tuple[str, ...]


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reasons: tuple[str, ...]
    driving: SpeedComparison | None  # the comparison that set the speed verdict


def decide(inputs: DecisionInputs) -> Decision:
    if inputs.probe_status == "incompatible":
        return Decision(Outcome.CLOSE, (f"the probe found the native path incompatible: {inputs.probe_reason}",), None)

    gaps = list(inputs.missing)
    if inputs.probe_status is None:
        gaps.append("no probe results (run the probe first)")
    elif not inputs.probe_target_probed:
        gaps.append("the probe saw no CUDA device, so GPU compatibility was not checked")
    if not (inputs.native_device or "").startswith("cuda"):
        gaps.append(f"native ran on {inputs.native_device or 'no device'}, not on the target GPU")
    if not inputs.bench_complete:
        gaps.append("the bench run is partial")
    if not inputs.speed:
        gaps.append("no speed comparison between the two sides")
    if inputs.quality_ok is None:
        gaps.append("no quality comparison between the two sides")
    if gaps:
        return Decision(Outcome.INCONCLUSIVE, tuple(gaps), None)

    driving = min(inputs.speed, key=lambda s: s.ratio)  # "2x+ faster" must hold everywhere
    speed_reason = (f"slowest case for native: {driving.metric} on '{driving.text_set}', "
                    f"native/Ollama speed ratio {driving.ratio:.2f}×")
    issues = [*(f"workaround needed: {w}" for w in inputs.workarounds), *inputs.quality_issues,
              *inputs.truncation_issues]
    if driving.ratio < SIMILAR_BELOW:
        return Decision(Outcome.KEEP, (speed_reason + f" (< {SIMILAR_BELOW}× counts as similar)", *issues), driving)
    if driving.ratio >= MIGRATION_SPEEDUP and not issues:
        return Decision(Outcome.MIGRATE, (speed_reason + f" (>= {MIGRATION_SPEEDUP}×)", "no issues found"), driving)
    if driving.ratio < MIGRATION_SPEEDUP:
        issues.insert(0, f"faster, but below the ticket's {MIGRATION_SPEEDUP}× bar")
    return Decision(Outcome.CONDITIONAL, (speed_reason, *issues), driving)
