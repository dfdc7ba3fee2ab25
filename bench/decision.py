"""The ticket's 'Expected Outcomes' table as a pure function of measured figures.

The rule, in the order it is applied (RULES below prints it in every verdict; the README's
decision table says the same, and a test holds the two together):

1. Probe. "incompatible" (a critical check failed on the GPU: kernels wrong or no dtype gives
   finite vectors) closes the TD. A probe that did not run on the target, or could not run a
   critical check, leaves it Inconclusive. A configuration (forced TF32) or a model that cannot
   be downloaded is never "incompatible".
2. Evidence. Both sides measured, native on the GPU, the bench complete, a throughput and a
   quality comparison: without any of them the answer is Inconclusive, naming what is missing.
   Per-text failures are not missing evidence: the rest of the texts are compared.
3. Speed is throughput at each side's best setting (batch size or token budget), per text set,
   judged by the 95 % CI of the native/Ollama ratio across whole passes: "≥ 2× faster" needs
   the CI's lower bound ≥ 2.0; "faster" ≥ 1.25; "similar" a CI inside (0.8, 1.25); "slower"
   below. A CI that straddles a threshold is "borderline": the set takes the class of the
   CI's lower bound (the conservative reading) and the verdict says what would settle it.
4. Outcome. Every set ≥ 2× and no issue: Create Migration TD. Every set similar or slower:
   Keep Ollama. Anything else (faster below 2×, sets that differ, or issues): the conditional
   TD, naming the sets.
5. Issues make a migration conditional: probe workarounds, vectors that do not agree, texts
   one side truncated, texts native cannot embed, Ollama's placement not verified.
6. Ollama not fully on the GPU (/api/ps size_vram < size): a faster native is not credited
   (Inconclusive, with the fix); a native that is not faster even then still keeps Ollama.
7. Texts Ollama cannot embed while native can are findings, named with count and error; they
   do not make the answer Inconclusive.
8. Single-text latency is reported beside the decision, not in it: one query text is
   memory-bound, both sides share that floor (see the roofline), so its ratio says little
   about which engine is faster.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

MIGRATION_SPEEDUP = 2.0  # the ticket: "Native 2x+ faster"
SIMILAR_BELOW = 1.25  # native/Ollama below this (and above SIMILAR_ABOVE) counts as similar
SIMILAR_ABOVE = 1 / SIMILAR_BELOW  # 0.8: below this native is slower
COSINE_MEAN_MIN = 0.99
COSINE_P1_MIN = 0.98
NEIGHBOUR_AGREEMENT_MIN = 0.90  # mean top-10 overlap between Ollama and native rankings

RULES: tuple[tuple[str, str], ...] = (
    ("probe", "“incompatible” (a critical check failed on the GPU) closes the TD; a probe not run on the "
              "target, or with a critical check not run, is Inconclusive"),
    ("evidence", "both sides measured, native on the GPU, the bench complete, throughput and quality "
                 "compared; otherwise Inconclusive, naming what is missing"),
    ("speed", f"throughput at each side's best setting, per text set, by the 95 % CI of the native/Ollama "
              f"ratio across whole passes: ≥ {MIGRATION_SPEEDUP:g}× when the CI's lower bound is ≥ "
              f"{MIGRATION_SPEEDUP:g}; faster when ≥ {SIMILAR_BELOW:g}; similar when the CI lies inside "
              f"({SIMILAR_ABOVE:g}, {SIMILAR_BELOW:g}); slower below; a CI across a threshold is borderline "
              "and takes the lower class"),
    ("outcome", f"every set ≥ {MIGRATION_SPEEDUP:g}× and no issue: Create Migration TD; every set similar "
                "or slower: Keep Ollama; anything else: conditional TD, naming the sets"),
    ("issues", "probe workarounds, vectors that do not agree, texts one side truncated, texts native "
               "cannot embed, Ollama's placement not verified: a migration becomes conditional"),
    ("placement", "Ollama not fully on the GPU: a faster native is not credited (Inconclusive, with the fix)"),
    ("findings", "texts Ollama cannot embed while native can are named with count and error; they do not "
                 "make the answer Inconclusive"),
    ("latency", "single-text latency is reported beside the decision, not in it (one text is memory-bound: "
                "both sides share that floor)"),
    ("quality", f"per-text cosine mean ≥ {COSINE_MEAN_MIN} and p1 ≥ {COSINE_P1_MIN}; top-10 neighbour "
                f"agreement ≥ {NEIGHBOUR_AGREEMENT_MIN}"),
)


class Outcome(str, Enum):
    MIGRATE = "Create Migration TD"
    CONDITIONAL = "Document workarounds, conditional TD"
    KEEP = "Keep Ollama (simpler architecture)"
    CLOSE = "Close TD, document findings"
    INCONCLUSIVE = "Inconclusive"


class SpeedClass(str, Enum):
    MIGRATION = f"≥ {MIGRATION_SPEEDUP:g}× faster"
    FASTER = f"faster, below {MIGRATION_SPEEDUP:g}×"
    SIMILAR = "similar"
    SLOWER = "slower"


THRESHOLDS: tuple[float, ...] = (SIMILAR_ABOVE, SIMILAR_BELOW, MIGRATION_SPEEDUP)


def classify(ratio: float) -> SpeedClass:
    if ratio >= MIGRATION_SPEEDUP:
        return SpeedClass.MIGRATION
    if ratio >= SIMILAR_BELOW:
        return SpeedClass.FASTER
    if ratio > SIMILAR_ABOVE:
        return SpeedClass.SIMILAR
    return SpeedClass.SLOWER


@dataclass(frozen=True)
class SpeedComparison:
    """Native vs Ollama on one text set and one metric; ratio > 1 means native is faster.

    ci95_low/high: across whole passes (throughput) or calls (latency); None when a side has
    fewer than two. passes: (native, Ollama) passes or calls behind the ratio.
    """

    text_set: str
    metric: str  # "throughput (best setting)" | "single-text latency p50"
    ratio: float
    ci95_low: float | None
    ci95_high: float | None
    detail: str
    passes: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class SetSpeed:
    """One set's throughput comparison read by the rule: its class and whether it is borderline."""

    comparison: SpeedComparison
    speed_class: SpeedClass
    straddles: tuple[float, ...]  # thresholds inside the CI
    settle: str | None  # for a borderline set: what would settle it

    @property
    def borderline(self) -> bool:
        return bool(self.straddles) or self.comparison.ci95_low is None


