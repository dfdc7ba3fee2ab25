"""The OpenAI-compatible backend's own logic, against answers shaped like llama-server's and
TEI's (httpx.MockTransport): error mapping, ordering, token counts, normalisation facts,
the API key. The same backend against the real llama-server is in test_llama_server.py."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest

from bench.backends.base import (
    BackendError,
    BackendOutOfMemory,
    BackendSettings,
    BackendUnavailable,
)
from bench.backends.openai import (
    API_KEY_ENV,
    OpenAIEmbeddingsBackend,
    base_url,
    norm_facts,
)

URL = "http://127.0.0.1:8080"
TOO_LARGE = ("input (616 tokens) is too large to process. increase the physical batch size "
             "(current batch size: 512)")
OVER_CONTEXT = "input (257 tokens) is larger than the max context size (256 tokens). skipping"


def backend_with(handler, **settings) -> tuple[OpenAIEmbeddingsBackend, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    backend = OpenAIEmbeddingsBackend(BackendSettings(model="unused", openai_url=URL, **settings),
                                      transport=httpx.MockTransport(record))
    return backend, seen


def llama_error(status: int, message: str, kind: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": status, "message": message, "type": kind}})


def embeddings_answer(vectors, tokens=7, order=None) -> httpx.Response:
    order = order or list(range(len(vectors)))
    data = [{"object": "embedding", "index": i, "embedding": list(map(float, vectors[i]))} for i in order]
    return httpx.Response(200, json={"object": "list", "data": data,
                                     "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def embed(backend, texts):
    return asyncio.run(backend.embed(texts))


@pytest.mark.parametrize("status, body, expected, words", [
    (500, llama_error(500, TOO_LARGE, "server_error"), BackendError, "too large to process"),
    (400, llama_error(400, OVER_CONTEXT, "exceed_context_size_error"), BackendError, "max context size"),
    # TEI's /v1/embeddings error shape (OpenAICompatErrorResponse in its openapi.json)
    (413, httpx.Response(413, json={"message": "Input validation error: `inputs` must have less than 512 tokens. "
                                               "Given: 600", "code": 413, "error_type": "Validation"}),
     BackendError, "less than 512 tokens"),
    # vLLM's shape: message at the top level of an "error" object
    (400, httpx.Response(400, json={"object": "error", "message": "This model's maximum context length is 8192 "
                                    "tokens. However, you requested 9000 tokens", "type": "BadRequestError",
                                    "code": 400}), BackendError, "maximum context length"),
    (401, llama_error(401, "Invalid API Key", "authentication_error"), BackendUnavailable, API_KEY_ENV),
    (501, llama_error(501, "This server does not support embeddings. Start it with `--embeddings`",
                      "not_supported_error"), BackendUnavailable, "--embedding"),
    (503, llama_error(503, "Loading model", "unavailable_error"), BackendUnavailable, "not ready"),
    (502, httpx.Response(502, text="<html><body>Bad Gateway</body></html>"), BackendUnavailable, "HTML page"),
    (500, llama_error(500, "CUDA error: out of memory", "server_error"), BackendOutOfMemory, "out of memory"),
])
def test_error_answers_become_one_typed_line(status, body, expected, words):
    backend, _ = backend_with(lambda request: body)
    with pytest.raises(BackendError) as caught:
        embed(backend, ["a text"])
    err = caught.value
    assert type(err) is expected
    assert err.http_status == status
    assert words in str(err) and "\n" not in str(err)
    assert str(err).startswith(URL)


def test_per_text_errors_are_not_infrastructure():
    """The runner retries item by item only for a plain BackendError: the texts' fault."""
    backend, _ = backend_with(lambda request: llama_error(500, TOO_LARGE, "server_error"))
    with pytest.raises(BackendError) as caught:
        embed(backend, ["short", "x " * 700])
    assert not isinstance(caught.value, BackendUnavailable)


@pytest.mark.parametrize("raised, words", [
    (httpx.ConnectError("refused"), "no embeddings server reachable"),
    (httpx.ReadTimeout("slow"), "did not answer within"),
    (httpx.RemoteProtocolError("Server disconnected without sending a response."), "dropped the connection"),
])
def test_transport_failures_are_unavailable(raised, words):
    def fail(request):
        raise raised

    backend, _ = backend_with(fail)
    with pytest.raises(BackendUnavailable, match=words) as caught:
        embed(backend, ["a text"])
    assert caught.value.http_status is None and "\n" not in str(caught.value)


def test_refused_connection_on_a_real_closed_port():
    from llama_server import free_port

    backend = OpenAIEmbeddingsBackend(BackendSettings(model="unused", openai_url=f"127.0.0.1:{free_port()}",
                                                      timeout_s=2.0))
    with pytest.raises(BackendUnavailable, match="no embeddings server reachable"):
        asyncio.run(backend.load())


def test_a_200_that_is_not_json_is_not_a_server_we_know():
    backend, _ = backend_with(lambda request: httpx.Response(200, text="It works!"))
    with pytest.raises(BackendUnavailable, match="without JSON"):
        embed(backend, ["a text"])


def test_wrong_number_of_vectors_is_an_error():
    backend, _ = backend_with(lambda request: embeddings_answer(np.eye(3)[:1]))
    with pytest.raises(BackendError, match="returned 1 embeddings for 2 texts"):
        embed(backend, ["a", "b"])


