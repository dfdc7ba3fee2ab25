"""The bench loop: every configured backend through every scenario on every text set.

It knows backends only through the registry and the EmbeddingBackend protocol. Results
are written atomically after each measurement, so an interrupt or a crash keeps
everything measured so far (status "partial"), and `--resume` continues from it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.backends import BACKENDS, PROBE_GATES, ProbeGate
from bench.backends.base import (
    BackendError,
    BackendSettings,
    EmbeddingBackend,
)
from bench.config import BenchConfig, resolve_model
from bench.measure.state import (
    Reporter,
    RunState,
    WorkingSet,
    format_params,
    load_vectors,
    restore_state,
    save,
    workload_digest,
)
from bench.measure.throughput import throughput_sweep
from bench.results import (
    BackendRecord,
    Failure,
    Measurement,
    QualityRecord,
    RetrievalRecord,
)
from probe.output import (
    ResultsFileError,
    read_results_json,
    to_jsonable,
)


async def screen_backend(backend: EmbeddingBackend, text_sets, state: RunState, results_dir: Path,
                         reporter: Reporter, probe_checks: dict[str, dict[str, Any]] | None = None) -> None:
    """Phase 1, for every backend before any is timed: probe gate, cold load (the recorded load
    figure), screen every text set for per-text failures (bench/measure/screening.py), unload.

    So every backend is then timed on the same texts: those no backend failed on. A backend
    the probe rules out, that cannot load, that stops answering (BackendUnavailable) or that
    fails every text of every set is recorded with its error and not measured.
    """
    from bench.measure.batching import capped_counts
    from bench.measure.screening import screen_texts

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
    from bench.measure import scenarios

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
                with reporter.task(f"{backend.name} · {ts.name} · {scenario} {format_params(params)}", total) as adv:
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


def decides(m) -> bool:
    """Does the decision read this measurement? The batch-size-1 throughput pass (vectors, token
    counts), the fresh passes at the best setting, and single-text latency. Other sweep settings,
    batch latency and concurrency are reported beside it."""
    return m.scenario == "single" or (m.scenario == "throughput" and (
        m.params == {"batch_size": 1} or "repeat" in m.params))


def record_call_failures(state: RunState, name: str) -> None:
    """Failed calls, per measurement, as failures; one in a measurement the decision reads marks
    the backend incomplete.

    The samples already count them; this makes them visible in the failures list and keeps
    the verdict from comparing a backend whose deciding figures cover only the calls that
    worked. A failure elsewhere (a sweep setting whose batches fail although every text embeds
    alone, one concurrent call) is listed, and that setting is not chosen as the best.
    """
    failed_calls = total_calls = 0
    first_error = None
    for m in state.measurements:
        if m.backend != name:
            continue
        bad = [s for s in m.samples if not s.ok]
        if decides(m):
            total_calls += len(m.samples)
            failed_calls += len(bad)
            first_error = first_error or (bad[0].error if bad else None)
        if not bad:
            continue
        failure = Failure(name, m.text_set, f"{m.scenario} {format_params(m.params)}",
                          f"{len(bad)} of {len(m.samples)} calls failed: {bad[0].error}", kind="calls")
        if failure not in state.failures:
            state.failures.append(failure)
    stopped = next((f.error for f in state.failures if f.backend == name and f.scenario == "run"), None)
    record = state.backends.get(name)
    if record is None or record.error is not None or not (failed_calls or stopped):
        return
    parts = [f"{failed_calls} of {total_calls} calls failed (first: {first_error})"] if failed_calls else []
    parts += [stopped] if stopped else []
    state.backends[name] = dataclasses.replace(record, error="incomplete: " + "; ".join(parts))


def compare_quality(state: RunState, results_dir: Path, backend_names: Sequence[str], text_sets,
                    pairs_per_set: int, k: int, seed: int) -> None:
    """Every pair of backends that both produced vectors for a text set, in config order.

    Texts either backend left out (per-text failures, see screening) are left out of every
    statistic and listed in the record's `excluded`; their NaN rows are not "non-finite vectors".
    """
    from bench.analyse import quality

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
    from bench.analyse import beir as beir_metrics

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
    from bench.measure.standin_model import weights_of
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
    from bench.measure.workload import prepare_workload

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
        from bench.analyse.beir import load_beir

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
        from bench.analyse.roofline import read_model_config

        state.environment["model_config"] = read_model_config(model)  # the roofline reads it, not the model
    if not state.environment.get("native_model"):
        from bench.measure.model_source import model_identity

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