def read_set(comparison: SpeedComparison) -> SetSpeed:
    """The rule's reading of one throughput comparison (pure)."""
    r, low, high = comparison.ratio, comparison.ci95_low, comparison.ci95_high
    if low is None or high is None:
        point = classify(r)
        # "≥ 2×" needs a lower bound: without a CI the claim stops below it.
        cls = SpeedClass.FASTER if point is SpeedClass.MIGRATION else point
        return SetSpeed(comparison, cls, (), "no CI: repeat the best setting (profile best_setting_passes ≥ 3)")
    straddles = tuple(t for t in THRESHOLDS if low < t <= high)
    settle = None
    if straddles:
        threshold = min(straddles, key=lambda t: abs(t - r))
        passes = min(comparison.passes) or 1
        half_width = (high - low) / 2
        if r > threshold and half_width > 0:
            needed = math.ceil(passes * (half_width / (r - threshold)) ** 2)
            settle = (f"about {needed} passes per side at the best setting would bring the CI above "
                      f"{threshold:g}× if the ratio holds")
        else:
            settle = f"the ratio sits at or below {threshold:g}×: more passes would most likely confirm that"
    return SetSpeed(comparison, classify(low), straddles, settle)


@dataclass(frozen=True)
class DecisionInputs:
    probe_status: str | None  # probe.json overall status; None if no probe ran
    probe_target_probed: bool
    probe_reason: str
    workarounds: tuple[str, ...]
    bench_complete: bool
    native_device: str | None
    missing: tuple[str, ...]  # sides or figures that were not measured, in words
    throughput: tuple[SpeedComparison, ...]  # decisive: one per text set
    quality_ok: bool | None  # None: not compared
    quality_issues: tuple[str, ...]
    truncation_issues: tuple[str, ...]
    latency: tuple[SpeedComparison, ...] = ()  # reported beside the decision
    ollama_placement: str | None = "gpu"  # "gpu" | "partial" | "cpu" | None (not reported)
    ollama_text_failures: tuple[str, ...] = ()  # findings: texts Ollama cannot embed, in words
    native_text_failures: tuple[str, ...] = ()  # issues: texts native cannot embed, in words


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reasons: tuple[str, ...]
    sets: tuple[SetSpeed, ...] = ()  # the throughput reading per set

    @property
    def borderline(self) -> bool:
        return any(s.borderline for s in self.sets)


