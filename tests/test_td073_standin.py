"""The td073 profile end to end on this CPU with the small bge-m3 stand-in: `bench run --model DIR
--ollama-model TAG --sizes ...` and `bench verdict` through the CLI.

What is td073's here: the model's tokenizer (XLM-R, 250,002 tokens), its 8192-token context,
the generated sets' token targets, the batch sizes (1, 16, 64), the 32768-token budget and the
backend list (Ollama is not running, so the Ollama backends record that and the native one is
measured). What is cut for a test's wall time: the set sizes (--sizes) and the call counts of
the latency and concurrency scenarios (patched into the profile below).
"""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch
from click.testing import CliRunner

from bench.analyse.roofline import ModelShape, roofline_rows
from bench.cli import main as bench_cli
from bench.config import PROFILES
from bench.measure.batching import token_budget_batches
from bench.measure.standin_model import RANDOM_WEIGHTS_LABEL
from bench.measure.workload import TARGET_TOKENS, token_window
from bench.results import BENCH_SCHEMA_VERSION
from probe.output import read_results_json

pytestmark = pytest.mark.slow

SIZES = {"short": 6, "long": 3, "documents": 3}
TD073_FOR_A_TEST = {"warmup_calls": 1, "single_latency_calls": 3, "batch_latency_repeats": 1,
                    "concurrency_levels": (1, 4), "concurrency_requests": 4, "quality_pairs": 20}


@pytest.fixture(scope="module")
def td073_run(standin_small, tmp_path_factory):
    """One reduced td073 run and its verdict; (results folder, bench.json, CLI outputs)."""
    results = tmp_path_factory.mktemp("td073")
    sizes = ",".join(f"{name}={n}" for name, n in SIZES.items())
    patched = replace(PROFILES["td073"], **TD073_FOR_A_TEST)
    threads = torch.get_num_threads()
    # One intra-op thread: on a shared 2-core machine two threads wait on each other at every op
    # (a 492-token forward of this model: median 839 ms with 2 threads, 43 ms with 1; n=20 each).
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(PROFILES, "td073", patched)
        run = CliRunner().invoke(bench_cli, [
            "run", "--profile", "td073", "--model", str(standin_small), "--ollama-model", "bge-m3:567m",
            "--sizes", sizes, "--backend", "ollama", "--backend", "native-fp32",
            "--ollama-host", "http://127.0.0.1:9", "--device", "cpu", "--results", str(results)])
    torch.set_num_threads(threads)
    assert run.exit_code == 0, run.output
    verdict = CliRunner().invoke(bench_cli, ["verdict", "--results", str(results), "--no-plots"])
    assert verdict.exit_code == 0, verdict.output
    return results, read_results_json(results / "bench.json", "bench", BENCH_SCHEMA_VERSION), verdict.output


def test_options_are_recorded_in_bench_json(td073_run, standin_small):
    _, bench, _ = td073_run
    config = bench["config"]
    assert config["profile"]["name"] == "td073"
    assert config["resolved_model"] == str(standin_small)
    assert config["profile"]["ollama_model"] == "bge-m3:567m"
    assert config["profile"]["set_sizes"] == SIZES
    assert config["overrides"] == {"model": str(standin_small), "ollama_model": "bge-m3:567m", "sizes": SIZES}
    assert config["model_weights"]["random"] is True
    assert config["model_weights"]["label"] == RANDOM_WEIGHTS_LABEL
    assert bench["status"] == "complete"


def test_token_targets_met_by_the_xlmr_tokenizer(td073_run, xlmr_tokenizer_file):
    """Every text within +/-10 % of its target, counted again with the package's raw tokenizer.json
    through the tokenizers library: an independent reference for the counts the bench recorded."""
    from tokenizers import Tokenizer

    _, bench, _ = td073_run
    raw = Tokenizer.from_file(str(xlmr_tokenizer_file))
    assert raw.get_vocab_size() == 250_002
    assert "XLMRoberta" in bench["workload"]["tokenizer_name"]
    for text_set in bench["workload"]["sets"]:
        low, high = token_window(TARGET_TOKENS[text_set["name"]])
        recount = [len(e.ids) for e in raw.encode_batch(text_set["texts"])]
        assert recount == text_set["token_counts"], text_set["name"]
        assert len(recount) == SIZES[text_set["name"]]
        assert all(low <= n <= high for n in recount), (text_set["name"], recount)


