"""The bench loop end to end: real native backend and the Ollama stand-in, then fault cases
with the in-memory fake backend (interrupt/resume, out-of-memory back-off, dying server, NaN)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

import pytest
from fake_backends import FakeBackend, FakeBehaviour

from bench.config import PROFILES, BenchConfig
from bench.measure.runner import run_bench
from bench.results import BENCH_SCHEMA_VERSION
from probe.output import read_results_json

pytestmark = pytest.mark.slow

SCENARIOS = {"single", "batch", "throughput", "concurrency"}


def tiny_profile(model: str, **changes):
    profile = replace(
        PROFILES["smoke"], model=model, ollama_model="bge-m3",
        set_sizes={"short": 6, "long": 3, "documents": 2}, warmup_calls=1, single_latency_calls=4,
        batch_latency_repeats=2, batch_sizes=(1, 4), concurrency_levels=(1, 4), concurrency_requests=4,
        quality_pairs=10,
    )
    return replace(profile, **changes)


def config_for(profile, results: Path, backends, host="http://127.0.0.1:9", **kw) -> BenchConfig:
    kw.setdefault("fresh_process_cold_load", False)  # seconds per native load; the end-to-end test measures it
    return BenchConfig(profile=profile, backends=tuple(backends), results_dir=results, ollama_host=host,
                       timeout_s=10.0, device="cpu", **kw)


def read_bench(results: Path) -> dict:
    return read_results_json(results / "bench.json", "bench", BENCH_SCHEMA_VERSION)


def test_native_and_standin_end_to_end(tmp_path, small_model_path, ollama_standin):
    config = config_for(tiny_profile(small_model_path), tmp_path, ["ollama", "native-fp32"], ollama_standin.host,
                        fresh_process_cold_load=True)
    state = asyncio.run(run_bench(config))
    assert state.status == "complete"
    data = read_bench(tmp_path)
    loads = {name: data["backends"][name]["load"] for name in ("ollama", "native-fp32")}
    assert all(load["cold"] is True for load in loads.values()), loads
    assert loads["native-fp32"]["includes"].startswith("fresh Python process")
    assert loads["ollama"]["includes"].startswith("first /api/embed after /api/ps stopped listing the model")
    for backend in ("ollama", "native-fp32"):
        for text_set in ("short", "long", "documents"):
            kinds = {m["scenario"] for m in data["measurements"]
                     if m["backend"] == backend and m["text_set"] == text_set}
            assert kinds == SCENARIOS, (backend, text_set)
    single = next(m for m in data["measurements"] if m["scenario"] == "single" and m["backend"] == "ollama")
    assert single["summary"]["count"] == 4 and len(single["samples"]) == 4
    assert data["backends"]["ollama"]["load"]["reported_source"].startswith("ollama")
    assert data["backends"]["ollama"]["description"]["kind"] == "ollama"
    # Same model behind both: short texts (< 128 tokens) embed identically.
    short = next(q for q in data["quality"] if q["text_set"] == "short")
    assert short["cosine"]["min"] > 0.9999
    # Documents (~2000 tokens) are cut by both: at the stand-in's num_ctx 128 and at native's 256.
    cut = {(t["backend"], t["text_set"]): t for t in data["truncation"]}
    assert len(cut[("ollama", "documents")]["truncated"]) == 2
    assert max(r for r in cut[("ollama", "documents")]["reported_tokens"]) <= 128
    assert len(cut[("native-fp32", "documents")]["truncated"]) == 2
    assert cut[("ollama", "short")]["truncated"] == []
    assert data["workload"]["digest"]
    assert (tmp_path / "vectors" / "ollama__short.npy").exists()


def test_unreachable_ollama_is_recorded_and_native_still_measured(tmp_path, small_model_path):
    config = config_for(tiny_profile(small_model_path), tmp_path, ["ollama", "native-fp32"])
    state = asyncio.run(run_bench(config))
    assert state.status == "complete"
    data = read_bench(tmp_path)
    assert "not reachable" in data["backends"]["ollama"]["error"]
    assert any(m["backend"] == "native-fp32" for m in data["measurements"])
    assert data["quality"] == []  # nothing to compare against


# --------------------------------------------------------------- fault cases with fakes


@pytest.fixture
def fakes(monkeypatch):
    """Register fake backends by name in the registry the runner reads."""
    registry: dict[str, FakeBehaviour] = {}

    def install(**behaviours: FakeBehaviour) -> dict[str, FakeBehaviour]:
        import bench.measure.runner

        registry.update(behaviours)
        for name, behaviour in behaviours.items():
            monkeypatch.setitem(bench.measure.runner.BACKENDS, name,
                                lambda settings, n=name, b=behaviour: FakeBackend(n, b))
        return registry

    return install


def test_interrupt_keeps_partial_results_and_resume_finishes(tmp_path, small_model_path, fakes):
    behaviours = fakes(**{"fake-ollama": FakeBehaviour(kind="ollama"),
                          "fake-native": FakeBehaviour(kind="native", interrupt_after_calls=30)})
    config = config_for(tiny_profile(small_model_path), tmp_path, ["fake-ollama", "fake-native"])
    with pytest.raises(KeyboardInterrupt):
        asyncio.run(run_bench(config))
    partial = read_bench(tmp_path)
    assert partial["status"] == "partial"
    before = {m["key"] for m in partial["measurements"]}
    assert any(k.startswith("fake-ollama|") for k in before)

    behaviours["fake-native"].interrupt_after_calls = None
    behaviours["fake-ollama"].calls = 0
    state = asyncio.run(run_bench(replace(config, resume=True)))
    assert state.status == "complete"
    done = read_bench(tmp_path)
    keys = [m["key"] for m in done["measurements"]]
    assert len(keys) == len(set(keys))  # nothing measured twice
    assert before <= set(keys)
    assert behaviours["fake-ollama"].calls <= 3  # only warm-ups: its scenarios were already done
    assert {q["text_set"] for q in done["quality"]} == {"short", "long", "documents"}


def test_resume_refuses_results_of_other_texts(tmp_path, small_model_path, fakes):
    fakes(**{"fake-native": FakeBehaviour()})
    config = config_for(tiny_profile(small_model_path), tmp_path, ["fake-native"])
    asyncio.run(run_bench(config))
    other = config_for(tiny_profile(small_model_path, seed=5), tmp_path, ["fake-native"], resume=True)
    from probe.output import ResultsFileError

    with pytest.raises(ResultsFileError, match="other texts"):
        asyncio.run(run_bench(other))


def test_out_of_memory_halves_the_batch_and_records_it(tmp_path, small_model_path, fakes):
    fakes(**{"fake-native": FakeBehaviour(max_batch=2)})
    profile = tiny_profile(small_model_path, batch_sizes=(1, 4))
    asyncio.run(run_bench(config_for(profile, tmp_path, ["fake-native"])))
    data = read_bench(tmp_path)
    sizes = {m["params"]["batch_size"] for m in data["measurements"]
             if m["scenario"] == "throughput" and m["text_set"] == "short" and "batch_size" in m["params"]}
    assert sizes == {1, 2}
    assert any("batch_size=4 did not fit" in f["error"] for f in data["failures"])


def test_server_dying_mid_run_counts_failures_and_keeps_the_other_backend(tmp_path, small_model_path, fakes):
    fakes(**{"fake-ollama": FakeBehaviour(kind="ollama", fail_after_calls=10),
             "fake-native": FakeBehaviour(kind="native")})
    asyncio.run(run_bench(config_for(tiny_profile(small_model_path), tmp_path, ["fake-ollama", "fake-native"])))
    data = read_bench(tmp_path)
    failed = [s for m in data["measurements"] if m["backend"] == "fake-ollama" for s in m["samples"] if not s["ok"]]
    assert failed and all(s["value"] is None and "died" in s["error"] for s in failed)
    counted = sum(m["summary"]["failures"] for m in data["measurements"] if m["backend"] == "fake-ollama")
    assert counted == len(failed)  # failures counted, never dropped or turned into 0
    native_ok = [s for m in data["measurements"] if m["backend"] == "fake-native" for s in m["samples"]]
    assert native_ok and all(s["ok"] for s in native_ok)


def test_nan_vectors_are_flagged_in_quality(tmp_path, small_model_path, fakes, monkeypatch):
    fakes(**{"fake-ollama": FakeBehaviour(kind="ollama"), "fake-native": FakeBehaviour(kind="native")})
    import bench.measure.runner

    real_load = bench.measure.runner.load_vectors

    def poisoned(results_dir, backend, text_set):
        vectors = real_load(results_dir, backend, text_set)
        if vectors is not None and backend == "fake-native" and text_set == "short":
            vectors = vectors.copy()
            vectors[2, 0] = float("inf")
        return vectors

    monkeypatch.setattr(bench.measure.runner, "load_vectors", poisoned)
    asyncio.run(run_bench(config_for(tiny_profile(small_model_path), tmp_path, ["fake-ollama", "fake-native"])))
    short = next(q for q in read_bench(tmp_path)["quality"] if q["text_set"] == "short")
    assert short["nonfinite_treatment"] == [2]
    assert short["cosine"]["nonfinite"] == 1
    assert json.loads((tmp_path / "bench.json").read_text())  # still strict JSON


def test_a_backend_with_one_call_per_text_gets_a_single_throughput_setting(tmp_path, small_model_path, fakes):
    fakes(**{"fake-legacy": FakeBehaviour(kind="ollama", one_call_per_text=True),
             "fake-native": FakeBehaviour(kind="native")})
    asyncio.run(run_bench(config_for(tiny_profile(small_model_path), tmp_path, ["fake-legacy", "fake-native"])))
    passes = [(m["backend"], m["params"]) for m in read_bench(tmp_path)["measurements"]
              if m["scenario"] == "throughput" and m["text_set"] == "short"]
    legacy = [p for b, p in passes if b == "fake-legacy"]
    assert legacy == [{"batch_size": 1}] + [{"batch_size": 1, "repeat": k} for k in (1, 2, 3)]
    native_settings = {tuple(sorted((k, v) for k, v in p.items() if k != "repeat")) for b, p in passes
                       if b == "fake-native"}
    assert len(native_settings) > 1


def test_the_best_setting_gets_fresh_passes_and_the_point_their_median(tmp_path, small_model_path, fakes):
    from bench.analyse.figures import set_figures

    fakes(**{"fake-native": FakeBehaviour(kind="native")})
    asyncio.run(run_bench(config_for(tiny_profile(small_model_path), tmp_path, ["fake-native"])))
    data = read_bench(tmp_path)
    throughput = [m for m in data["measurements"] if m["scenario"] == "throughput" and m["text_set"] == "short"]
    firsts = [m for m in throughput if "repeat" not in m["params"]]
    best = max(firsts, key=lambda m: 1 / m["wall_s"])
    repeats = [m for m in throughput if m["params"].get("repeat")]
    assert [{k: v for k, v in m["params"].items() if k != "repeat"} for m in repeats] == [best["params"]] * 3
    point = set_figures(data, "fake-native", "short").best_throughput
    walls = sorted(m["wall_s"] for m in repeats)  # the pass that chose the setting does not count again
    assert point.passes == 3
    assert point.texts_per_s == pytest.approx(6 / walls[1])  # the median fresh pass


def test_every_timed_call_holds_only_texts_prepared_before_timing(tmp_path, small_model_path, fakes):
    behaviours = fakes(**{"fake-ollama": FakeBehaviour(kind="ollama"), "fake-native": FakeBehaviour(kind="native")})
    asyncio.run(run_bench(config_for(tiny_profile(small_model_path), tmp_path, ["fake-ollama", "fake-native"])))
    for behaviour in behaviours.values():
        assert behaviour.calls > 0 and behaviour.unprepared_embeds == 0


def test_beir_retrieval_runs_once_per_backend_with_its_measured_load(tmp_path, small_model_path, fakes):
    beir = tmp_path / "beir"
    (beir / "qrels").mkdir(parents=True)
    (beir / "corpus.jsonl").write_text("\n".join(json.dumps({"_id": f"d{i}", "title": "", "text": t}) for i, t in
                                             enumerate(["Ollama serves embeddings.", "Der Hund bellt laut.",
                                                        "GPUs multiply matrices."])) + "\n")
    (beir / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "embeddings from Ollama"}) + "\n"
                                        + json.dumps({"_id": "q2", "text": "matrix multiply on GPUs"}) + "\n")
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td0\t1\nq2\td2\t1\n")
    fakes(**{"fake-ollama": FakeBehaviour(kind="ollama"), "fake-native": FakeBehaviour(kind="native")})
    config = config_for(tiny_profile(small_model_path), tmp_path / "results", ["fake-ollama", "fake-native"],
                        beir_dir=beir)
    asyncio.run(run_bench(config))
    retrieval = read_bench(tmp_path / "results")["retrieval"]
    assert [r["backend"] for r in retrieval] == ["fake-ollama", "fake-native"]
    for record in retrieval:
        assert record["queries"] == 2
        assert 0.0 <= record["ndcg_at_10"] <= 1.0 and 0.0 < record["recall_at_10"] <= 1.0
        assert set(record["per_query"]["ndcg_at_10"]) == {"q1", "q2"}


def test_resume_refuses_other_settings_naming_them(tmp_path, small_model_path, fakes):
    from probe.output import ResultsFileError

    fakes(**{"fake-native": FakeBehaviour(), "fake-other": FakeBehaviour()})
    profile = tiny_profile(small_model_path)
    config = config_for(profile, tmp_path, ["fake-native"], ollama_options={"num_ctx": 2048})
    asyncio.run(run_bench(config))
    before = (tmp_path / "bench.json").read_bytes()
    with pytest.raises(ResultsFileError) as info:
        asyncio.run(run_bench(replace(config, ollama_options={"num_ctx": 4096}, resume=True)))
    assert (tmp_path / "bench.json").read_bytes() == before
    assert "ollama_options.num_ctx: was 2048, now 4096" in str(info.value)
    assert "--resume continues only the same run" in str(info.value)
    with pytest.raises(ResultsFileError, match=r'backends: was \["fake-native"\], now \["fake-native", "fake-other"\]'):
        asyncio.run(run_bench(replace(config, backends=("fake-native", "fake-other"), resume=True)))
    with pytest.raises(ResultsFileError, match="profile.batch_sizes: was"):
        asyncio.run(run_bench(replace(config, profile=replace(profile, batch_sizes=(1, 8)), resume=True)))
    # Where results go and --resume itself change no figure: the same run continues.
    assert asyncio.run(run_bench(replace(config, resume=True))).status == "complete"


def test_config_differences_are_named_generically():
    from bench.config import config_differences

    stored = {"results_dir": "/a", "resume": False, "device": None, "profile": {"set_sizes": {"short": 4}}}
    current = {"results_dir": "/b", "resume": True, "device": "cuda", "profile": {"set_sizes": {"short": 8}},
               "model": "BAAI/bge-m3"}  # an option added later is compared too
    assert config_differences(stored, current) == [
        'device: was null, now "cuda"', "profile.set_sizes.short: was 4, now 8",
        'model: was not set, now "BAAI/bge-m3"']
    assert config_differences(stored, {**stored, "results_dir": "/elsewhere", "resume": True}) == []


def test_cli_resume_with_another_num_ctx_is_one_line_naming_it(tmp_path, fakes):
    from click.testing import CliRunner

    from bench.cli import main as bench_cli

    fakes(**{"fake-native": FakeBehaviour()})
    texts = tmp_path / "texts.txt"
    texts.write_text("Erster Text.\nSecond text.\nTroisième texte.\n", encoding="utf-8")
    argv = ["run", "--profile", "smoke", "--backend", "fake-native", "--texts", str(texts),
            "--results", str(tmp_path / "results")]
    first = CliRunner().invoke(bench_cli, [*argv, "--num-ctx", "2048"])
    assert first.exit_code == 0, first.output
    again = CliRunner().invoke(bench_cli, [*argv, "--num-ctx", "4096", "--resume"])
    assert again.exit_code == 1
    errors = [line for line in again.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "ollama_options.num_ctx: was 2048, now 4096" in errors[0], again.output


def test_batches_that_fail_while_every_text_embeds_alone_are_a_finding_not_an_unmeasured_side(
        tmp_path, small_model_path, fakes):
    """Review of issue 10: a sweep setting whose batches fail is listed and not chosen; the side is
    still measured at the settings that work, and the verdict names the batch errors."""
    fakes(**{"fake-ollama": FakeBehaviour(kind="ollama", fail_batches_over=1),
             "fake-native": FakeBehaviour(kind="native")})
    asyncio.run(run_bench(config_for(tiny_profile(small_model_path, batch_sizes=(1, 4)), tmp_path,
                                     ["fake-ollama", "fake-native"])))
    data = json.loads((tmp_path / "bench.json").read_text())
    assert data["backends"]["fake-ollama"]["error"] is None  # measured, not "incomplete"
    batch_errors = [e for r in data["screening"] if r["backend"] == "fake-ollama" for e in r["batch_errors"]]
    assert batch_errors and all("each alone worked" in e for e in batch_errors)
    failed = {f["scenario"] for f in data["failures"] if f["backend"] == "fake-ollama"}
    assert "throughput batch_size=4" in failed and not any("repeat" in s for s in failed)
    repeats = [m for m in data["measurements"] if m["backend"] == "fake-ollama" and "repeat" in m["params"]]
    assert repeats and all(m["params"]["batch_size"] == 1 for m in repeats)

    from click.testing import CliRunner

    from bench.cli import main as bench_cli

    outcome = CliRunner().invoke(bench_cli, ["verdict", "--results", str(tmp_path), "--no-plots"])
    assert outcome.exit_code == 0, outcome.output
    md = (tmp_path / "verdict.md").read_text()
    assert "the Ollama side was not measured" not in md
    assert "a batch-size-dependent failure" in md and "each alone worked" in md
    # ... and reach the decision: a finding about Ollama (no 'Keep Ollama' over them).
    from bench.analyse.comparison import decision_inputs

    inputs, control, _ = decision_inputs(None, data)
    assert control == "fake-ollama" and inputs.ollama_call_failures
    assert all("fake server answered HTTP 500" in line for line in inputs.ollama_call_failures)
    assert inputs.memory_notes == () and inputs.native_call_failures == ()


def test_native_out_of_memory_in_batch_latency_is_a_capacity_note_not_an_issue(tmp_path, small_model_path, fakes):
    """Review: one forward pass over 100 documents may not fit beside another model; that is
    capacity, shown beside the decision, not a defect that makes a migration conditional."""
    fakes(**{"fake-ollama": FakeBehaviour(kind="ollama"), "fake-native": FakeBehaviour(kind="native", max_batch=4)})
    asyncio.run(run_bench(config_for(tiny_profile(small_model_path, batch_sizes=(1, 4), token_budgets=()), tmp_path,
                                     ["fake-ollama", "fake-native"])))
    data = json.loads((tmp_path / "bench.json").read_text())
    from bench.analyse.comparison import decision_inputs

    inputs, _, treatment = decision_inputs(None, data)
    assert treatment == "fake-native" and data["backends"]["fake-native"]["error"] is None
    assert inputs.native_call_failures == ()
    assert any("out of memory on the device" in line for line in inputs.memory_notes)
