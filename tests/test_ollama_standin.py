"""The Ollama stand-in answers like Ollama's server (checked through the real ollama client)."""

from __future__ import annotations

import threading
import time

import numpy as np
import ollama
import pytest
from ollama_standin import parse_keep_alive
from standin_engines import INPUT_TOO_LONG

TEXTS = ["Die Embeddings laufen über Ollama.", "A second, slightly longer sentence to embed here."]


@pytest.fixture
def client(ollama_standin):
    return ollama.Client(host=ollama_standin.host, timeout=10)


def token_count(small_model, text: str) -> int:
    return len(small_model.tokenizer(text)["input_ids"])


def test_version_tags_show(client, ollama_standin):
    assert ollama.Client(host=ollama_standin.host).list().models[0].model == "bge-m3:latest"
    tag = client.list().models[0]
    assert tag.digest and tag.size > 0 and tag.details.family == "bert"
    show = client.show("bge-m3")
    assert show.capabilities == ["embedding"]
    assert show.modelinfo["bert.embedding_length"] == 384
    with pytest.raises(ollama.ResponseError) as err:
        client.show("nomic-embed-text")
    assert err.value.status_code == 404 and err.value.error == "model 'nomic-embed-text' not found"


def test_embed_normalised_and_equal_to_the_model(client, small_model):
    response = client.embed(model="bge-m3", input=TEXTS)
    vectors = np.asarray(response.embeddings)
    assert vectors.shape == (2, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(vectors, small_model.encode(TEXTS), atol=1e-5)
    assert response.prompt_eval_count == sum(token_count(small_model, t) for t in TEXTS)
    assert response.total_duration >= response.load_duration > 0
    single = client.embed(model="bge-m3", input=TEXTS[0])  # a plain string works too
    np.testing.assert_allclose(single.embeddings[0], vectors[0], atol=1e-6)


def test_legacy_embeddings_are_raw_not_normalised(client, small_model):
    raw = np.asarray(client.embeddings(model="bge-m3", prompt=TEXTS[0]).embedding)
    assert abs(np.linalg.norm(raw) - 1.0) > 0.1  # MiniLM's pooled vector is not unit length
    np.testing.assert_allclose(raw / np.linalg.norm(raw), small_model.encode([TEXTS[0]])[0], atol=1e-5)
    normalised = np.asarray(client.embed(model="bge-m3", input=TEXTS[0]).embeddings[0])
    np.testing.assert_allclose(raw / np.linalg.norm(raw), normalised, atol=1e-6)


def test_dimensions_cut_and_renormalise(client):
    vector = np.asarray(client.embed(model="bge-m3", input=TEXTS[0], dimensions=64).embeddings[0])
    assert vector.shape == (64,) and abs(np.linalg.norm(vector) - 1.0) < 1e-6


def test_truncation_caps_tokens_and_truncate_false_is_400(client, small_model):
    long_text = "word " * 300  # 302 tokens with [CLS]/[SEP]
    assert token_count(small_model, long_text) > 128
    response = client.embed(model="bge-m3", input=[long_text, TEXTS[0]])
    assert response.prompt_eval_count == 128 + token_count(small_model, TEXTS[0])
    response = client.embed(model="bge-m3", input=long_text, options={"num_ctx": 64})
    assert response.prompt_eval_count == 64
    with pytest.raises(ollama.ResponseError) as err:
        client.embed(model="bge-m3", input=long_text, truncate=False)
    assert err.value.status_code == 400 and err.value.error == INPUT_TOO_LONG
    with pytest.raises(ollama.ResponseError) as err:  # the legacy endpoint cannot truncate
        client.embeddings(model="bge-m3", prompt=long_text)
    assert err.value.status_code == 500 and err.value.error == INPUT_TOO_LONG


def test_concurrent_requests_truncate_every_long_input(client, small_model):
    """Handler threads share one tokenizer; truncation must hold under concurrency too."""
    long_text = "Wort " * 600
    errors, counts = [], []

    def call(text: str) -> None:
        try:
            counts.append(client.embed(model="bge-m3", input=text).prompt_eval_count)
        except Exception as err:  # noqa: BLE001 - collected and asserted below
            errors.append(err)

    threads = [threading.Thread(target=call, args=(long_text if i % 2 else TEXTS[0],)) for i in range(64)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(set(counts)) == [token_count(small_model, TEXTS[0]), 128]


def test_empty_input_loads_without_durations_and_load_duration_marks_loads(client, ollama_standin):
    assert client.ps().models == []
    response = client.embed(model="bge-m3", input="")
    assert response.embeddings == [] and response.load_duration is None
    assert [m.model for m in client.ps().models] == ["bge-m3:latest"]
    assert ollama_standin.load_count == 1
    delay_ns = ollama_standin.config.load_delay_s * 1e9
    warm = client.embed(model="bge-m3", input=TEXTS[0])
    assert 0 < warm.load_duration < delay_ns and ollama_standin.load_count == 1
    reload = client.embed(model="bge-m3", input=TEXTS[0], options={"num_ctx": 64})
    assert reload.load_duration >= delay_ns and ollama_standin.load_count == 2
    assert client.ps().models[0].context_length == 64
    # no options means the defaults again: a reload, as in Ollama
    assert client.embed(model="bge-m3", input=TEXTS[0]).load_duration >= delay_ns


def test_keep_alive_zero_unloads_and_ps_fields(client):
    client.embed(model="bge-m3", input=TEXTS[0], keep_alive="10m")
    (entry,) = client.ps().models
    assert entry.size == entry.size_vram > 0 and entry.digest and entry.expires_at is not None
    assert entry.details.family == "bert" and entry.context_length == 128
    client.embed(model="bge-m3", input=TEXTS[0], keep_alive=0)
    assert client.ps().models == []
    client.embed(model="bge-m3", input="")
    assert client.generate(model="bge-m3", prompt="", keep_alive=0).done_reason == "unload"
    assert client.ps().models == []


def test_keep_alive_parsing():
    assert parse_keep_alive(None) == 300 and parse_keep_alive(0) == 0 and parse_keep_alive("-1") == -1
    assert parse_keep_alive("1h30m") == 5400 and parse_keep_alive("250ms") == 0.25
    with pytest.raises(ValueError):
        parse_keep_alive("soon")


def test_model_not_pulled_is_404_with_ollama_wording(client, ollama_standin):
    ollama_standin.remove_model()
    assert client.list().models == []
    for call in (lambda: client.embed(model="bge-m3", input="x"),
                 lambda: client.embeddings(model="bge-m3", prompt="x")):
        with pytest.raises(ollama.ResponseError) as err:
            call()
        assert err.value.status_code == 404
        assert err.value.error == 'model "bge-m3" not found, try pulling it first'


def test_items_are_processed_one_after_another(client, ollama_standin):
    client.embed(model="bge-m3", input="")  # load first
    ollama_standin.faults.item_delay_s = 0.05
    started = time.perf_counter()
    client.embed(model="bge-m3", input=[f"text {i}" for i in range(6)])
    assert time.perf_counter() - started >= 6 * 0.05
    # concurrent requests share the one runner slot as well
    threads = [threading.Thread(target=client.embed, kwargs={"model": "bge-m3", "input": ["a", "b"]})
               for _ in range(3)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - started >= 6 * 0.05


def test_faults_500_hang_die(client, ollama_standin):
    ollama_standin.fail_with(500, "llama runner process has terminated: exit status 2")
    with pytest.raises(ollama.ResponseError) as err:
        client.embed(model="bge-m3", input="x")
    assert err.value.status_code == 500 and "runner process has terminated" in err.value.error
    ollama_standin.reset_faults()

    import httpx

    ollama_standin.hang(5)
    with pytest.raises(httpx.TimeoutException):
        ollama.Client(host=ollama_standin.host, timeout=0.3).embed(model="bge-m3", input="x")
    ollama_standin.reset_faults()

    ollama_standin.die_after(1)
    with pytest.raises(httpx.RemoteProtocolError):
        client.embed(model="bge-m3", input=["a", "b", "c"])
    with pytest.raises(ConnectionError):
        client.list()


def test_a_nan_text_fails_the_whole_embed_list_and_the_legacy_call(client, ollama_standin):
    """As Ollama with bge-m3 (ollama/ollama#13572): one NaN item fails /api/embed's whole list (400:
    normalize's error is no api.StatusError, routes.go); /api/embeddings cannot encode the NaN and
    answers 500; the other texts still work."""
    from ollama_standin import NAN_EMBED_ERROR, NAN_ENCODE_ERROR

    ollama_standin.nan_for([TEXTS[1]])
    with pytest.raises(ollama.ResponseError) as err:
        client.embed(model="bge-m3", input=TEXTS)
    assert err.value.status_code == 400 and err.value.error == NAN_EMBED_ERROR
    assert len(client.embed(model="bge-m3", input=[TEXTS[0]]).embeddings) == 1
    with pytest.raises(ollama.ResponseError) as err:
        client.embeddings(model="bge-m3", prompt=TEXTS[1])
    assert err.value.status_code == 500 and err.value.error == NAN_ENCODE_ERROR
    assert client.embeddings(model="bge-m3", prompt=TEXTS[0]).embedding
