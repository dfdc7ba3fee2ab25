"""The bench loop: every configured backend through every scenario on every text set.

It knows backends only through the registry and the EmbeddingBackend protocol. Results
are written atomically after each measurement, so an interrupt or a crash keeps
everything measured so far (status "partial"), and `--resume` continues from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench import __version__
from bench.backends import BACKENDS, PROBE_GATES, ProbeGate
from bench.backends.base import BackendError, BackendOutOfMemory, BackendSettings, EmbeddingBackend
from bench.config import BenchConfig, config_differences, resolve_model
from bench.results import (
    BENCH_SCHEMA_VERSION,
    BackendRecord,
    Failure,
    Measurement,
    QualityRecord,
    RetrievalRecord,
    ScreenRecord,
    TextFailure,
    TruncationRecord,
)
from bench.stats import Sample, summarize
from probe.output import ResultsFileError, read_results_json, to_jsonable, write_json_atomic

BENCH_JSON = "bench.json"
VECTORS_DIR = "vectors"
# Ollama and HF tokenizers may disagree by a special token or two; a smaller deficit is not a cut.
TRUNCATION_SLACK_TOKENS = 2


class Reporter:
    """Progress sink. The CLI passes a rich-backed one; tests use this silent default."""

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda n: None

    def note(self, message: str) -> None:
        return None


@dataclasses.dataclass
class RunState:
    """Everything measured so far; `payload()` is what bench.json holds."""

    config: dict[str, Any]
    environment: dict[str, Any]
    workload: dict[str, Any]
    backends: dict[str, BackendRecord] = dataclasses.field(default_factory=dict)
    measurements: list[Measurement] = dataclasses.field(default_factory=list)
    truncation: list[TruncationRecord] = dataclasses.field(default_factory=list)
    quality: list[QualityRecord] = dataclasses.field(default_factory=list)
    retrieval: list[RetrievalRecord] = dataclasses.field(default_factory=list)
    failures: list[Failure] = dataclasses.field(default_factory=list)
    screening: list[ScreenRecord] = dataclasses.field(default_factory=list)
    status: str = "running"
    created_at: str = dataclasses.field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    # Measurements are frozen: serialise and summarise each once, not at every save
    # (the bootstrap in summarize made each save cost O(all samples so far)).
    _measurement_json: dict[str, tuple[Measurement, dict[str, Any]]] = dataclasses.field(
        default_factory=dict, repr=False)

    def done_keys(self) -> set[str]:
        return {m.key for m in self.measurements}

    def payload(self) -> dict[str, Any]:
        return {
            "kind": "bench",
            "schema_version": BENCH_SCHEMA_VERSION,
            "tool_version": __version__,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": self.config,
            "environment": self.environment,
            "workload": self.workload,
            "backends": {name: to_jsonable(rec) for name, rec in self.backends.items()},
            "measurements": [self._measurement_payload(m) for m in self.measurements],
            "truncation": to_jsonable(self.truncation),
            "quality": to_jsonable(self.quality),
            "retrieval": to_jsonable(self.retrieval),
            "failures": to_jsonable(self.failures),
            "screening": to_jsonable(self.screening),
        }

    def screen_of(self, backend: str, text_set: str) -> ScreenRecord | None:
        return next((r for r in self.screening if (r.backend, r.text_set) == (backend, text_set)), None)

    def excluded_for(self, backend: str, text_set: str) -> tuple[int, ...]:
        """Texts left out of this backend's measurements on this set (see analysis.excluded_for)."""
        from bench.analysis import excluded_for

        return excluded_for(to_jsonable(self.screening), backend, text_set)

    def _measurement_payload(self, m: Measurement) -> dict[str, Any]:
        cached = self._measurement_json.get(m.key)
        if cached is None or cached[0] is not m:
            cached = (m, {**to_jsonable(m), "key": m.key, "summary": to_jsonable(summarize(m.samples))})
            self._measurement_json[m.key] = cached
        return cached[1]


def save(state: RunState, results_dir: Path) -> Path:
    path = results_dir / BENCH_JSON
    write_json_atomic(path, state.payload())
    return path


def workload_digest(texts_by_set: dict[str, Sequence[str]]) -> str:
    digest = hashlib.sha256()
    for name, texts in sorted(texts_by_set.items()):
        digest.update(name.encode())
        for text in texts:
            digest.update(text.encode("utf-8", "surrogatepass"))
            digest.update(b"\0")
    return digest.hexdigest()[:16]


