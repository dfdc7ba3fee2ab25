"""The Ollama backends through the real ollama client against the stand-in."""

from __future__ import annotations

import asyncio
import math
import socket

import numpy as np
import pytest

from bench.backends.base import BackendError, BackendOutOfMemory, BackendSettings
from bench.backends.ollama import (
    LOAD_SOURCE,
    OllamaEmbedBackend,
    OllamaLegacyBackend,
    base_url,
    model_matches,
    offload_state,
)

TEXTS = ["Die Embeddings laufen über Ollama.", "Native sentence-transformers on the GPU.", "kurz"]


def settings(host: str, **kw) -> BackendSettings:
    return BackendSettings(model="unused-native-model", ollama_host=host, **kw)


def run(coro):
    return asyncio.run(coro)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("cls", [OllamaEmbedBackend, OllamaLegacyBackend])
def test_vectors_equal_the_model_and_load_is_cold(cls, ollama_standin, small_model):
    backend = cls(settings(ollama_standin.host))

    async def go():
        await backend.embed(["warm it up first"])
        load = await backend.load()
        response = await backend.embed(TEXTS)
        memory = await backend.memory()
        await backend.unload()
        return load, response, memory

    load, response, memory = run(go())
    assert load.wall_s >= ollama_standin.config.load_delay_s
    assert load.reported_load_s >= ollama_standin.config.load_delay_s and load.reported_source == LOAD_SOURCE
    assert ollama_standin.load_count == 2  # the warm model was unloaded and loaded again
    expected = small_model.encode(TEXTS)
    vectors = response.vectors
    assert vectors.dtype == np.float32 and vectors.shape == expected.shape
    if cls is OllamaEmbedBackend:
        np.testing.assert_allclose(vectors, expected, atol=1e-5)
        assert response.prompt_tokens == sum(len(small_model.tokenizer(t)["input_ids"]) for t in TEXTS)
        assert 0 < response.backend_time_s < 10
    else:  # raw vectors, returned as is: only their direction matches
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        assert np.all(np.abs(norms - 1) > 0.1)
        np.testing.assert_allclose(vectors / norms, expected, atol=1e-5)
        assert response.prompt_tokens is None and response.backend_time_s is None
        assert ollama_standin.paths().count("/api/embeddings") == len(TEXTS) + 1
    vram, total, per_process = memory
    assert vram.bytes == total.bytes == ollama_standin.size_bytes
    assert vram.source == "ollama /api/ps size_vram"
    assert per_process.bytes is None and "PID namespace" in per_process.source
    assert not ollama_standin.loaded


def test_a_model_still_listed_after_the_unload_wait_is_timed_warm(ollama_standin, monkeypatch):
    import bench.backends.ollama as ollama_backend

    monkeypatch.setattr(ollama_backend, "UNLOAD_WAIT_S", 0.3)
    ollama_standin.faults.unload_delay_s = math.inf  # the runner never goes away
    backend = OllamaEmbedBackend(settings(ollama_standin.host))
    run(backend.embed(["loaded before the bench"]))
    load = run(backend.load())
    assert load.cold is False
    assert load.note == "/api/ps still listed bge-m3 0.3 s after keep_alive 0: timed as a warm load"
    assert load.includes.startswith("first /api/embed while /api/ps still listed the model (warm")
    assert ollama_standin.load_count == 1  # nothing was loaded again: the figure really was warm
    with pytest.raises(BackendError, match="still lists bge-m3 0.3 s after keep_alive 0"):
        run(backend.unload())


def test_a_slow_unload_is_waited_for_and_the_load_stays_cold(ollama_standin):
    ollama_standin.faults.unload_delay_s = 0.5  # Ollama unloads asynchronously
    backend = OllamaEmbedBackend(settings(ollama_standin.host))
    run(backend.embed(["loaded before the bench"]))
    load = run(backend.load())
    assert load.cold is True and load.note is None
    assert ollama_standin.load_count == 2
    run(backend.unload())
    assert not ollama_standin.loaded  # unload() returned only once /api/ps no longer listed it


def test_batched_backend_sends_one_request_with_options(ollama_standin):
    backend = OllamaEmbedBackend(settings(ollama_standin.host, ollama_options={"num_ctx": 64, "num_batch": 32}))
    run(backend.embed(TEXTS))
    embeds = [r for r in ollama_standin.requests if r.path == "/api/embed"]
    assert len(embeds) == 1 and embeds[0].body["input"] == TEXTS
    assert embeds[0].body["options"] == {"num_ctx": 64, "num_batch": 32}


def test_describe_after_load(ollama_standin):
    backend = OllamaLegacyBackend(settings(ollama_standin.host, ollama_options={"num_ctx": 64}))
    run(backend.load())
    described = backend.describe()
    assert described["server_version"] == ollama_standin.config.version
    assert described["model_digest"] == ollama_standin.digest
    assert described["offload"] == "gpu" and described["context_length"] == 64
    assert described["endpoint"].endswith("/api/embeddings") and described["options"] == {"num_ctx": 64}
    assert described["normalised_by_server"] is False
    # the stand-in serves fp32 weights and says so, as Ollama's details.quantization_level does (F16 for bge-m3)
    assert described["weight_dtype"] == "F32"
    assert described["weight_dtype_source"] == "ollama /api/ps details.quantization_level"


