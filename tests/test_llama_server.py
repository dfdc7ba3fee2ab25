"""The `openai` backend against a real llama.cpp llama-server (built by tools/build-llama-server.sh,
the model converted by llama.cpp's own converter), end to end: real vectors, real token counts,
real refusals. Every figure asserted here was produced by llama.cpp, not by a stand-in."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import httpx
import numpy as np
import pytest
from llama_server import LlamaServer

from bench.backends.base import BackendError, BackendSettings, BackendUnavailable
from bench.backends.openai import OpenAIEmbeddingsBackend
from bench.config import PROFILES, BenchConfig
from bench.measure.runner import run_bench
from bench.results import BENCH_SCHEMA_VERSION
from probe.output import read_results_json

pytestmark = pytest.mark.slow

SENTENCE = "Die Embeddings für das RAG-System laufen heute über Ollama auf dem DGX Spark. "
# Short, mixed-language and long texts, the longest near the 512-token batch both sides can take.
TEXTS = [
    "kurz",
    "Native sentence-transformers on the GPU.",
    "Wie schnell ist BGE-M3 mit PyTorch auf sm_121? 速度はどうですか。",
    "emoji 🚀 and punctuation!!! ... (brackets) [more] {braces}",
    SENTENCE * 8,
    SENTENCE * 12,
    SENTENCE * 20,  # 502 tokens
]
SAME_LENGTH_COSINE_MIN = 0.9999


def run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module", params=["f16", "f32"])
def served(request, llama_cpp, minilm_gguf):
    """llama-server on the MiniLM GGUF of each precision, with the model's whole 512-token context."""
    with LlamaServer(llama_cpp, minilm_gguf[request.param], ["-c", "512"]) as server:
        yield request.param, server