def restore_state(results_dir: Path, config_payload: dict[str, Any], digest: str) -> RunState:
    """Load a partial bench.json for --resume; refuse one from another config or workload."""
    data = read_results_json(results_dir / BENCH_JSON, "bench", BENCH_SCHEMA_VERSION)
    if data["workload"].get("digest") != digest:
        raise ResultsFileError(
            f"{results_dir / BENCH_JSON}: measured on other texts than this run's; "
            "resume needs the same profile, --texts and seed (or start over without --resume)."
        )
    if data["config"].get("profile", {}).get("name") != config_payload["profile"]["name"]:
        raise ResultsFileError(f"{results_dir / BENCH_JSON}: was run with another profile; resume needs the same one.")
    models = (data["config"].get("resolved_model"), data["config"].get("profile", {}).get("ollama_model"))
    if models != (config_payload["resolved_model"], config_payload["profile"]["ollama_model"]):
        raise ResultsFileError(f"{results_dir / BENCH_JSON}: was run with native model {models[0]!r} and Ollama "
                               f"model {models[1]!r}; resume needs the same --model and --ollama-model.")
    # Compared as JSON, as it was stored (tuples are lists there, paths strings).
    differences = config_differences(data["config"], json.loads(json.dumps(to_jsonable(config_payload))))
    if differences:
        shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
        raise ResultsFileError(
            f"{results_dir / BENCH_JSON}: was run with other settings ({shown}); --resume continues only the "
            "same run: use the same options, or start over without --resume."
        )
    state = RunState(config=config_payload, environment=data["environment"], workload=data["workload"],
                     created_at=data["created_at"])
    for m in data["measurements"]:
        fields = {f.name for f in dataclasses.fields(Measurement)}
        kwargs = {k: v for k, v in m.items() if k in fields}
        kwargs["samples"] = tuple(Sample(**s) for s in m["samples"])
        kwargs["overhead_ms"] = tuple(m.get("overhead_ms", ()))
        kwargs["notes"] = tuple(m.get("notes", ()))
        kwargs["excluded"] = tuple(m.get("excluded", ()))
        state.measurements.append(Measurement(**kwargs))
    for name, rec in data["backends"].items():
        state.backends[name] = BackendRecord(name=name, description=rec["description"], load=rec["load"],
                                             memory=tuple(rec["memory"]), error=rec["error"])
    state.failures.extend(Failure(**f) for f in data["failures"])
    state.screening.extend(
        ScreenRecord(r["backend"], r["text_set"], tuple(TextFailure(**f) for f in r["failures"]),
                     tuple(r["flaky"]), r["calls"], r["texts"], tuple(r.get("batch_errors", ())))
        for r in data["screening"]
    )
    state.truncation.extend(
        TruncationRecord(**{**t, **{k: tuple(t[k]) for k in ("expected_tokens", "reported_tokens", "truncated")}})
        for t in data["truncation"]
    )
    state.retrieval.extend(RetrievalRecord(**r) for r in data["retrieval"])
    return state


def vectors_path(results_dir: Path, backend: str, text_set: str) -> Path:
    return results_dir / VECTORS_DIR / f"{backend}__{text_set}.npy"


def save_vectors(results_dir: Path, backend: str, text_set: str, vectors: np.ndarray) -> None:
    path = vectors_path(results_dir, backend, text_set)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    try:
        np.save(tmp, vectors)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_vectors(results_dir: Path, backend: str, text_set: str) -> np.ndarray | None:
    path = vectors_path(results_dir, backend, text_set)
    return np.load(path) if path.exists() else None


def truncation_record(backend: EmbeddingBackend, description: dict[str, Any], text_set: str,
                      expected: Sequence[int], reported: Sequence[int | None]) -> TruncationRecord:
    """From a batch-size-1 pass: per text, the tokenizer's count vs the backend's own count."""
    cut = tuple(
        i for i, (want, got) in enumerate(zip(expected, reported))
        if got is not None and got < want - TRUNCATION_SLACK_TOKENS
    )
    return TruncationRecord(
        backend=backend.name,
        text_set=text_set,
        limit=description.get("max_tokens"),
        limit_source=description.get("max_tokens_source", "not reported by the backend"),
        expected_tokens=tuple(expected),
        reported_tokens=tuple(reported),
        truncated=cut,
    )


