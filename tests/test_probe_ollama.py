"""The probe's Ollama check against the stand-in: pass, and WARN (never FAIL, never raise)."""

from __future__ import annotations

import socket

import pytest

from probe.checks.ollama_server import check_ollama
from probe.registry import ProbeContext
from probe.result import Status


def ctx(host: str, model: str = "bge-m3") -> ProbeContext:
    return ProbeContext(model="unused", ollama_host=host, ollama_model=model, device=None)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_pass_with_the_standin(ollama_standin):
    result = check_ollama(ctx(ollama_standin.host))
    assert result.status is Status.PASS, result.reason
    assert "fully on GPU" in result.reason and "384 dims" in result.reason
    f = result.figures
    assert f["version"] == ollama_standin.config.version and f["offload"] == "gpu"
    assert f["dims"] == 384 and f["finite"] and abs(f["norm"] - 1) < 1e-5
    assert f["size"] == f["size_vram"] == ollama_standin.size_bytes
    assert f["digest"] == ollama_standin.digest and f["models"] == ["bge-m3:latest"]


def test_latest_tag_matches(ollama_standin):
    assert check_ollama(ctx(ollama_standin.host, "bge-m3:latest")).status is Status.PASS


def test_unreachable_is_warn():
    host = f"127.0.0.1:{free_port()}"
    result = check_ollama(ctx(host))
    assert result.status is Status.WARN
    assert result.reason == (f"Ollama not reachable at http://{host}: the Ollama side cannot be benchmarked; "
                             "start it (docker compose up -d ollama) or set OLLAMA_HOST")


def test_model_missing_is_warn_with_pull_command(ollama_standin):
    ollama_standin.remove_model()
    result = check_ollama(ctx(ollama_standin.host))
    assert result.status is Status.WARN
    assert "model 'bge-m3' is not pulled" in result.reason
    assert "docker compose exec ollama ollama pull bge-m3" in result.reason


@pytest.mark.parametrize(("offload", "words"), [("partial", "partly offloaded"), ("cpu", "CPU only")])
def test_not_fully_on_gpu_is_warn(ollama_standin, offload, words):
    ollama_standin.config.offload = offload
    result = check_ollama(ctx(ollama_standin.host))
    assert result.status is Status.WARN and words in result.reason
    assert result.figures["offload"] == offload


def test_server_error_is_warn_not_raise(ollama_standin):
    ollama_standin.fail_with(500, "llama runner process has terminated: exit status 2")
    result = check_ollama(ctx(ollama_standin.host))
    assert result.status is Status.WARN and "HTTP 500: llama runner process has terminated" in result.reason