@pytest.fixture(scope="module")
def native_512(small_model_path):
    """sentence-transformers at the same maximum length as llama.cpp (its default is 256)."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(small_model_path, device="cpu")
    model.max_seq_length = 512
    return model


def backend_for(server, **kw) -> OpenAIEmbeddingsBackend:
    return OpenAIEmbeddingsBackend(BackendSettings(model="unused", openai_url=server.url, **kw))


def test_vectors_and_token_counts_match_sentence_transformers(served, native_512):
    precision, server = served
    backend = backend_for(server)

    async def go():
        await backend.load()
        batched = await backend.embed(TEXTS)
        singles = [await backend.embed([t]) for t in TEXTS]
        await backend.unload()
        return batched, singles

    batched, singles = run(go())
    expected = native_512.encode(TEXTS, normalize_embeddings=False)
    a = batched.vectors / np.linalg.norm(batched.vectors, axis=1, keepdims=True)
    b = expected / np.linalg.norm(expected, axis=1, keepdims=True)
    cosines = np.sum(a * b, axis=1)
    assert cosines.min() >= SAME_LENGTH_COSINE_MIN, (precision, cosines)
    counts = [len(ids) for ids in native_512.tokenizer(TEXTS)["input_ids"]]
    assert max(counts) > 256  # the long texts are past sentence-transformers' default for MiniLM
    assert [s.prompt_tokens for s in singles] == counts
    assert batched.prompt_tokens == sum(counts)
    facts = backend.describe()
    assert facts["normalised_by_server"] is True and facts["vector_norms"]["count"] >= len(TEXTS)
    assert facts["server_version"].startswith("llama.cpp") and facts["max_tokens"] == 512
    assert precision.upper() in facts["model_precision"]  # llama.cpp: "F16", "all F32"


def test_over_long_input_is_refused_in_one_line(served):
    _, server = served
    backend = backend_for(server)
    with pytest.raises(BackendError) as caught:
        run(backend.embed(["kurz", SENTENCE * 40]))
    err = caught.value
    assert not isinstance(err, BackendUnavailable)  # about the text: the runner may retry item by item
    assert err.http_status == 500
    assert "is too large to process" in str(err) and "\n" not in str(err)


def test_the_server_is_stopped_whatever_happens(llama_cpp, minilm_gguf):
    server = LlamaServer(llama_cpp, minilm_gguf["f16"], ["-c", "512"])
    with pytest.raises(RuntimeError, match="test failure"):
        with server:
            assert httpx.get(f"{server.url}/health").status_code == 200
            raise RuntimeError("test failure inside the block")
    assert not server.running
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{server.url}/health", timeout=2.0)


def test_bench_end_to_end_against_llama_server(tmp_path, llama_cpp, minilm_gguf, small_model_path):
    """`bench run` with native-fp32 and openai: cosines, truncation per text and speed ratios in
    bench.json; llama-server's refusals of texts over its 512-token batch recorded per text; the
    verdict's other-servers line."""
    from click.testing import CliRunner

    from bench.cli import main as bench_cli

    profile = replace(PROFILES["smoke"], model=small_model_path, set_sizes={"short": 6, "long": 4, "documents": 2},
                      warmup_calls=1, single_latency_calls=4, batch_latency_repeats=2, batch_sizes=(1, 4),
                      concurrency_levels=(1, 2), concurrency_requests=4, quality_pairs=10, token_budgets=(),
                      best_setting_passes=2)
    with LlamaServer(llama_cpp, minilm_gguf["f16"], ["-c", "512"]) as server:
        config = BenchConfig(profile=profile, backends=("native-fp32", "openai"), results_dir=tmp_path,
                             ollama_host="http://127.0.0.1:9", timeout_s=60.0, device="cpu",
                             openai_url=server.url)
        state = run(run_bench(config))
    assert state.status == "complete"
    data = read_results_json(tmp_path / "bench.json", "bench", BENCH_SCHEMA_VERSION)
    described = data["backends"]["openai"]["description"]
    assert described["kind"] == "openai" and described["server_version"].startswith("llama.cpp")
    assert described["vector_norms"]["count"] > 6  # every call's vectors, not only the load's
    assert data["config"]["openai_url"] == server.url

    # Short texts: both engines embed them whole; the cross-engine cosine is real and high.
    short = next(q for q in data["quality"] if q["text_set"] == "short")
    assert {short["control"], short["treatment"]} == {"native-fp32", "openai"}
    assert short["cosine"]["min"] >= SAME_LENGTH_COSINE_MIN
    # Truncation per text: llama.cpp reports the tokenizer's own count for every text it embedded.
    records = {(t["backend"], t["text_set"]): t for t in data["truncation"]}
    llama_short = records[("openai", "short")]
    assert llama_short["reported_tokens"] == llama_short["expected_tokens"]
    assert records[("native-fp32", "long")]["limit"] == 256
    # llama-server refuses exactly the texts over its 512-token batch, each with HTTP 500, per text.
    sets = {s["name"]: s["token_counts"] for s in data["workload"]["sets"]}
    refused = {(r["text_set"], f["index"]): f for r in data["screening"] if r["backend"] == "openai"
               for f in r["failures"]}
    for (text_set, index), failure in refused.items():
        assert sets[text_set][index] > 512
        assert failure["http_status"] == 500 and "too large to process" in failure["error"]
    assert {(name, i) for name, counts in sets.items() for i, n in enumerate(counts) if n > 512} == set(refused)
    # Every document is over 512 tokens: llama.cpp is not measured there, native still is.
    assert len([k for k in refused if k[0] == "documents"]) == len(sets["documents"])
    assert any(f["backend"] == "openai" and f["text_set"] == "documents" and "no text" in f["error"]
               for f in data["failures"])
    assert any(m["backend"] == "native-fp32" and m["text_set"] == "documents" for m in data["measurements"])
    # Both sides are timed on the texts both can embed: the long texts under 512 tokens.
    timed = {(m["backend"], len(m["excluded"])) for m in data["measurements"] if m["text_set"] == "long"}
    assert timed == {("native-fp32", len([k for k in refused if k[0] == "long"])),
                     ("openai", len([k for k in refused if k[0] == "long"]))}

    outcome = CliRunner().invoke(bench_cli, ["verdict", "--results", str(tmp_path), "--no-plots"])
    assert outcome.exit_code == 0, outcome.output
    verdict = (tmp_path / "verdict.md").read_text()
    assert "Other server, not part of the decision: openai (llama.cpp" in verdict
    assert "native (native-fp32) ÷ it: short " in verdict


