"""The ticket's 'Expected Outcomes' table as a pure function of measured figures.

The rule, in the order it is applied (RULES below prints it in every verdict; the README's
decision table says the same, and a test holds the two together):

1. Probe. "incompatible" (a critical check failed on the GPU: kernels wrong or no dtype gives
   finite vectors) closes the TD -- unless the failed check said the model cannot run there
   (torch build, kernels, model smoke) and the bench ran native on the GPU with vectors that match
   Ollama's: then probe and bench disagree and the answer is Inconclusive. A probe that
   did not run on the target, or could not run a critical check, leaves it Inconclusive. A
   configuration (forced TF32), a model that cannot be downloaded, memory other processes hold
   or a crashed check is never "incompatible".
2. Evidence. Both sides measured, native a bge-m3-shaped model (its recorded config: a
   fine-tune qualifies, the smoke profile's MiniLM does not) with trained weights on the GPU,
   the bench complete, a throughput and a quality comparison: without any of them the answer is
   Inconclusive, naming what is missing.
   Per-text failures are not missing evidence: the rest of the texts are compared.
3. Speed is throughput at each side's best setting (batch size or token budget), per text set:
   the ratio of geometric means of fresh whole passes, native/Ollama, with its 95 % CI (Welch
   t on the logs). A set is read by its ratio: "≥ 2× faster" (and only when the CI's lower
   bound is ≥ 2.0, else "faster"), "faster" from 1.25, "similar" inside (0.8, 1.25), "slower"
   below. A CI that crosses a threshold makes the set "borderline": it keeps that reading,
   never more than "faster", and the verdict says how many passes would settle it. "Similar"
   holds only with the CI inside the band: a similar ratio whose CI reaches 1.25 cannot keep
   Ollama (nor can a faster one whose CI reaches down into the band migrate): both give the
   conditional outcome, the middle answer when the passes cannot tell.
4. Outcome. Every set compared and ≥ 2×, and no issue: Create Migration TD. Every set similar
   (its CI below 1.25) or slower, and no text that only Ollama fails: Keep Ollama. Anything else (faster below 2×,
   sets that differ, issues, a set not compared): the conditional TD, naming the sets. Every
   text set must have a comparison; one Ollama cannot embed at all for a known per-text cause
   (bench/data/field_knowledge.json) is a finding, one native cannot embed is an issue, any
   other gap (Ollama failing a whole set with an unexplained error included) is missing evidence.
5. Issues make a migration conditional: probe workarounds, vectors that do not agree, texts
   one side truncated, texts native cannot embed, Ollama's placement not verified, native
   slower on single-text latency (its CI below 0.8).
6. Ollama not fully on the GPU (/api/ps size_vram < size): a faster native is not credited
   (Inconclusive, with the fix); a native that is not faster even then still keeps Ollama.
7. Texts Ollama cannot embed while native can, and Ollama calls that failed outside what the
   decision reads (another batch size, batch latency, concurrency), are findings named with
   count and error; they do not make the answer Inconclusive, and they rule out "Keep Ollama"
   (the current service would need a workaround). Such failed calls on the native side are
   issues (a migration becomes conditional).
8. Single-text latency is reported beside the decision, read against its physical floor: one
   query text is memory-bound and both sides share that floor (see the roofline), so a ratio
   near 1 does not undo a throughput win; only a native that is clearly slower (rule 5) counts.
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
    ("probe", "“incompatible” (a critical check failed on the GPU) closes the TD, unless the check said the model "
              "cannot run there (torch build, kernels, model smoke) and the bench ran native on the GPU with matching vectors "
              "(then Inconclusive: the two disagree); a probe not run on the target, or with a critical check not "
              "run, is Inconclusive"),
    ("evidence", "both sides measured, native a bge-m3-shaped model with trained weights on the GPU, the bench "
                 "complete, throughput and quality compared; otherwise Inconclusive, naming what is missing"),
    ("speed", f"throughput at each side's best setting, per text set: the native/Ollama ratio over fresh whole "
              f"passes with its 95 % CI; ≥ {MIGRATION_SPEEDUP:g}× only when the CI's lower bound is ≥ "
              f"{MIGRATION_SPEEDUP:g}; faster from {SIMILAR_BELOW:g}; similar inside ({SIMILAR_ABOVE:g}, "
              f"{SIMILAR_BELOW:g}); slower below; a CI across a threshold is borderline, never more than faster, and similar only with the "
              f"CI inside the band"),
    ("outcome", f"every set compared and ≥ {MIGRATION_SPEEDUP:g}×, and no issue: Create Migration TD; every set "
                f"similar (CI below {SIMILAR_BELOW:g}) or slower and no text only Ollama fails: Keep Ollama; anything "
                "else: conditional TD, "
                "naming the sets; a set without a comparison is missing evidence unless one side cannot embed "
                "it at all for a known per-text cause"),
    ("issues", "probe workarounds, vectors that do not agree, texts one side truncated, texts native "
               "cannot embed, Ollama's placement not verified, native slower on single-text latency: a "
               "migration becomes conditional"),
    ("placement", "Ollama not fully on the GPU: a faster native is not credited (Inconclusive, with the fix)"),
    ("findings", "texts Ollama cannot embed while native can, and Ollama calls that failed outside what is "
                 "decided on (a batch size, concurrency), are named with count and error; they do not make the "
                 "answer Inconclusive, and they rule out Keep Ollama; native's such failures are issues"),
    ("latency", "single-text latency is reported beside the decision, against its physical floor (one text is "
                "memory-bound: both sides share that floor); only a native clearly slower on it is an issue"),
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
    # Sample stdev of each side's log pass rates (native, Ollama): how many passes would settle a
    # borderline set. None: derived from the CI as if both sides varied alike.
    sd_logs: tuple[float, float] | None = None


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
    """The rule's reading of one throughput comparison (pure): the ratio's class, "≥ 2×" only
    with the CI's lower bound at 2 or above; borderline when the CI crosses a threshold, with
    the passes that would settle it."""
    r, low, high = comparison.ratio, comparison.ci95_low, comparison.ci95_high
    point = classify(r)
    if low is None or high is None:
        # "≥ 2×" needs a lower bound: without a CI the claim stops below it.
        cls = SpeedClass.FASTER if point is SpeedClass.MIGRATION else point
        return SetSpeed(comparison, cls, (), NO_CI)
    straddles = tuple(t for t in THRESHOLDS if low < t <= high)
    settle = settle_text(comparison, min(straddles, key=lambda t: abs(math.log(t / r)))) if straddles else None
    cls = SpeedClass.FASTER if point is SpeedClass.MIGRATION and low < MIGRATION_SPEEDUP else point
    return SetSpeed(comparison, cls, straddles, settle)


NO_CI = "no CI: repeat the best setting (profile best_setting_passes ≥ 2)"


def settle_text(comparison: SpeedComparison, threshold: float) -> str:
    """How many passes per side would put the CI on one side of `threshold`, if ratio and spreads hold."""
    from scipy import stats as scipy_stats

    from bench.analyse.stats import passes_to_clear

    r, low, high = comparison.ratio, comparison.ci95_low, comparison.ci95_high
    passes = min(comparison.passes)
    if low is None or high is None or passes < 2:
        return NO_CI
    if comparison.sd_logs is not None:
        sd_native, sd_ollama = comparison.sd_logs
    else:  # both sides alike: half width = t(2(n-1)) * sqrt(2 s^2 / n), the interval symmetric in logs
        sd_native = sd_ollama = (math.log(high / low) / 2 / float(scipy_stats.t.ppf(0.975, 2 * (passes - 1)))
                                 * math.sqrt(passes / 2))
    needed = passes_to_clear(sd_native, sd_ollama, abs(math.log(r / threshold)), start=passes)
    if needed is None:
        return f"the ratio sits on {threshold:g}×: no number of passes would settle it"
    side = "above" if r > threshold else "below"
    return (f"about {needed} passes per side at the best setting would put the CI {side} {threshold:g}× "
            "if the ratio and its spread hold")


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
    ollama_only_failures: int = 0  # texts Ollama could not embed that native embedded
    sets_without_comparison: tuple[str, ...] = ()  # sets one side could embed none of (no speed ratio)
    # Timed calls that failed outside what the decision reads (other batch sizes, batch latency,
    # concurrency), in words: Ollama's are findings that rule out Keep, native's are issues.
    ollama_call_failures: tuple[str, ...] = ()
    native_call_failures: tuple[str, ...] = ()
    probe_failed_checks: tuple[str, ...] = ()  # names of the probe's checks that failed
    memory_notes: tuple[str, ...] = ()  # calls that ran out of memory outside the deciding figures


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    reasons: tuple[str, ...]
    sets: tuple[SetSpeed, ...] = ()  # the throughput reading per set

    @property
    def borderline(self) -> bool:
        return any(s.borderline for s in self.sets)


# Checks whose failure says "the model cannot run natively on this GPU" -- which a bench run of
# native on the GPU with vectors matching Ollama's puts in doubt (kernels: the failed op may be
# in a dtype no measured backend used). Attention with a padding mask is not refuted: the
# compared vectors come from unpadded one-text calls.
CHECKS_A_RUN_CAN_REFUTE = frozenset({"torch_build", "sentence_transformers", "kernels"})

PLACEMENT_FIX = ("give Ollama the whole model on the GPU (free device memory, leave num_gpu unset, keep the "
                 "compose GPU reservation) and re-run")


def _set_reason(s: SetSpeed) -> str:
    c = s.comparison
    if c.ci95_low is None:
        return (f"'{c.text_set}': native {s.speed_class.value} ({c.ratio:.2f}×; {c.detail}) — borderline, {s.settle}")
    ci = f"95 % CI {c.ci95_low:.2f}–{c.ci95_high:.2f}×"
    if not s.straddles:
        return f"'{c.text_set}': native {s.speed_class.value} ({c.ratio:.2f}×, {ci}; {c.detail})"
    across = ", ".join(f"{t:g}×" for t in s.straddles)
    return (f"'{c.text_set}': native {s.speed_class.value} ({c.ratio:.2f}×, {ci}; {c.detail}) — borderline: "
            f"the CI crosses {across}; {s.settle}")


def _slower_latency(latency: tuple[SpeedComparison, ...]) -> list[str]:
    """Native clearly slower on one query text (its CI below the similar band): an issue."""
    return [f"native slower on single-text latency on '{c.text_set}' ({c.ratio:.2f}×, 95 % CI "
            f"{c.ci95_low:.2f}–{c.ci95_high:.2f}×; {c.detail})"
            for c in latency if c.ci95_high is not None and c.ci95_high < SIMILAR_ABOVE]


def decide(inputs: DecisionInputs) -> Decision:
    if inputs.probe_status == "incompatible":
        contradicted = bool(inputs.probe_failed_checks) and set(inputs.probe_failed_checks) <= CHECKS_A_RUN_CAN_REFUTE
        if contradicted and (inputs.native_device or "").startswith("cuda") and inputs.quality_ok and inputs.throughput:
            return Decision(Outcome.INCONCLUSIVE, (
                f"the probe found the native path incompatible ({inputs.probe_reason}), yet the bench ran it on "
                "the GPU with vectors that match Ollama's: the two disagree; re-run the probe and read that "
                "check's reason before deciding",))
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
    latency = [f"beside the decision, single-text latency p50 on '{c.text_set}': native/Ollama {c.ratio:.2f}× "
               f"({c.detail})" for c in inputs.latency]
    tail = [*inputs.ollama_text_failures, *inputs.ollama_call_failures,
            *(f"capacity, beside the decision: {line}" for line in inputs.memory_notes), *latency]
    native_faster = bool(classes & {SpeedClass.MIGRATION, SpeedClass.FASTER})
    issues = [*(f"workaround needed: {w}" for w in inputs.workarounds), *inputs.quality_issues,
              *inputs.truncation_issues, *inputs.native_text_failures, *inputs.native_call_failures,
              *_slower_latency(inputs.latency)]

    if inputs.ollama_placement not in ("gpu", None) and native_faster:
        where = "partly on the CPU" if inputs.ollama_placement == "partial" else f"on '{inputs.ollama_placement}'"
        where = "on the CPU" if inputs.ollama_placement == "cpu" else where
        return Decision(Outcome.INCONCLUSIVE, (
            f"Ollama ran {where} (/api/ps size_vram < size): native's speed-up is not credited against it; "
            f"{PLACEMENT_FIX}", *speed, *issues, *tail), sets)
    if classes <= {SpeedClass.SIMILAR, SpeedClass.SLOWER}:
        maybe_faster = [s for s in sets if SIMILAR_BELOW in s.straddles
                        or (s.comparison.ci95_high is None and s.speed_class is SpeedClass.SIMILAR)]
        if maybe_faster:
            return Decision(Outcome.CONDITIONAL, (
                "similar only as far as the passes can tell: " + ", ".join(
                    f"'{s.comparison.text_set}' " + (f"has no CI ({NO_CI})" if s.comparison.ci95_high is None else
                                                     f"reaches {s.comparison.ci95_high:.2f}× "
                                                     f"({settle_text(s.comparison, SIMILAR_BELOW)})")
                    for s in maybe_faster)
                + f"; keeping Ollama needs every CI below {SIMILAR_BELOW:g}×", *speed, *issues, *tail), sets)
        if inputs.ollama_only_failures:
            return Decision(Outcome.CONDITIONAL, (
                f"not as fast to matter, but Ollama cannot embed {inputs.ollama_only_failures} texts that native "
                "embeds: keeping Ollama needs a workaround for them", *speed, *issues, *tail), sets)
        if inputs.ollama_call_failures:
            return Decision(Outcome.CONDITIONAL, (
                "not as fast to matter, but Ollama failed timed calls (listed below): keeping Ollama needs a "
                "workaround for them", *speed, *issues, *tail), sets)
        return Decision(Outcome.KEEP, (*speed, *issues, *tail), sets)

    if inputs.ollama_placement is None:
        issues.append("Ollama's placement was not reported (/api/ps): not verified to run on the GPU")
    issues += [f"no speed comparison on '{name}': one side could embed none of its texts"
               for name in inputs.sets_without_comparison]
    if classes == {SpeedClass.MIGRATION} and not issues:
        return Decision(Outcome.MIGRATE, (*speed, "no issues found", *tail), sets)
    if classes != {SpeedClass.MIGRATION}:
        below = [f"'{s.comparison.text_set}' ({s.speed_class.value})" for s in sets
                 if s.speed_class is not SpeedClass.MIGRATION]
        issues.insert(0, f"below the ticket's {MIGRATION_SPEEDUP:g}× bar on " + ", ".join(below))
    return Decision(Outcome.CONDITIONAL, (*speed, *issues, *tail), sets)