PLACEMENT_FIX = ("give Ollama the whole model on the GPU (free device memory, leave num_gpu unset, keep the "
                 "compose GPU reservation) and re-run")


def _set_reason(s: SetSpeed) -> str:
    c = s.comparison
    if c.ci95_low is None:
        return (f"'{c.text_set}': native/Ollama {c.ratio:.2f}× ({c.detail}) — borderline, {s.settle}; "
                f"the decision reads it as {s.speed_class.value}")
    ci = f"95 % CI {c.ci95_low:.2f}–{c.ci95_high:.2f}×"
    if not s.straddles:
        return f"'{c.text_set}': native {s.speed_class.value} ({c.ratio:.2f}×, {ci}; {c.detail})"
    across = ", ".join(f"{t:g}×" for t in s.straddles)
    return (f"'{c.text_set}': native/Ollama {c.ratio:.2f}× ({ci}; {c.detail}) — borderline: the CI crosses "
            f"{across}, so the decision reads the CI's lower end: {s.speed_class.value}; {s.settle}")


def decide(inputs: DecisionInputs) -> Decision:
    if inputs.probe_status == "incompatible":
        return Decision(Outcome.CLOSE, (f"the probe found the native path incompatible: {inputs.probe_reason}",))

    gaps = list(inputs.missing)
    if inputs.probe_status is None:
        gaps.append("no probe results (run the probe first)")
    elif not inputs.probe_target_probed:
        gaps.append("the probe saw no CUDA device, so GPU compatibility was not checked")
    elif inputs.probe_status not in ("compatible", "compatible with workarounds"):
        gaps.append(f"the probe is '{inputs.probe_status}': {inputs.probe_reason}")
    if not (inputs.native_device or "").startswith("cuda"):
        gaps.append(f"native ran on {inputs.native_device or 'no device'}, not on the target GPU")
    if not inputs.bench_complete:
        gaps.append("the bench run is partial")
    if not inputs.throughput:
        gaps.append("no throughput comparison between the two sides")
    if inputs.quality_ok is None:
        gaps.append("no quality comparison between the two sides")
    sets = tuple(read_set(c) for c in inputs.throughput)  # read even when Inconclusive: the verdict shows them
    if gaps:
        return Decision(Outcome.INCONCLUSIVE, (*gaps, *inputs.ollama_text_failures, *inputs.native_text_failures),
                        sets)

    classes = {s.speed_class for s in sets}
    speed = [_set_reason(s) for s in sets]
    findings = list(inputs.ollama_text_failures)
    latency = [f"beside the decision, single-text latency p50 on '{c.text_set}': native/Ollama {c.ratio:.2f}× "
               f"({c.detail})" for c in inputs.latency]
    tail = [*findings, *latency]
    native_faster = bool(classes & {SpeedClass.MIGRATION, SpeedClass.FASTER})

    if inputs.ollama_placement in ("partial", "cpu") and native_faster:
        where = "partly on the CPU" if inputs.ollama_placement == "partial" else "on the CPU"
        return Decision(Outcome.INCONCLUSIVE, (
            f"Ollama ran {where} (/api/ps size_vram < size): native's speed-up is not credited against it; "
            f"{PLACEMENT_FIX}", *speed, *tail), sets)
    if classes <= {SpeedClass.SIMILAR, SpeedClass.SLOWER}:
        return Decision(Outcome.KEEP, (*speed, *tail), sets)

    issues = [*(f"workaround needed: {w}" for w in inputs.workarounds), *inputs.quality_issues,
              *inputs.truncation_issues, *inputs.native_text_failures]
    if inputs.ollama_placement is None:
        issues.append("Ollama's placement was not reported (/api/ps): not verified to run on the GPU")
    if classes == {SpeedClass.MIGRATION} and not issues:
        return Decision(Outcome.MIGRATE, (*speed, "no issues found", *tail), sets)
    if classes != {SpeedClass.MIGRATION}:
        below = [f"'{s.comparison.text_set}' ({s.speed_class.value})" for s in sets
                 if s.speed_class is not SpeedClass.MIGRATION]
        issues.insert(0, f"below the ticket's {MIGRATION_SPEEDUP:g}× bar on " + ", ".join(below))
    return Decision(Outcome.CONDITIONAL, (*speed, *issues, *tail), sets)
