"""Throughput: whole-set passes for a sweep of batch sizes and token budgets, then fresh passes
at each backend's best setting; the batch-size-1 pass also gives per-text token counts
(truncation) and the vectors for quality."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.backends.base import BackendOutOfMemory, EmbeddingBackend
from bench.measure.state import (
    Reporter,
    RunState,
    WorkingSet,
    format_params,
    load_vectors,
    save,
    save_vectors,
)
from bench.results import (
    Failure,
    TruncationRecord,
)
from probe.output import to_jsonable

# Ollama and HF tokenizers may disagree by a special token or two; a smaller deficit is not a cut.
TRUNCATION_SLACK_TOKENS = 2


def cut_indices(expected: Sequence[int], reported: Sequence[int | None]) -> tuple[int, ...]:
    """Texts a backend cut: fewer tokens than the workload's count, and at the backend's ceiling
    on the set (the most it reported, less the slack). A cut ends where the limit is, whatever
    the limit is called (num_ctx, Ollama's num_batch, a server's batch); a count short of the
    workload's elsewhere is a tokenizer difference (e.g. NFKC-composed katakana), not a cut."""
    ceiling = max((n for n in reported if n is not None), default=0)
    return tuple(i for i, (want, got) in enumerate(zip(expected, reported))
                 if got is not None and got < want - TRUNCATION_SLACK_TOKENS
                 and got >= ceiling - TRUNCATION_SLACK_TOKENS)


def truncation_record(backend: EmbeddingBackend, description: dict[str, Any], text_set: str,
                      expected: Sequence[int], reported: Sequence[int | None]) -> TruncationRecord:
    """From a batch-size-1 pass: per text, the tokenizer's count vs the backend's own count."""
    cut = cut_indices(expected, reported)
    return TruncationRecord(
        backend=backend.name,
        text_set=text_set,
        limit=description.get("max_tokens"),
        limit_source=description.get("max_tokens_source", "not reported by the backend"),
        expected_tokens=tuple(expected),
        reported_tokens=tuple(reported),
        truncated=cut,
    )


def sweep_plan(profile, one_call_per_text: bool = False) -> list[dict[str, Any]]:
    """The throughput passes to run, as their params: batch sizes (input order, then
    length-sorted when the profile asks), then token budgets. The same for every backend,
    except one that makes one call per text whatever the batch (it says so in describe()):
    every batch size would repeat the same work, so it gets the batch-size-1 pass only."""
    if one_call_per_text:
        return [{"batch_size": 1}]
    plan: list[dict[str, Any]] = [{"batch_size": b} for b in profile.batch_sizes]
    if profile.length_sorted_sweep:
        plan += [{"batch_size": b, "order": "length"} for b in profile.batch_sizes]
    plan += [{"token_budget": t} for t in profile.token_budgets]
    return plan


def _halved(params: dict[str, Any]) -> dict[str, Any] | None:
    """The same pass at half the batch size or token budget; None below 1."""
    key = "token_budget" if "token_budget" in params else "batch_size"
    smaller = params[key] // 2
    return {**params, key: smaller} if smaller >= 1 else None


async def throughput_sweep(backend, description, working: WorkingSet, config, state, results_dir, reporter, skip):
    """Whole-set passes for each entry of sweep_plan, then more passes at the best setting;
    halves a batch size or token budget that runs out of memory.

    The input-order batch-size-1 pass also gives per-text token counts (truncation) and the
    vectors used for quality; where no such pass exists the first complete pass gives the vectors.
    Token-budget passes plan their batches from the token counts capped at the backend's max
    tokens (what it actually runs), the same counts analysis uses to know each batch's size.

    The best setting (highest texts/s of its first pass) is then passed over the whole set
    `profile.best_setting_passes` more times (params gain {"repeat": k}): the decision compares
    the two sides on these fresh passes, with a spread across whole passes, not within one.
    """
    from bench.analyse import figures

    pending = sweep_plan(config.profile, bool(description.get("one_call_per_text")))
    planned = [dict(p) for p in pending]
    have_vectors = load_vectors(results_dir, backend.name, working.name) is not None
    while pending:
        params = pending.pop(0)
        if skip("throughput", working.name, **params):
            continue
        result = await _throughput_pass(backend, description, working, params, state, results_dir, reporter)
        if result is None:
            smaller = _halved(params)
            if smaller is not None and smaller not in planned:
                pending.insert(0, smaller)
                planned.append(smaller)
                reporter.note(f"{backend.name}: retrying with {format_params(smaller)}")
            continue
        first_pass = params == {"batch_size": 1}
        if result.vectors is not None and (first_pass or not have_vectors):
            save_vectors(results_dir, backend.name, working.name, working.full_vectors(result.vectors))
            have_vectors = True
        if first_pass:
            state.truncation = [t for t in state.truncation
                                if (t.backend, t.text_set) != (backend.name, working.name)]
            state.truncation.append(truncation_record(backend, description, working.name, working.set_tokens,
                                                      working.full_counts(result.reported_tokens)))
        save(state, results_dir)
    best = figures.best_first_pass(to_jsonable([m for m in state.measurements if m.backend == backend.name
                                                 and m.text_set == working.name and m.scenario == "throughput"]),
                                    len(working.set_tokens))
    if best is None:
        return
    for repeat in range(1, config.profile.best_setting_passes + 1):
        params = {**best, "repeat": repeat}
        if skip("throughput", working.name, **params):
            continue
        if await _throughput_pass(backend, description, working, params, state, results_dir, reporter) is None:
            return  # out of memory at a setting that fitted before: recorded, no more repeats
        save(state, results_dir)


async def _throughput_pass(backend, description, working: WorkingSet, params: dict[str, Any], state: RunState,
                           results_dir: Path, reporter: Reporter):
    """One whole-set pass at `params` (batch size or token budget), recorded; None when it ran
    out of device memory (recorded as a failure)."""
    from bench.measure import scenarios
    from bench.measure.batching import capped_counts

    label = format_params(params)
    texts, tokens = working.texts, working.tokens
    try:
        with reporter.task(f"{backend.name} · {working.name} · throughput {label}", len(texts)) as adv:
            if "token_budget" in params:
                result = await scenarios.token_budget_pass(
                    backend, working.name, texts, capped_counts(tokens, description.get("max_tokens")),
                    params["token_budget"], adv)
            else:
                result = await scenarios.throughput_pass(backend, working.name, texts, tokens, params["batch_size"],
                                                         adv, length_sorted=params.get("order") == "length")
    except BackendOutOfMemory as err:
        state.failures.append(Failure(backend.name, working.name, "throughput",
                                      f"{label} did not fit in device memory ({err})"))
        save(state, results_dir)
        return None
    measurement = working.mark(result.measurement)
    if "repeat" in params:
        measurement = dataclasses.replace(measurement, params=dict(params))
    state.measurements.append(measurement)
    return result