@dataclasses.dataclass(frozen=True)
class WorkingSet:
    """The texts of one set a backend is timed on: all but `excluded` (texts some backend could
    not embed, see analysis.excluded_for), in set order."""

    name: str
    indices: tuple[int, ...]  # into the whole set
    texts: list[str]
    tokens: list[int]
    set_tokens: tuple[int, ...]  # the whole set's token counts (for per-text records)
    excluded: tuple[int, ...]

    def mark(self, measurement: Measurement) -> Measurement:
        return dataclasses.replace(measurement, excluded=self.excluded)

    def full_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Working-set vectors placed at their set positions; NaN rows where a text was left out."""
        full = np.full((len(self.set_tokens), vectors.shape[1]), np.nan, dtype=vectors.dtype)
        full[list(self.indices)] = vectors
        return full

    def full_counts(self, reported: Sequence[int | None]) -> list[int | None]:
        counts: list[int | None] = [None] * len(self.set_tokens)
        for i, n in zip(self.indices, reported):
            counts[i] = n
        return counts


async def screen_backend(backend: EmbeddingBackend, text_sets, state: RunState, results_dir: Path,
                         reporter: Reporter, probe_checks: dict[str, dict[str, Any]] | None = None) -> None:
    """Phase 1, for every backend before any is timed: probe gate, cold load (the recorded load
    figure), screen every text set for per-text failures (bench/screening.py), unload.

    So every backend is then timed on the same texts: those no backend failed on. A backend
    the probe rules out, that cannot load, that stops answering (BackendUnavailable) or that
    fails every text of every set is recorded with its error and not measured.
    """
    from bench.batching import capped_counts
    from bench.screening import screen_texts

    name = backend.name
    record = state.backends.get(name)
    if record is not None and (record.error or all(state.screen_of(name, ts.name) for ts in text_sets)):
        return  # --resume: screened (or ruled out) already
    vetoed = gate_reason(PROBE_GATES.get(name), probe_checks)
    if vetoed:
        state.backends[name] = BackendRecord(name, backend.describe(), None, (), vetoed)
        state.failures.append(Failure(name, None, "probe gate", vetoed))
        reporter.note(f"[yellow]{name}[/]: skipped: {vetoed}")
        save(state, results_dir)
        return
    try:
        load = await backend.load()
    except BackendError as err:
        state.backends[name] = BackendRecord(name, backend.describe(), None, (), str(err))
        state.failures.append(Failure(name, None, "load", str(err)))
        reporter.note(f"[red]{name}[/]: {err}")
        save(state, results_dir)
        return
    description = backend.describe()
    if not load.cold:
        reporter.note(f"[yellow]{name}[/]: load not cold: {load.note}")
    # On resume the first (cold) load figure is kept: this load may have been warm.
    state.backends[name] = BackendRecord(name, description, record.load if record and record.load
                                         else to_jsonable(load), (), None)
    save(state, results_dir)
    try:
        for ts in text_sets:
            if state.screen_of(name, ts.name) is not None:
                continue
            texts = list(ts.texts)
            await backend.prepare(texts, list(ts.token_counts))  # as before every embed, timed or not
            with reporter.task(f"{name} · {ts.name} · screen for per-text failures", len(texts)) as adv:
                screened = await screen_texts(backend, ts.name, texts,
                                              capped_counts(ts.token_counts, description.get("max_tokens")), adv)
            state.screening.append(screened)
            for failure in screened.failures:
                reporter.note(f"[yellow]{name}[/]: cannot embed {ts.name} text {failure.index}: {failure.error}")
            save(state, results_dir)
        mine = [state.screen_of(name, ts.name) for ts in text_sets]
        if mine and all(r.every_text_failed for r in mine):
            error = f"every text of every set failed, first: {mine[0].failures[0].error}"
            state.backends[name] = dataclasses.replace(state.backends[name], error=error)
            state.failures.append(Failure(name, None, "screen", error))
    except BackendError as err:  # infrastructure (BackendUnavailable): not the texts
        error = f"stopped while screening: {err}"
        state.backends[name] = dataclasses.replace(state.backends[name], error=error)
        state.failures.append(Failure(name, None, "screen", error))
        reporter.note(f"[red]{name}[/]: {error}")
    finally:
        try:
            await backend.unload()
        except BackendError as err:
            reporter.note(f"{name}: unload failed: {err}")
        save(state, results_dir)


def working_set(ts, state: RunState, backend: str) -> WorkingSet | None:
    """The texts of `ts` this backend is timed on; None when none is left (recorded as a failure)."""
    texts, tokens = list(ts.texts), list(ts.token_counts)
    excluded = state.excluded_for(backend, ts.name)
    indices = tuple(i for i in range(len(texts)) if i not in set(excluded))
    if not indices:
        state.failures.append(Failure(backend, ts.name, "screen", "no text of this set to measure: this backend "
                                      "could not embed any (see screening)"))
        return None
    return WorkingSet(ts.name, indices, [texts[i] for i in indices], [tokens[i] for i in indices],
                      tuple(tokens), excluded)


async def measure_backend(backend: EmbeddingBackend, config: BenchConfig, text_sets, state: RunState,
                          results_dir: Path, reporter: Reporter, beir=None) -> None:
    """Phase 2: load again, run each scenario on each text set's common texts (working_set),
    record memory, unload. Saves after each step. Skips a backend phase 1 recorded an error for."""
    from bench import scenarios

    profile = config.profile
    record = state.backends.get(backend.name)
    if record is None or record.error:
        return
    try:
        await backend.load()  # the cold load was measured in phase 1
    except BackendError as err:
        state.backends[backend.name] = dataclasses.replace(record, error=str(err))
        state.failures.append(Failure(backend.name, None, "load", str(err)))
        reporter.note(f"[red]{backend.name}[/]: {err}")
        save(state, results_dir)
        return
    description = backend.describe()
    state.backends[backend.name] = dataclasses.replace(record, description=description)
    done = state.done_keys()

    def skip(scenario: str, text_set: str, **params: Any) -> bool:
        probe = Measurement(backend.name, text_set, scenario, params, (), 0, None, 0.0)
        return probe.key in done

    try:
        for ts in text_sets:
            # Per-text work for the whole set, here, outside every timer (this load starts empty).
            await backend.prepare(list(ts.texts), list(ts.token_counts))
            working = working_set(ts, state, backend.name)
            if working is None:
                continue
            texts, tokens = working.texts, working.tokens
            await scenarios.warm_up(backend, texts, profile.warmup_calls)
            steps: list[tuple[str, dict[str, Any], Callable[[Callable[[int], None]], Any], int]] = [
                ("single", {"calls": profile.single_latency_calls},
                 lambda adv: scenarios.single_text_latency(backend, ts.name, texts, tokens,
                                                           profile.single_latency_calls, adv),
                 profile.single_latency_calls),
                ("batch", {"batch_size": min(profile.batch_latency_size, len(texts))},
                 lambda adv: scenarios.batch_latency(backend, ts.name, texts, tokens, profile.batch_latency_size,
                                                     profile.batch_latency_repeats, adv),
                 profile.batch_latency_repeats),
            ]
            for callers in profile.concurrency_levels:
                steps.append((
                    "concurrency", {"callers": callers, "requests": profile.concurrency_requests},
                    lambda adv, c=callers: scenarios.concurrent_callers(
                        backend, ts.name, texts, tokens, c, profile.concurrency_requests, adv),
                    profile.concurrency_requests,
                ))
            for scenario, params, run, total in steps:
                if skip(scenario, ts.name, **params):
                    continue
                with reporter.task(f"{backend.name} · {ts.name} · {scenario} {_fmt(params)}", total) as adv:
                    state.measurements.append(working.mark(await run(adv)))
                save(state, results_dir)
            await throughput_sweep(backend, description, working, config, state, results_dir, reporter, skip)
        if beir is not None and not any(r.backend == backend.name for r in state.retrieval):
            await retrieval_for(backend, beir, str(config.beir_dir), state, reporter)  # same load
            save(state, results_dir)
        state.backends[backend.name] = dataclasses.replace(
            state.backends[backend.name], memory=tuple(to_jsonable(m) for m in await backend.memory())
        )
    except BackendError as err:  # broke beyond a single call (e.g. the server is gone): record, go on
        state.failures.append(Failure(backend.name, None, "run", f"stopped mid-run: {err}"))
        reporter.note(f"[red]{backend.name}[/]: stopped mid-run: {err}")
    finally:
        # Described again after the run, however it ended: facts gathered during it (the openai
        # backend's vector norms) then cover every call, not only the load.
        state.backends[backend.name] = dataclasses.replace(state.backends[backend.name],
                                                           description=backend.describe())
        try:
            await backend.unload()
        except BackendError as err:
            reporter.note(f"{backend.name}: unload failed: {err}")
        record_call_failures(state, backend.name)
        save(state, results_dir)


def record_call_failures(state: RunState, name: str) -> None:
    """Failed calls, per measurement, as failures; any of them marks the backend incomplete.

    The samples already count them; this makes them visible in the failures list and keeps
    the verdict from comparing a backend whose figures cover only the calls that worked.
    """
    failed_calls = total_calls = 0
    first_error = None
    for m in state.measurements:
        if m.backend != name:
            continue
        bad = [s for s in m.samples if not s.ok]
        total_calls += len(m.samples)
        if not bad:
            continue
        failed_calls += len(bad)
        first_error = first_error or bad[0].error
        failure = Failure(name, m.text_set, f"{m.scenario} {_fmt(m.params)}",
                          f"{len(bad)} of {len(m.samples)} calls failed: {bad[0].error}")
        if failure not in state.failures:
            state.failures.append(failure)
    stopped = next((f.error for f in state.failures if f.backend == name and f.scenario == "run"), None)
    record = state.backends.get(name)
    if record is None or record.error is not None or not (failed_calls or stopped):
        return
    parts = [f"{failed_calls} of {total_calls} calls failed (first: {first_error})"] if failed_calls else []
    parts += [stopped] if stopped else []
    state.backends[name] = dataclasses.replace(record, error="incomplete: " + "; ".join(parts))


def _fmt(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())


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
    from bench import analysis

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
                reporter.note(f"{backend.name}: retrying with {_fmt(smaller)}")
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
    best = analysis.best_first_pass(to_jsonable([m for m in state.measurements if m.backend == backend.name
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
    from bench import scenarios
    from bench.batching import capped_counts

    label = _fmt(params)
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


def compare_quality(state: RunState, results_dir: Path, backend_names: Sequence[str], text_sets,
                    pairs_per_set: int, k: int, seed: int) -> None:
    """Every pair of backends that both produced vectors for a text set, in config order.

    Texts either backend left out (per-text failures, see screening) are left out of every
    statistic and listed in the record's `excluded`; their NaN rows are not "non-finite vectors".
    """
    from bench import quality

    state.quality = []
    for ts in text_sets:
        available = [(n, load_vectors(results_dir, n, ts.name)) for n in backend_names]
        available = [(n, v) for n, v in available if v is not None]
        excluded = {name: set(state.excluded_for(name, ts.name)) for name, _ in available}
        for name, vectors in available:
            rows = [r for r in quality.nonfinite_rows(vectors) if r not in excluded[name]]
            if rows:
                shown = ", ".join(map(str, rows[:10])) + (", ..." if len(rows) > 10 else "")
                failure = Failure(name, ts.name, "vectors",
                                  f"{len(rows)} of {len(vectors)} vectors contain NaN or inf (text index {shown})")
                if failure not in state.failures:
                    state.failures.append(failure)
        for (control, a), (treatment, b) in itertools.combinations(available, 2):
            left_out = excluded[control] | excluded[treatment]
            keep = np.array([i for i in range(len(a)) if i not in left_out], dtype=np.int64)
            a_kept, b_kept = a[keep], b[keep]
            cosines = np.full(len(a), np.nan)
            cosines[keep] = quality.paired_cosine(a_kept, b_kept)
            n = len(keep)
            # Rank statistics need at least three texts; a tiny user corpus gets cosines only.
            spearman = (quality.pairwise_similarity_spearman(a_kept, b_kept,
                                                             n_pairs=min(pairs_per_set, n * (n - 1) // 2), seed=seed)
                        if n >= 3 else {})
            neighbours = quality.neighbour_agreement(a_kept, b_kept, k=min(k, n - 1)) if n >= 3 else {}
            state.quality.append(QualityRecord(
                control=control,
                treatment=treatment,
                text_set=ts.name,
                cosine=to_jsonable(quality.summarize_cosine(cosines[keep])),
                spearman=to_jsonable(spearman),
                neighbours=to_jsonable(neighbours),
                nonfinite_control=tuple(int(keep[r]) for r in quality.nonfinite_rows(a_kept)),
                nonfinite_treatment=tuple(int(keep[r]) for r in quality.nonfinite_rows(b_kept)),
                per_text_cosine=tuple(float(c) for c in cosines),
                excluded=tuple(sorted(left_out)),
            ))


async def evaluate_beir(backend: EmbeddingBackend, beir, dataset: str, batch_size: int,
                        reporter: Reporter) -> RetrievalRecord:
    """Embed the BEIR corpus and queries with this backend; nDCG@10 and Recall@10 from qrels."""
    from bench import beir as beir_metrics

    async def embed_all(label: str, texts: list[str]) -> np.ndarray:
        parts = []
        with reporter.task(f"{backend.name} · BEIR {label}", len(texts)) as adv:
            for start in range(0, len(texts), batch_size):
                chunk = texts[start : start + batch_size]
                parts.append((await backend.embed(chunk)).vectors)
                adv(len(chunk))
        return np.concatenate(parts)

    doc_ids, query_ids = list(beir.corpus), list(beir.queries)
    doc_vecs = await embed_all("corpus", [beir.corpus[d] for d in doc_ids])
    query_vecs = await embed_all("queries", [beir.queries[q] for q in query_ids])
    run = beir_metrics.retrieve(query_vecs, query_ids, doc_vecs, doc_ids, k=10)
    ndcg = beir_metrics.ndcg_at_k(run, beir.qrels, k=10)
    recall = beir_metrics.recall_at_k(run, beir.qrels, k=10)
    return RetrievalRecord(
        backend=backend.name,
        dataset=dataset,
        ndcg_at_10=ndcg.mean,
        recall_at_10=recall.mean,
        queries=ndcg.n_queries,
        per_query={"ndcg_at_10": ndcg.per_query, "recall_at_10": recall.per_query},
    )


def library_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions: dict[str, str | None] = {}
    for package in ("torch", "sentence-transformers", "transformers", "ollama", "nvidia-ml-py", "numpy"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def read_probe(results_dir: Path) -> tuple[dict[str, Any], dict[str, Any], str | None]:
    """(facts, bench_settings, note) from probe.json; a missing probe is noted, not fatal."""
    from probe.result import PROBE_SCHEMA_VERSION

    try:
        data = read_results_json(results_dir / "probe.json", "probe", PROBE_SCHEMA_VERSION)
    except ResultsFileError as err:
        return {}, {}, f"probe results not used: {err}"
    overall = data.get("overall", {})
    facts = {**data.get("facts", {}), "probe_overall": overall.get("status"),
             "probe_created_at": data.get("created_at")}
    return facts, data.get("bench_settings", {}), None


def read_probe_checks(results_dir: Path) -> dict[str, dict[str, Any]] | None:
    """probe.json's checks by name; None when there is no readable probe.json."""
    from probe.result import PROBE_SCHEMA_VERSION

    try:
        data = read_results_json(results_dir / "probe.json", "probe", PROBE_SCHEMA_VERSION)
    except ResultsFileError:
        return None
    return {c["name"]: c for c in data.get("checks", []) if "name" in c}


