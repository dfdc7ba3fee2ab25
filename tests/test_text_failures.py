"""Issue 10: failures that are findings. A server that cannot embed some texts (bge-m3's NaN on
GPU, ollama/ollama#13572) is screened text by text; the other texts are measured in every
scenario and compared; the failing texts are listed with their error; the verdict names the
finding instead of calling the side unmeasured. The same with native failing some texts.
All Ollama-side figures here come from the tests' Ollama-API stand-in, never from Ollama."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.backends.base import BackendError, BackendUnavailable
from bench.cli import main as bench_cli
from bench.config import PROFILES, BenchConfig
from bench.measure.runner import run_bench
from bench.measure.screening import screen_texts
from bench.report.verdict import build_context, load_results
from bench.results import BENCH_SCHEMA_VERSION
from probe.output import read_results_json

pytestmark = pytest.mark.slow

NAN_ERROR = "embedding contains NaN or Inf values"


def tiny(model: str):
    return replace(PROFILES["smoke"], model=model, ollama_model="bge-m3",
                   set_sizes={"short": 6, "long": 3, "documents": 2}, warmup_calls=1, single_latency_calls=4,
                   batch_latency_repeats=2, batch_sizes=(1, 4), concurrency_levels=(1, 4), concurrency_requests=4,
                   quality_pairs=10)


def workload_texts(model: str, profile) -> dict[str, tuple[str, ...]]:
    from bench.measure.workload import prepare_workload

    return {s.name: s.texts for s in prepare_workload(model, profile, None).sets}


def run(tmp_path: Path, profile, backends, host: str) -> dict:
    config = BenchConfig(profile=profile, backends=tuple(backends), results_dir=tmp_path, ollama_host=host,
                         timeout_s=30.0, device="cpu")
    assert asyncio.run(run_bench(config)).status == "complete"
    return read_results_json(tmp_path / "bench.json", "bench", BENCH_SCHEMA_VERSION)


def verdict(tmp_path: Path) -> tuple[str, str]:
    outcome = CliRunner().invoke(bench_cli, ["verdict", "--results", str(tmp_path), "--no-plots"])
    assert outcome.exit_code == 0, outcome.output
    return outcome.output, (tmp_path / "verdict.md").read_text(encoding="utf-8")


def test_ollama_failing_some_texts_is_measured_on_the_rest_and_named(tmp_path, small_model_path, ollama_standin):
    profile = tiny(small_model_path)
    texts = workload_texts(small_model_path, profile)
    failing = {"short": (1, 4), "long": (0,)}
    ollama_standin.nan_for(texts[s][i] for s, idx in failing.items() for i in idx)
    data = run(tmp_path, profile, ["ollama", "native-fp32"], ollama_standin.host)

    screened = {(r["backend"], r["text_set"]): r for r in data["screening"]}
    for text_set, indices in failing.items():
        found = screened[("ollama", text_set)]["failures"]
        assert [f["index"] for f in found] == list(indices)
        assert all(f["error"].endswith(NAN_ERROR) and f["http_status"] == 400 for f in found)
        assert screened[("native-fp32", text_set)]["failures"] == []  # native embeds all of them
    assert screened[("ollama", "documents")]["failures"] == []

    assert data["backends"]["ollama"]["error"] is None  # measured, not "incomplete"
    for m in data["measurements"]:
        assert all(s["ok"] for s in m["samples"]), (m["backend"], m["text_set"], m["scenario"])
        assert m["excluded"] == list(failing.get(m["text_set"], ())), (m["backend"], m["text_set"], m["scenario"])
    for backend in ("ollama", "native-fp32"):
        for text_set in ("short", "long", "documents"):
            kinds = {m["scenario"] for m in data["measurements"]
                     if m["backend"] == backend and m["text_set"] == text_set}
            assert kinds == {"single", "batch", "throughput", "concurrency"}, (backend, text_set)
    short = next(q for q in data["quality"] if q["text_set"] == "short")
    assert short["excluded"] == [1, 4] and short["cosine"]["count"] == 4
    assert short["nonfinite_control"] == [] and short["nonfinite_treatment"] == []
    assert not any(f["scenario"] == "vectors" for f in data["failures"])  # left-out rows are not "NaN vectors"

    probe, bench = load_results(tmp_path)
    _, decision = build_context(probe, bench)
    assert {s.comparison.text_set for s in decision.sets} == {"short", "long", "documents"}
    out, md = verdict(tmp_path)
    assert "the Ollama side was not measured" not in md
    finding = f"ollama could not embed 2 of 6 short texts: Ollama at {ollama_standin.host}"
    assert finding in md and f"{NAN_ERROR}; native-fp32 embeds all 2" in md
    assert "4 of 6 texts, the same on both sides" in md
    assert "### Texts a backend could not embed" in md
    assert "13572" in md  # the field knowledge names the upstream issue


def test_legacy_endpoint_fails_those_texts_with_the_json_encode_error(tmp_path, small_model_path, ollama_standin):
    profile = replace(tiny(small_model_path), set_sizes={"short": 6})
    texts = workload_texts(small_model_path, profile)
    ollama_standin.nan_for([texts["short"][2]])
    data = run(tmp_path, profile, ["ollama-legacy", "native-fp32"], ollama_standin.host)
    (failure,) = next(r for r in data["screening"] if r["backend"] == "ollama-legacy")["failures"]
    assert failure["index"] == 2 and failure["http_status"] == 500
    assert failure["error"].endswith("failed to encode response: json: unsupported value: NaN")


def test_native_failing_some_texts_is_a_native_issue_and_the_rest_is_compared(
        tmp_path, small_model_path, ollama_standin, monkeypatch):
    from bench.backends import native

    profile = tiny(small_model_path)
    bad = workload_texts(small_model_path, profile)["documents"][1]
    real = native.NativeBackend._encode_timed

    def encode(self, model, texts):
        if bad in texts:  # e.g. a long document the device cannot hold
            raise BackendError("encode failed: OutOfMemoryError: CUDA out of memory (test double)")
        return real(self, model, texts)

    monkeypatch.setattr(native.NativeBackend, "_encode_timed", encode)
    data = run(tmp_path, profile, ["ollama", "native-fp32"], ollama_standin.host)
    (failure,) = [f for r in data["screening"] if r["backend"] == "native-fp32" for f in r["failures"]]
    assert failure["text_set"] == "documents" and failure["index"] == 1 and failure["http_status"] is None
    assert data["backends"]["native-fp32"]["error"] is None
    docs = [m for m in data["measurements"] if m["text_set"] == "documents"]
    assert {m["backend"] for m in docs} == {"ollama", "native-fp32"}
    assert all(m["excluded"] == [1] for m in docs)  # both sides timed on the texts both embed

    probe, bench = load_results(tmp_path)
    _, decision = build_context(probe, bench)
    assert any("native-fp32 could not embed 1 of 2 documents texts" in r for r in decision.reasons)
    _, md = verdict(tmp_path)
    assert "1 of 2 texts, the same on both sides" in md


# ------------------------------------------------------------------ screening itself, with fakes


class Scripted:
    """A backend whose calls fail for chosen texts: always, a number of times, or as infrastructure."""

    name = "scripted"

    def __init__(self, always=(), times=None, unavailable=False):
        self.always, self.times, self.unavailable = set(always), dict(times or {}), unavailable
        self.calls: list[list[str]] = []

    async def embed(self, texts):
        self.calls.append(list(texts))
        if self.unavailable:
            raise BackendUnavailable("server gone")
        if self.always & set(texts):
            raise BackendError("embedding contains NaN or Inf values", http_status=500)
        flaky = [t for t in texts if self.times.get(t, 0) > 0]
        if flaky:
            for t in flaky:
                self.times[t] -= 1
            raise BackendError("transient", http_status=503)
        return None


TEXTS = [f"text {i}" for i in range(6)]
COUNTS = [10] * 6


def screen(backend):
    return asyncio.run(screen_texts(backend, "short", TEXTS, COUNTS))


def test_screening_finds_exactly_the_failing_texts_with_one_call_per_text_after_a_failed_batch():
    backend = Scripted(always={"text 2", "text 5"})
    record = screen(backend)
    assert [f.index for f in record.failures] == [2, 5]
    assert all(f.http_status == 500 and "NaN" in f.error for f in record.failures)
    assert backend.calls[0] == TEXTS  # one batch first
    assert backend.calls.count(["text 2"]) == 2 and backend.calls.count(["text 0"]) == 1  # failing texts: twice
    assert record.calls == len(backend.calls) == 1 + 6 + 2


def test_a_text_that_fails_once_then_works_is_flaky_not_a_failure():
    record = screen(Scripted(times={"text 3": 2}))  # the batch, then its first call alone
    assert record.failures == () and record.flaky == (3,)


def test_infrastructure_is_not_per_text_and_a_set_where_everything_fails_says_so():
    with pytest.raises(BackendUnavailable):
        screen(Scripted(unavailable=True))
    record = screen(Scripted(always=set(TEXTS)))
    assert record.every_text_failed and record.texts == 6


def test_a_batch_that_fails_while_each_text_alone_works_is_a_batch_error_not_a_texts():
    class TooManyAtOnce(Scripted):
        async def embed(self, texts):
            self.calls.append(list(texts))
            if len(texts) > 3:
                raise BackendError("request too large", http_status=413)

    record = screen(TooManyAtOnce())
    assert record.failures == () and record.flaky == ()
    assert record.batch_errors == ("a batch of 6 texts failed, each alone worked: request too large",)


def test_a_set_ollama_cannot_embed_at_all_is_a_finding_and_native_is_still_measured_on_it(
        tmp_path, small_model_path, ollama_standin):
    profile = tiny(small_model_path)
    texts = workload_texts(small_model_path, profile)
    ollama_standin.nan_for(texts["documents"])
    data = run(tmp_path, profile, ["ollama", "native-fp32"], ollama_standin.host)
    assert data["backends"]["ollama"]["error"] is None  # measured on the sets it can embed
    docs = {m["backend"] for m in data["measurements"] if m["text_set"] == "documents"}
    assert docs == {"native-fp32"}  # its failures do not take the set away from native
    assert any(m["backend"] == "ollama" and m["text_set"] == "short" for m in data["measurements"])
    probe, bench = load_results(tmp_path)
    inputs, _, _ = __import__("bench.report.verdict", fromlist=["decision_inputs"]).decision_inputs(probe, bench)
    assert not any("documents" in gap for gap in inputs.missing)  # a finding, not missing evidence
    assert any("could not embed 2 of 2 documents texts" in f for f in inputs.ollama_text_failures)