# ------------------------------------------------------- Ollama's layer on the real engine

def test_ollama_layer_on_llama_server_compares_two_real_engines(llama_cpp, minilm_gguf, small_model):
    """The stand-in with llama-server as its runner, started as Ollama starts it for num_ctx 256
    (sentence-transformers' own limit for MiniLM): /api/embed normalises, cuts over-long texts
    by Ollama's retry and counts tokens as llama.cpp embedded them; its vectors match native."""
    from contextlib import closing

    from ollama_standin import OllamaStandIn, StandInConfig
    from standin_engines import LlamaServerEngine, ollama_launch_args

    from bench.backends.ollama import OllamaEmbedBackend, OllamaLegacyBackend

    num_ctx = 256
    with LlamaServer(llama_cpp, minilm_gguf["f32"], ollama_launch_args(num_ctx)) as server, \
            closing(LlamaServerEngine(server.url)) as engine, \
            OllamaStandIn(engine, StandInConfig(num_ctx=num_ctx)) as standin:
        settings = BackendSettings(model="unused", ollama_host=standin.host)
        batched = run(OllamaEmbedBackend(settings).embed(TEXTS))
        singles = [run(OllamaEmbedBackend(settings).embed([t])) for t in TEXTS]
        legacy = run(OllamaLegacyBackend(settings).embed(TEXTS[:4]))
        runner_calls = [r for r in standin.requests if r.path == "/api/embed"]

    native = small_model.encode(TEXTS)  # max_seq_length 256: cuts the 302- and 502-token texts
    counts = [len(ids) for ids in small_model.tokenizer(TEXTS)["input_ids"]]
    assert max(counts) > num_ctx
    cosines = np.sum(batched.vectors * native, axis=1)  # both L2-normalised
    assert cosines.min() >= SAME_LENGTH_COSINE_MIN, cosines
    assert np.allclose(np.linalg.norm(batched.vectors, axis=1), 1, atol=1e-5)
    # prompt_eval_count: what llama.cpp embedded, the cut texts at num_ctx (detokenize/retokenize
    # may move a word boundary by a token, hence the slack the bench allows too).
    embedded = [s.prompt_tokens for s in singles]
    for got, want in zip(embedded, counts):
        assert abs(got - min(want, num_ctx)) <= 2, (embedded, counts)
    assert batched.prompt_tokens == sum(embedded)
    # /api/embeddings for a WordPiece model: llama-server's vector, already normalised.
    assert np.allclose(np.linalg.norm(legacy.vectors, axis=1), 1, atol=1e-5)
    assert np.sum(legacy.vectors * native[:4], axis=1).min() >= SAME_LENGTH_COSINE_MIN
    assert len(runner_calls) == 1 + len(TEXTS)


def test_ollama_layer_refuses_without_truncate(llama_cpp, minilm_gguf, small_model):
    """truncate=false: llama.cpp's refusal reaches the client as Ollama's 400 text."""
    from contextlib import closing

    import ollama
    from ollama_standin import OllamaStandIn, StandInConfig
    from standin_engines import INPUT_TOO_LONG, LlamaServerEngine, ollama_launch_args

    with LlamaServer(llama_cpp, minilm_gguf["f16"], ollama_launch_args(128)) as server, \
            closing(LlamaServerEngine(server.url)) as engine, \
            OllamaStandIn(engine, StandInConfig(num_ctx=128)) as standin:
        client = ollama.Client(host=standin.host)
        with pytest.raises(ollama.ResponseError) as caught:
            client.embed(model="bge-m3", input=[SENTENCE * 8], truncate=False)
        cut = client.embed(model="bge-m3", input=[SENTENCE * 8])
    assert caught.value.status_code == 400 and caught.value.error == INPUT_TOO_LONG
    assert abs(cut.prompt_eval_count - 128) <= 2