def gate_reason(gate: ProbeGate | None, checks: dict[str, dict[str, Any]] | None) -> str | None:
    """Why the probe rules this backend out, or None to run it. Pure.

    dtype: ruled out when the probe's sentence_transformers check found NaN/inf in that
    dtype's embeddings, or (half dtypes) its min cosine to fp32 below the check's own bound. Without a
    probe, or when the probe did not run that dtype, the backend runs (the bench measures it).
    needs_compile: ruled out unless the probe's triton check passed (Triton and torch.compile
    ran and matched); without a probe there is no such evidence, so it is ruled out too.
    """
    if gate is None:
        return None
    if gate.needs_compile:
        triton = (checks or {}).get("triton")
        if triton is None:
            return "needs the probe's Triton / torch.compile check to pass; no probe result (run the probe first)"
        if triton.get("status") != "pass":
            return f"probe check triton is {triton.get('status')}: {triton.get('reason', '')}"
    if gate.dtype:
        st = (checks or {}).get("sentence_transformers") or {}
        figures = st.get("figures") or {}
        run = (figures.get("dtypes") or {}).get(gate.dtype) or {}
        cosine = (figures.get("half_vs_fp32_cosine") or {}).get(gate.dtype) or {}
        bound = figures.get("cosine_warn_below")
        if run.get("finite") is False:
            return f"probe: NaN/inf in the {gate.dtype} embeddings ({st.get('reason', '')})"
        low = cosine.get("min")
        if isinstance(low, (int, float)) and isinstance(bound, (int, float)) and low < bound:
            return (f"probe: {gate.dtype} min cosine {low:.4f} vs fp32 is below {bound} "
                    f"({st.get('reason', '')})")
    return None


