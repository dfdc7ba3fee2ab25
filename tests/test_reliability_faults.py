"""Issue 5, faults: Ollama failing in each way it can (through the Ollama-API stand-in and the
real bench loop, with native-fp32 alongside), CUDA out-of-memory and CUDA errors, NaN/inf in
vectors, crashes during a results write, and secrets kept out of every results file."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from reliability_support import HookReporter, config_for, strict_json, tiny_profile

from bench.cli import main as bench_cli
from bench.measure.runner import run_bench
from bench.results import BENCH_SCHEMA_VERSION
from probe.output import ResultsFileError, read_results_json, write_json_atomic

pytestmark = pytest.mark.slow

RUNNER_CRASH = "llama runner process has terminated: exit status 2"


def verdict_output(results: Path) -> str:
    outcome = CliRunner().invoke(bench_cli, ["verdict", "--results", str(results), "--no-plots"])
    assert outcome.exit_code == 0, outcome.output
    assert "Traceback" not in outcome.output
    return outcome.output


def native_fully_measured(data: dict) -> None:
    native = [m for m in data["measurements"] if m["backend"] == "native-fp32"]
    assert {m["scenario"] for m in native} == {"single", "batch", "concurrency", "throughput"}
    assert all(s["ok"] for m in native for s in m["samples"])
    assert data["backends"]["native-fp32"]["error"] is None


# ------------------------------------------------------------------ line 3: Ollama faults

def _stop(standin):
    standin.stop()


def _unpulled(standin):
    standin.remove_model()


def _hang(standin):
    standin.hang(5)


def _http_500(standin):
    standin.fail_with(500, RUNNER_CRASH)


def _at(step: str, fault):
    """Inject `fault` when the bench step whose description starts with `step` begins."""
    def hook(standin):
        return lambda description: fault(standin) if description.startswith(step) else None
    return hook


OLLAMA_FAULTS = [
    # (id, set up before the run, hook during the run, what the Ollama backend's error says)
    ("server-not-running", _stop, None, "Ollama not reachable at http://127.0.0.1:"),
    ("model-not-pulled", _unpulled, None, "model 'bge-m3' is not pulled on http://127.0.0.1:"),
    ("hangs-at-load", _hang, None, "did not answer within 1 s (ReadTimeout): raise --timeout"),
    ("http-500-at-load", _http_500, None, f"answered HTTP 500: {RUNNER_CRASH}"),
    ("dies-mid-run", None, _at("ollama · short · concurrency", lambda s: s.die_after(1)),
     "incomplete: "),
    ("hangs-mid-run", None, _at("ollama · short · throughput batch_size=4", _hang),
     "incomplete: "),
    ("http-500-mid-run", None, _at("ollama · short · throughput", _http_500),
     "incomplete: 4 of 6 calls failed (first: Ollama at http://127.0.0.1:"),
]


@pytest.mark.parametrize("fault_id, setup, hook, says", OLLAMA_FAULTS, ids=[f[0] for f in OLLAMA_FAULTS])
def test_ollama_fault_is_recorded_native_still_measured_and_verdict_incomplete(
        tmp_path, small_model_path, ollama_standin, fault_id, setup, hook, says):
    if setup is not None:
        setup(ollama_standin)
    reporter = HookReporter(hook(ollama_standin) if hook else lambda description: None)
    config = config_for(tiny_profile(small_model_path), tmp_path, ["ollama", "native-fp32"], ollama_standin.host,
                        timeout_s=1.0)
    state = asyncio.run(run_bench(config, reporter))
    assert state.status == "complete"  # the run carried on past the fault

    data = strict_json(tmp_path / "bench.json")
    error = data["backends"]["ollama"]["error"]
    assert error and says in error, error
    assert "\n" not in error
    assert any(f["backend"] == "ollama" for f in data["failures"])
    native_fully_measured(data)
    if hook is not None:  # what was measured before the fault is kept, and its failures counted
        ollama = [m for m in data["measurements"] if m["backend"] == "ollama"]
        assert any(s["ok"] for m in ollama for s in m["samples"])
        failed = sum(m["summary"]["failures"] for m in ollama)
        assert failed == sum(1 for m in ollama for s in m["samples"] if not s["ok"]) > 0

    out = verdict_output(tmp_path)
    assert "Decision: Inconclusive" in out
    assert "the Ollama side was not measured (" in out
    assert says in out.replace("\n", " ")
    verdict_md = (tmp_path / "verdict.md").read_text(encoding="utf-8")
    assert says in verdict_md  # the failure is in the verdict file too, not only on screen


def test_ollama_messages_name_the_fix():
    """The hints a user acts on, from the one function both the bench and the probe use."""
    import httpx
    import ollama

    from bench.backends.ollama import explain_error

    def explain(err):
        return str(explain_error(err, "127.0.0.1:11434", "bge-m3", 120.0))

    assert explain(ollama.ResponseError('model "bge-m3" not found, try pulling it first', 404)) == (
        "model 'bge-m3' is not pulled on http://127.0.0.1:11434: run `ollama pull bge-m3` "
        "(in compose: docker compose exec ollama ollama pull bge-m3)")
    assert "start it (docker compose up -d ollama) or set OLLAMA_HOST" in explain(httpx.ConnectError("refused"))
    html = ollama.ResponseError("<!DOCTYPE html>\n<html><body>502 Bad Gateway</body></html>", 502)
    assert explain(html) == ("http://127.0.0.1:11434 answered HTTP 502 with an HTML page, not as Ollama does: "
                             "is OLLAMA_HOST / --ollama-host the Ollama server (not a proxy or another service)?")
    assert "\n" not in explain(ollama.ResponseError("line one\nline two", 500))
    assert "is OLLAMA_HOST / --ollama-host the Ollama server?" in explain(json.JSONDecodeError("x", "<html>", 0))
    assert "ran out of memory" in explain(ollama.ResponseError("cudaMalloc failed: out of memory", 500))


# ------------------------------------------------------------------ line 4: GPU faults

def test_cuda_oom_in_native_halves_the_batch_and_records_it(tmp_path, small_model_path, monkeypatch):
    import torch
    from sentence_transformers import SentenceTransformer

    real_encode = SentenceTransformer.encode
    too_big = []

    def encode(self, sentences, *args, **kwargs):
        if not isinstance(sentences, str) and len(sentences) > 2:
            too_big.append(len(sentences))
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real_encode(self, sentences, *args, **kwargs)

    monkeypatch.setattr(SentenceTransformer, "encode", encode)
    config = config_for(tiny_profile(small_model_path, batch_sizes=(1, 4)), tmp_path, ["native-fp32"])
    reporter = HookReporter()
    asyncio.run(run_bench(config, reporter))
    data = strict_json(tmp_path / "bench.json")
    sizes = {m["params"]["batch_size"] for m in data["measurements"] if m["scenario"] == "throughput"}
    # 4 texts were tried at once twice: screening (which then went text by text) and batch_size=4
    assert sizes == {1, 2} and too_big == [4, 4]
    assert [f["error"] for f in data["failures"]] == [
        "batch_size=4 did not fit in device memory (out of memory embedding a batch of 4 on cpu)"]
    assert any("retrying with batch_size=2" in note for note in reporter.notes)
    assert data["backends"]["native-fp32"]["error"] is None  # backing off is a finding, not a failure


def test_cuda_error_in_one_probe_check_does_not_stop_the_others(tmp_path, monkeypatch):
    import probe.checks
    import probe.facts
    from probe.cli import main as probe_cli
    from probe.registry import Check
    from probe.result import CheckResult, Status

    def kernels(ctx):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    def attention(ctx):
        return CheckResult("attention", "Attention", Status.PASS, "ran after the CUDA error")

    real = {c.name: c for c in probe.checks.ALL_CHECKS}
    monkeypatch.setattr(probe.checks, "ALL_CHECKS", (
        real["environment"], Check("kernels", "Kernel smoke tests", kernels),
        Check("attention", "Attention", attention), real["ollama"]))
    monkeypatch.setattr(probe.facts, "detect_cuda_device", lambda: "cuda")
    outcome = CliRunner().invoke(probe_cli, ["--results", str(tmp_path), "--profile", "smoke",
                                             "--ollama-host", "http://127.0.0.1:9"])
    assert outcome.exit_code == 1, outcome.output  # a critical check failed on the target: incompatible
    assert "Traceback" not in outcome.output
    data = read_results_json(tmp_path / "probe.json", "probe", 1)
    status = {c["name"]: c["status"] for c in data["checks"]}
    assert list(status) == ["environment", "kernels", "attention", "ollama"]  # all four ran
    assert status["kernels"] == "fail" and status["attention"] == "pass"
    kernels_reason = next(c["reason"] for c in data["checks"] if c["name"] == "kernels")
    assert kernels_reason.startswith("check raised RuntimeError: CUDA error: an illegal memory access")
    assert data["overall"]["status"] == "incompatible"
    assert "kernels: check raised RuntimeError: CUDA error" in data["overall"]["reason"]


# ------------------------------------------------------------------ line 5: NaN / inf

def test_nan_and_inf_vectors_are_counted_and_the_quality_section_says_so(
        tmp_path, small_model_path, ollama_standin, monkeypatch):
    from sentence_transformers import SentenceTransformer

    from bench.analyse.comparison import decision_inputs
    from bench.analyse.decision import decide

    real_encode = SentenceTransformer.encode
    texts = ["Erster Text über Vektoren.", "Second text, overflowing.", "Troisième texte.", "Fourth, also inf."]
    texts_file = tmp_path / "texts.txt"
    texts_file.write_text("\n".join(texts) + "\n", encoding="utf-8")
    config = config_for(tiny_profile(small_model_path), tmp_path, ["ollama", "native-fp32"], ollama_standin.host,
                        texts_file=texts_file)
    overflow = {texts[1]: np.nan, texts[3]: np.inf}  # as an fp16 overflow would leave them

    def encode(self, sentences, *args, **kwargs):
        vectors = real_encode(self, sentences, *args, **kwargs)
        if not isinstance(sentences, str):
            for i, text in enumerate(sentences):
                if text in overflow:
                    vectors[i, 0] = overflow[text]
        return vectors

    monkeypatch.setattr(SentenceTransformer, "encode", encode)
    asyncio.run(run_bench(config))
    data = strict_json(tmp_path / "bench.json")  # NaN/inf never written as bare literals
    quality = data["quality"][0]
    assert (quality["control"], quality["treatment"]) == ("ollama", "native-fp32")
    assert quality["nonfinite_treatment"] == [1, 3] and quality["nonfinite_control"] == []
    assert quality["cosine"]["nonfinite"] == 2 and quality["cosine"]["count"] == 2
    assert [f["error"] for f in data["failures"]] == ["2 of 4 vectors contain NaN or inf (text index 1, 3)"]

    inputs = decision_inputs(None, data)[0]
    assert "non-finite vectors on 'user': ollama 0, native-fp32 2" in inputs.quality_issues
    assert inputs.quality_ok is False
    decide(inputs)  # decides without choking on the strings "NaN"/"Infinity"
    verdict_output(tmp_path)
    verdict_md = (tmp_path / "verdict.md").read_text(encoding="utf-8")
    quality_section = verdict_md[verdict_md.index("## Quality"):]
    assert "**Non-finite vectors**" in quality_section
    assert "native-fp32 on 'user': 2 of 4 vectors contain NaN or inf" in quality_section
    lines = quality_section.splitlines()
    header = next(line for line in lines if line.startswith("| backend | vs |")).strip(" |").split(" | ")
    row = next(line for line in lines if line.startswith("| native-fp32 | ollama | user")).strip(" |").split(" | ")
    assert row[header.index("non-finite")] == "2"
    assert row[header.index("left out (not embedded)")] == "0"  # NaN vectors are embedded, just wrong
    assert "2 of 4 vectors contain NaN or inf" in verdict_md


# ------------------------------------------------------------------ line 7: atomic writes

def _no_temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp") or ".tmp." in p.name)


@pytest.mark.parametrize("crash", ["os.replace", "fsync", "json.dumps", "interrupt"])
def test_crash_during_a_write_keeps_the_previous_file(tmp_path, monkeypatch, crash):
    import probe.output

    path = tmp_path / "bench.json"
    write_json_atomic(path, {"kind": "bench", "version": "previous"})
    before = path.read_bytes()

    def boom(*args, **kwargs):
        if crash == "interrupt":
            raise KeyboardInterrupt  # Ctrl-C or SIGTERM halfway through a save
        raise OSError(28, "No space left on device")

    if crash == "os.replace":
        monkeypatch.setattr(probe.output.os, "replace", boom)
    elif crash in ("fsync", "interrupt"):
        monkeypatch.setattr(probe.output.os, "fsync", boom)
    else:
        monkeypatch.setattr(probe.output.json, "dumps", lambda *a, **k: (_ for _ in ()).throw(ValueError("mid-way")))
    with pytest.raises((OSError, ValueError, KeyboardInterrupt)):
        write_json_atomic(path, {"kind": "bench", "version": "next", "big": ["x" * 1000] * 1000})
    assert path.read_bytes() == before
    assert _no_temp_files(tmp_path) == []


def test_failing_save_mid_run_leaves_a_readable_bench_json(tmp_path, small_model_path, monkeypatch):
    """The disk fills up during a run: the last good bench.json stays, later commands read it."""
    import probe.output

    real_replace = os.replace
    calls = []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) > 8:  # past the screening phase, a few measurements in
            raise OSError(28, "No space left on device", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(probe.output.os, "replace", replace)
    config = config_for(tiny_profile(small_model_path), tmp_path, ["native-fp32"])
    with pytest.raises(OSError):
        asyncio.run(run_bench(config))
    data = read_results_json(tmp_path / "bench.json", "bench", BENCH_SCHEMA_VERSION)  # intact, not half-written
    assert data["status"] == "running" and len(data["measurements"]) >= 1
    assert _no_temp_files(tmp_path) == []
    monkeypatch.undo()
    out = verdict_output(tmp_path)
    assert "Decision: Inconclusive" in out and "the bench run is partial" in out


WRITER = """
import sys
from pathlib import Path
from probe.output import write_json_atomic
path = Path(sys.argv[1])
i = 0
while True:
    i += 1
    write_json_atomic(path, {"kind": "bench", "i": i, "pad": ["x" * 100] * 20000})
    print(i, flush=True)