def test_rows_come_back_in_index_order_with_the_token_count():
    vectors = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 4.0]])
    backend, seen = backend_with(lambda request: embeddings_answer(vectors, tokens=11, order=[2, 0, 1]),
                                 openai_model="bge-m3")
    response = embed(backend, ["a", "b", "c"])
    np.testing.assert_array_equal(response.vectors, vectors.astype(np.float32))
    assert response.prompt_tokens == 11 and response.backend_time_s is None
    sent = json.loads(seen[0].content)
    assert seen[0].url.path == "/v1/embeddings"
    assert sent == {"input": ["a", "b", "c"], "model": "bge-m3", "encoding_format": "float"}
    # The norms are recorded as measured: 1, 2 and 5 are not normalised.
    facts = backend.describe()
    assert facts["normalised_by_server"] is False
    assert facts["vector_norms"]["count"] == 3 and facts["vector_norms"]["max"] == pytest.approx(5.0)


def test_load_picks_the_first_listed_model_and_records_identity():
    def answer(request):
        if request.url.path == "/health":
            return httpx.Response(200, json={"status": "ok"})
        if request.url.path == "/v1/models":
            return httpx.Response(200, headers={"server": "llama.cpp"}, json={"data": [
                {"id": "minilm.gguf", "owned_by": "llamacpp", "meta": {"n_embd": 2}}, {"id": "other"}]})
        if request.url.path == "/props":
            return httpx.Response(200, json={"build_info": "b0-unknown", "total_slots": 4, "model_ftype": "all F32",
                                             "default_generation_settings": {"n_ctx": 512}})
        if request.url.path == "/info":
            return httpx.Response(404, text="File Not Found")
        return embeddings_answer(np.array([[0.6, 0.8]]), tokens=3)

    backend, seen = backend_with(answer)
    load = asyncio.run(backend.load())
    assert "not a cold load" in load.reported_source and load.reported_load_s is None and load.cold is False
    facts = backend.describe()
    assert facts["kind"] == "openai" and facts["model"] == "minilm.gguf"
    assert facts["server_version"] == "llama.cpp b0-unknown" and facts["server"] == "llama.cpp"
    assert facts["max_tokens"] == 512 and "n_ctx" in facts["max_tokens_source"]
    assert facts["slots"] == 4 and facts["dimension"] == 2 and facts["model_precision"] == "all F32"
    assert facts["normalised_by_server"] is True
    assert json.loads(next(r for r in seen if r.url.path == "/v1/embeddings").content)["model"] == "minilm.gguf"


def test_tei_identity_and_limit():
    def answer(request):
        if request.url.path == "/info":
            return httpx.Response(200, json={"model_id": "BAAI/bge-m3", "version": "1.8.0", "max_input_length": 8192})
        if request.url.path in ("/props",):
            return httpx.Response(404, text="")
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"data": [{"id": "BAAI/bge-m3"}]})
        if request.url.path == "/health":
            return httpx.Response(200, text="")
        return embeddings_answer(np.array([[1.0, 0.0]]))

    backend, _ = backend_with(answer)
    asyncio.run(backend.load())
    facts = backend.describe()
    assert facts["server_version"] == "BAAI/bge-m3 TEI 1.8.0" and facts["max_tokens"] == 8192


def test_api_key_is_sent_and_never_described(monkeypatch):
    monkeypatch.setenv(API_KEY_ENV, "sk-test-not-a-real-key")
    backend, seen = backend_with(lambda request: embeddings_answer(np.array([[1.0, 0.0]])))
    embed(backend, ["a"])
    assert seen[0].headers["authorization"] == "Bearer sk-test-not-a-real-key"
    assert "sk-test" not in json.dumps(backend.describe())


def test_credentials_in_the_url_stay_out_of_messages_and_results(tmp_path):
    from bench.config import PROFILES, BenchConfig
    from bench.measure.runner import config_payload

    backend, _ = backend_with(lambda request: llama_error(500, TOO_LARGE, "server_error"))
    backend = OpenAIEmbeddingsBackend(BackendSettings(model="unused", openai_url="http://user:secret@127.0.0.1:8080"),
                                      transport=backend.transport)
    with pytest.raises(BackendError) as caught:
        embed(backend, ["a"])
    assert "secret" not in str(caught.value) and "secret" not in json.dumps(backend.describe())
    config = BenchConfig(profile=PROFILES["smoke"], backends=("openai",), results_dir=tmp_path,
                         ollama_host="http://127.0.0.1:11434", timeout_s=5.0,
                         openai_url="http://user:secret@127.0.0.1:8080")
    assert "secret" not in json.dumps(config_payload(config, "m"))


@pytest.mark.parametrize("given, expected", [
    ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
    ("http://127.0.0.1:8080/v1", "http://127.0.0.1:8080"),  # the OpenAI SDK's OPENAI_BASE_URL style
    ("http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080"),
    ("localhost:8081", "http://localhost:8081"),
    ("https://gpu-box/embed/v1", "https://gpu-box/embed"),
    ("", "http://127.0.0.1:8080"),
])
def test_base_url(given, expected):
    assert base_url(given) == expected


def test_norm_facts():
    assert norm_facts(0, np.inf, -np.inf) == {"normalised_by_server": None, "vector_norms": None}
    assert norm_facts(5, 0.9999, 1.0002)["normalised_by_server"] is True
    assert norm_facts(5, 0.98, 1.0)["normalised_by_server"] is False