def test_ollama_layer_retries_at_num_batch_when_the_runner_refuses(llama_cpp, minilm_gguf):
    """routes.go embedWithRetry: a text within num_ctx but over the runner's physical batch is
    refused by llama-server, then cut to num_batch and embedded (Ollama >= 0.30's 2048-token cut,
    here at 128 of a 512 context)."""
    from contextlib import closing

    import ollama
    from ollama_standin import OllamaStandIn, StandInConfig
    from standin_engines import LlamaServerEngine, ollama_launch_args

    args = ollama_launch_args(512, num_batch=128)
    assert args == ["-c", "512", "-np", "1", "-b", "128", "-ub", "128"]
    with LlamaServer(llama_cpp, minilm_gguf["f32"], args) as server, \
            closing(LlamaServerEngine(server.url, num_batch=128)) as engine, \
            OllamaStandIn(engine, StandInConfig(num_ctx=512)) as standin:
        answer = ollama.Client(host=standin.host).embed(model="bge-m3", input=[SENTENCE * 12])
    assert abs(answer.prompt_eval_count - 128) <= 2, answer.prompt_eval_count


def test_ollama_launch_args_follow_ollamas_default_batch():
    from standin_engines import ollama_launch_args

    assert ollama_launch_args(8192)[-4:] == ["-b", "2048", "-ub", "2048"]  # DefaultEmbeddingNumBatch
    assert ollama_launch_args(512)[-4:] == ["-b", "512", "-ub", "512"]  # capped at num_ctx


def test_bench_ollama_vs_native_on_two_real_engines(tmp_path, llama_cpp, minilm_gguf, small_model,
                                                    small_model_path):
    """`bench run` with ollama (Ollama's layer on llama.cpp) and native-fp32 (sentence-transformers):
    the quality figures compare two different engines; both stop at 256 tokens, so no text is
    embedded at different lengths and every cosine is an engine comparison."""
    from contextlib import closing

    from ollama_standin import OllamaStandIn, StandInConfig
    from standin_engines import LlamaServerEngine, ollama_launch_args

    profile = replace(PROFILES["smoke"], model=small_model_path, ollama_model="bge-m3",
                      set_sizes={"short": 6, "long": 3, "documents": 2}, warmup_calls=1, single_latency_calls=2,
                      batch_latency_repeats=1, batch_sizes=(1, 4), concurrency_levels=(1,), concurrency_requests=2,
                      quality_pairs=10, token_budgets=())
    with LlamaServer(llama_cpp, minilm_gguf["f32"], ollama_launch_args(256)) as server, \
            closing(LlamaServerEngine(server.url)) as engine, \
            OllamaStandIn(engine, StandInConfig(num_ctx=256, load_delay_s=0.0)) as standin:
        config = BenchConfig(profile=profile, backends=("ollama", "native-fp32"), results_dir=tmp_path,
                             ollama_host=standin.host, timeout_s=60.0, device="cpu")
        state = run(run_bench(config))
    assert state.status == "complete"
    data = read_results_json(tmp_path / "bench.json", "bench", BENCH_SCHEMA_VERSION)
    from bench.analyse.comparison import truncation_issues

    assert truncation_issues(data, "ollama", "native-fp32") == []
    for q in data["quality"]:
        assert q["cosine"]["count"] == len(q["per_text_cosine"])
        assert q["cosine"]["min"] >= SAME_LENGTH_COSINE_MIN, (q["text_set"], q["cosine"])