"""


def test_killed_writer_never_leaves_half_a_json(tmp_path):
    """SIGKILL (no cleanup possible) while a 2 MB results file is rewritten in a loop."""
    path = tmp_path / "bench.json"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    try:
        for _ in range(3):
            assert proc.stdout.readline()  # a few complete writes done
        time.sleep(0.05)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    data = json.loads(path.read_text(encoding="utf-8"))  # whole: either the last or the one before
    assert data["i"] >= 3 and len(data["pad"]) == 20000
    leftovers = _no_temp_files(tmp_path)
    assert all(name.startswith(".bench.json.") for name in leftovers)  # hidden, never read by the tool
    with pytest.raises(ResultsFileError, match="schema version None"):
        read_results_json(path, "bench", 1)  # a reader sees a whole file (of this test's own shape)


# ------------------------------------------------------------------ line 8: no secrets in results

SECRETS = {
    "HF_TOKEN": "hf_secret123value",
    "HUGGING_FACE_HUB_TOKEN": "hf_othersecret456",
    "OLLAMA_API_KEY": "ollama-key-789",
    "AWS_SECRET_ACCESS_KEY": "aws/secret+abc",
    "DB_PASSWORD": "pw-hunter2-db",
}
URL_PASSWORD = "url-pass-0xdead"


def test_no_secret_values_in_probe_bench_or_verdict_files(tmp_path, small_model_path, monkeypatch):
    from probe.cli import main as probe_cli

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    host = f"http://bench:{URL_PASSWORD}@127.0.0.1:9"  # credentials in the Ollama URL
    monkeypatch.setenv("OLLAMA_HOST", host)
    outcome = CliRunner().invoke(probe_cli, ["--results", str(tmp_path), "--profile", "smoke",
                                             "--only", "environment", "--only", "ollama"])
    assert outcome.exit_code == 0, outcome.output
    config = config_for(tiny_profile(small_model_path), tmp_path, ["ollama", "native-fp32"], host)
    asyncio.run(run_bench(config))
    verdict_output(tmp_path)

    env_vars = read_results_json(tmp_path / "probe.json", "probe", 1)["facts"]["env_vars"]
    assert env_vars["HF_TOKEN"] == "***"  # seen, and redacted
    assert env_vars["OLLAMA_HOST"] == "http://***@127.0.0.1:9"
    assert strict_json(tmp_path / "bench.json")["config"]["ollama_host"] == "http://***@127.0.0.1:9"
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert {"probe.json", "probe.md", "bench.json", "verdict.md"} <= {p.name for p in files}
    for path in files:
        content = path.read_bytes()
        for secret in [*SECRETS.values(), URL_PASSWORD]:
            assert secret.encode() not in content, (path.name, secret)