def test_documents_are_embedded_whole(td073_run):
    _, bench, _ = td073_run
    native = bench["backends"]["native-fp32"]["description"]
    assert native["max_tokens"] == 8192
    cut = {t["text_set"]: t for t in bench["truncation"] if t["backend"] == "native-fp32"}
    documents = cut["documents"]
    assert documents["limit"] == 8192
    assert min(documents["expected_tokens"]) >= token_window(2000)[0]
    assert documents["reported_tokens"] == documents["expected_tokens"] and documents["truncated"] == []


def test_documents_tail_reaches_the_vector(standin_small):
    """The model reads a ~2000-token document to its end: every token gets an output row, and
    two documents that differ only after token ~1,400 get different CLS vectors. The control:
    cut at 512 tokens, the same two documents embed identically."""
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(standin_small), device="cpu", model_kwargs={"dtype": torch.float32})
    assert model.max_seq_length == 8192 and model.tokenizer.model_max_length == 8192
    head = " ".join(f"Abschnitt {i}: Der Dienst protokolliert jede Anfrage mit Zeitstempel." for i in range(110))
    a = head + " " + " ".join(f"Teil {i}: Die Sicherung läuft jede Nacht um zwei Uhr." for i in range(40))
    b = head + " " + " ".join(f"Part {i}: Incident review moved to Thursday, owners unchanged." for i in range(40))
    counts = [len(model.tokenizer(x)["input_ids"]) for x in (head, a, b)]
    assert counts[0] > 1000 and min(counts[1:]) >= token_window(2000)[0] - 100

    def rows_and_cosine():
        rows = [t.shape[0] for t in model.encode([a, b], output_value="token_embeddings")]
        va, vb = model.encode([a, b], convert_to_numpy=True, normalize_embeddings=True)
        return rows, float(np.dot(va, vb))

    rows, cosine = rows_and_cosine()
    assert rows == counts[1:] and cosine < 0.99
    model.max_seq_length = 512
    rows, cosine = rows_and_cosine()
    assert rows == [512, 512] and cosine == pytest.approx(1.0, abs=1e-6)


def test_token_budget_batching(td073_run):
    _, bench, _ = td073_run
    counts = {s["name"]: s["token_counts"] for s in bench["workload"]["sets"]}
    passes = [m for m in bench["measurements"]
              if m["backend"] == "native-fp32" and m["params"].get("token_budget") == 32768]
    assert {m["text_set"] for m in passes} == set(SIZES)
    for m in passes:
        plan = token_budget_batches(counts[m["text_set"]], 32768)
        assert len(m["samples"]) == len(plan) and all(s["ok"] for s in m["samples"])
        assert all(len(b) * max(counts[m["text_set"]][i] for i in b) <= 32768 for b in plan)
    # The sweep; the best setting's extra passes carry "repeat" (profile best_setting_passes).
    sweep = {json.dumps({k: v for k, v in m["params"].items() if k != "repeat"}, sort_keys=True)
             for m in bench["measurements"]
             if m["backend"] == "native-fp32" and m["scenario"] == "throughput" and m["text_set"] == "short"}
    assert sweep == {json.dumps(p, sort_keys=True) for p in
                     ({"batch_size": 1}, {"batch_size": 16}, {"batch_size": 64}, {"token_budget": 32768})}


def test_roofline_from_the_recorded_model_config(td073_run):
    results, bench, _ = td073_run
    recorded = bench["environment"]["model_config"]
    assert ModelShape.from_config(recorded) == ModelShape(layers=2, hidden=128, intermediate=512, heads=2,
                                                         vocab=250_002)
    rows = roofline_rows(bench, None)
    assert {r.text_set for r in rows} == set(SIZES)
    counts = {s["name"]: s["token_counts"] for s in bench["workload"]["sets"]}
    for r in rows:
        assert r.tokens == sum(counts[r.text_set]) and r.achieved_tflops > 0
        assert r.mfu_measured is None  # no probe matmul peak on this machine: "not available"
    verdict = (results / "verdict.md").read_text()
    assert "model: 2 layers, hidden 128, intermediate 512, 2 heads, vocabulary 250002" in verdict


def test_verdict_is_inconclusive_and_labelled(td073_run, standin_small):
    results, _, output = td073_run
    verdict = (results / "verdict.md").read_text()
    assert verdict.startswith(f"# TD-073 verdict: Inconclusive ({RANDOM_WEIGHTS_LABEL})\n")
    assert "Decision: Inconclusive" in output and RANDOM_WEIGHTS_LABEL in output
    assert f"| native model folder | {standin_small} | bench config (set by --model) |" in verdict
    assert "| Ollama model requested | bge-m3:567m | bench config (set by --ollama-model) |" in verdict
    assert "| text sets | short 6, long 3, documents 3 | bench config (set by --sizes) |" in verdict