def config_payload(config: BenchConfig, model: str) -> dict[str, Any]:
    from bench.standin_model import weights_of
    from probe.facts import redact_url_credentials

    payload = to_jsonable(config)
    payload["ollama_host"] = redact_url_credentials(config.ollama_host)
    if config.openai_url:
        payload["openai_url"] = redact_url_credentials(config.openai_url)
    payload["resolved_model"] = model
    # A stand-in with random weights says so here; the verdict reads it (Inconclusive, labelled tables).
    payload["model_weights"] = weights_of(model)
    return payload


async def run_bench(config: BenchConfig, reporter: Reporter | None = None) -> RunState:
    """Run the configured bench and write results_dir/bench.json; returns the final state.

    On KeyboardInterrupt (Ctrl-C, or SIGTERM turned into one by the CLI) the state is
    saved with status "partial" and the interrupt is re-raised.
    """
    from bench.workload import prepare_workload

    reporter = reporter or Reporter()
    results_dir = config.results_dir
    model = resolve_model(config.profile.model)
    facts, probe_settings, probe_note = read_probe(results_dir)
    if probe_note:
        reporter.note(probe_note)
    workload = prepare_workload(model, config.profile, config.texts_file)
    for ts in workload.sets:
        if ts.target_tokens is None:
            reporter.note(f"texts: {ts.source}")
    beir = None
    if config.beir_dir is not None:  # read before bench.json is touched: bad data must not cost a results file
        from bench.beir import load_beir

        beir = load_beir(config.beir_dir)
    digest = workload_digest({ts.name: ts.texts for ts in workload.sets})
    workload_payload = {**to_jsonable(workload), "digest": digest}
    payload = config_payload(config, model)
    if config.resume:
        state = restore_state(results_dir, payload, digest)
    else:
        environment = {"probe": facts, "probe_note": probe_note, "libraries": library_versions(),
                       "attention_settings": probe_settings}
        state = RunState(config=payload, environment=environment, workload=workload_payload)
    if not state.environment.get("model_config"):
        from bench.roofline import read_model_config

        state.environment["model_config"] = read_model_config(model)  # the roofline reads it, not the model
    if not state.environment.get("native_model"):
        from bench.model_source import model_identity

        state.environment["native_model"] = to_jsonable(model_identity(config.profile.model))  # name, revision
    state.status = "running"
    save(state, results_dir)  # the resolved config is on disk before anything is measured
    probe_checks = read_probe_checks(results_dir)

    settings = BackendSettings(
        model=model,
        ollama_model=config.profile.ollama_model,
        ollama_host=config.ollama_host,
        openai_url=config.openai_url,
        openai_model=config.openai_model,
        timeout_s=config.timeout_s,
        ollama_options=dict(config.ollama_options),
        device=config.device,
        attention_settings=probe_settings,
        fresh_process_cold_load=config.fresh_process_cold_load,
        max_seq_length=config.max_seq_length,
    )
    try:
        # Every backend is screened before any is timed, so all are timed on the same texts.
        backends = [BACKENDS[name](settings) for name in config.backends]
        for backend in backends:
            await screen_backend(backend, workload.sets, state, results_dir, reporter, probe_checks)
        for backend in backends:
            await measure_backend(backend, config, workload.sets, state, results_dir, reporter, beir)
        compare_quality(state, results_dir, config.backends, workload.sets, config.profile.quality_pairs,
                        config.profile.neighbours_k, config.profile.seed)
        state.status = "complete"
    except (KeyboardInterrupt, asyncio.CancelledError):
        state.status = "partial"
        raise
    finally:
        if state.status == "running":  # an unexpected error: keep what we have, marked partial
            state.status = "partial"
        save(state, results_dir)
    return state


async def retrieval_for(backend: EmbeddingBackend, beir, dataset: str, state: RunState,
                        reporter: Reporter) -> None:
    """BEIR retrieval with the already loaded backend; a failure is recorded, not raised."""
    try:
        state.retrieval.append(await evaluate_beir(backend, beir, dataset, batch_size=32, reporter=reporter))
    except BackendError as err:
        state.failures.append(Failure(backend.name, "beir", "retrieval", str(err)))