def test_describe_before_load_reads_the_weight_dtype_from_the_tags(ollama_standin):
    described = OllamaEmbedBackend(settings(ollama_standin.host)).describe()
    assert described["weight_dtype"] == "F32"
    assert described["weight_dtype_source"] == "ollama /api/tags details.quantization_level"


def test_describe_without_a_server_does_not_raise():
    described = OllamaEmbedBackend(settings(f"127.0.0.1:{free_port()}", timeout_s=1)).describe()
    assert described["server_version"] is None and described["endpoint"].endswith("/api/embed")
    assert described["weight_dtype"] is None


def test_not_running_is_one_actionable_line():
    host = f"127.0.0.1:{free_port()}"
    for cls in (OllamaEmbedBackend, OllamaLegacyBackend):
        with pytest.raises(BackendError) as err:
            run(cls(settings(host, timeout_s=2)).embed(["x"]))
        assert str(err.value) == (f"Ollama not reachable at http://{host}: start it "
                                  "(docker compose up -d ollama) or set OLLAMA_HOST")


def test_model_missing(ollama_standin):
    ollama_standin.remove_model()
    for call in (lambda b: b.load(), lambda b: b.embed(["x"])):
        for cls in (OllamaEmbedBackend, OllamaLegacyBackend):
            with pytest.raises(BackendError) as err:
                run(call(cls(settings(ollama_standin.host))))
            assert str(err.value) == (
                f"model 'bge-m3' is not pulled on {ollama_standin.host}: run `ollama pull bge-m3` "
                "(in compose: docker compose exec ollama ollama pull bge-m3)"
            )


def test_http_500_carries_ollama_text(ollama_standin):
    ollama_standin.fail_with(500, "llama runner process has terminated: exit status 2")
    with pytest.raises(BackendError) as err:
        run(OllamaEmbedBackend(settings(ollama_standin.host)).embed(["x"]))
    assert "HTTP 500: llama runner process has terminated: exit status 2" in str(err.value)
    assert not isinstance(err.value, BackendOutOfMemory)
    ollama_standin.fail_with(500, "cudaMalloc failed: out of memory")
    with pytest.raises(BackendOutOfMemory):
        run(OllamaEmbedBackend(settings(ollama_standin.host)).embed(["x"]))


def test_hang_becomes_timeout(ollama_standin):
    ollama_standin.hang(5)
    with pytest.raises(BackendError) as err:
        run(OllamaLegacyBackend(settings(ollama_standin.host, timeout_s=0.3)).embed(["x"]))
    assert "did not answer within 0.3 s" in str(err.value) and "--timeout" in str(err.value)


def test_die_mid_run(ollama_standin):
    ollama_standin.faults.item_delay_s = 0.02
    ollama_standin.die_after(2)
    backend = OllamaEmbedBackend(settings(ollama_standin.host))
    with pytest.raises(BackendError) as err:
        run(backend.embed(TEXTS))
    assert "dropped the connection mid-request" in str(err.value)
    with pytest.raises(BackendError) as err:
        run(backend.embed(TEXTS))
    assert str(err.value).startswith(f"Ollama not reachable at {ollama_standin.host}")


def test_legacy_die_after_some_texts(ollama_standin):
    ollama_standin.die_after(1)
    with pytest.raises(BackendError) as err:
        run(OllamaLegacyBackend(settings(ollama_standin.host)).embed(TEXTS))
    assert "dropped the connection" in str(err.value) or "not reachable" in str(err.value)
    assert ollama_standin.paths().count("/api/embeddings") == 2


def test_concurrent_callers_share_one_client(ollama_standin, small_model):
    backend = OllamaEmbedBackend(settings(ollama_standin.host))

    async def go():
        return await asyncio.gather(*(backend.embed([t]) for t in TEXTS))

    results = run(go())
    for text, response in zip(TEXTS, results, strict=True):
        np.testing.assert_allclose(response.vectors[0], small_model.encode([text])[0], atol=1e-5)


def test_helpers():
    assert base_url("127.0.0.1") == "http://127.0.0.1:11434"
    assert base_url("http://ollama:11434/") == "http://ollama:11434"
    assert base_url("0.0.0.0:8080") == "http://0.0.0.0:8080"
    assert model_matches("bge-m3:latest", "bge-m3") and model_matches("BGE-M3", "bge-m3:latest")
    assert not model_matches("bge-m3:567m", "bge-m3")
    assert offload_state(100, 100) == "gpu" and offload_state(100, 0) == "cpu"
    assert offload_state(100, 40) == "partial" and offload_state(None, 0) is None


@pytest.mark.parametrize("cls, per_call", [(OllamaEmbedBackend, 1), (OllamaLegacyBackend, len(TEXTS))])
def test_timed_region_holds_only_the_embed_requests(cls, per_call, ollama_standin):
    """embed() (what the bench times) sends the embed request(s) and nothing else: no /api/ps,
    /api/show or tokenize round trips inside the timer; prepare() sends nothing at all."""
    backend = cls(settings(ollama_standin.host))
    run(backend.load())
    before = len(ollama_standin.requests)
    run(backend.prepare(TEXTS, [10] * len(TEXTS)))
    assert len(ollama_standin.requests) == before
    run(backend.embed(TEXTS))
    assert ollama_standin.paths()[before:] == [backend.endpoint] * per_call
