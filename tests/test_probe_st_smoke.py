"""The sentence-transformers smoke check, for real on CPU with the shipped small model, plus
stand-in models for NaN, drift, a failing half dtype and the SDPA settings scope."""

from __future__ import annotations

import pytest
import torch

from probe.checks.st_smoke import (
    TEXTS,
    check_sentence_transformers,
    cosine_summary,
    load_model,
    model_facts,
)
from probe.registry import ProbeContext
from probe.result import Status


def ctx(model: str, device: str | None = None, shared: dict | None = None) -> ProbeContext:
    return ProbeContext(model=model, ollama_host="", ollama_model="", device=device, shared=shared or {})


class FakeModel:
    """Stands in for SentenceTransformer.encode; `transform` alters the fp32 reference embeddings."""

    max_seq_length = 128

    def __init__(self, base: torch.Tensor, transform=None, on_encode=None):
        self.base, self.transform, self.on_encode = base, transform, on_encode

    def get_embedding_dimension(self) -> int:
        return self.base.shape[1]

    def encode(self, texts, **kwargs):
        if self.on_encode:
            self.on_encode()
        assert len(texts) == len(TEXTS) and kwargs["convert_to_tensor"]
        return self.transform(self.base.clone()) if self.transform else self.base.clone()


BASE = torch.randn(len(TEXTS), 32, generator=torch.Generator().manual_seed(0))


def fake_loader(per_dtype: dict):
    def loader(model, device, dtype):
        made = per_dtype.get(dtype, FakeModel(BASE))
        if isinstance(made, Exception):
            raise made
        return made

    return loader


@pytest.mark.slow
def test_small_model_for_real_on_cpu(small_model_path):
    result = check_sentence_transformers(ctx(small_model_path))
    assert result.status is Status.PASS, result.reason
    assert result.reason.startswith("on CPU (target not probed)")
    f = result.figures
    assert f["embedding_dim"] == 384 and f["max_seq_length"] == 256
    assert f["attn_implementation"] == "sdpa"
    assert set(f["dtypes"]) == {"float32", "float16", "bfloat16"}
    assert all(d["finite"] and d["error"] is None for d in f["dtypes"].values())
    for dtype in ("float16", "bfloat16"):
        assert 0.99 <= f["half_vs_fp32_cosine"][dtype]["min"] <= f["half_vs_fp32_cosine"][dtype]["mean"] <= 1.0 + 1e-6
        assert len(f["half_vs_fp32_cosine_per_text"][dtype]) == len(TEXTS)
    assert f["load_s"] > 0 and f["target_probed"] is False


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_small_model_for_real_on_cuda(small_model_path):
    result = check_sentence_transformers(ctx(small_model_path, device="cuda"))
    assert result.status is Status.PASS, result.reason
    assert result.figures["target_probed"] is True
    assert all(d["finite"] for d in result.figures["dtypes"].values())


@pytest.mark.slow
def test_load_model_uses_the_requested_dtype(small_model_path):
    model = load_model(small_model_path, "cpu", "bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model_facts(model)["attn_implementation"] == "sdpa"


def test_model_not_found_offline_is_not_run_with_what_to_do():
    """Not downloaded is not the GPU's fault: "not run" (SKIP), never a FAIL that says incompatible."""
    result = check_sentence_transformers(ctx("probe-tests/not-a-cached-model", device="cuda"))
    assert result.status is Status.SKIP
    assert result.reason.startswith("not run: ")
    assert "could not be loaded" in result.reason
    assert "--model" in result.reason and "cache" in result.reason
    assert "\n" not in result.reason
    assert set(result.figures["dtypes"]) == {"float32"}  # half dtypes not tried after fp32 failed


def _nan(e):
    return e.fill_(float("nan"))


def test_nan_in_half_precision_alone_warns_and_gates_that_dtype(small_model):
    from bench.backends import PROBE_GATES
    from bench.measure.runner import gate_reason

    def loader(model, device, dtype):
        if dtype == "float16":
            return FakeModel(BASE, transform=_nan)
        return small_model

    result = check_sentence_transformers(ctx("small", device="cuda"), loader=loader)
    assert result.status is Status.WARN  # fp32 and bf16 are fine: not "incompatible"
    assert "NaN/inf in the float16" in result.reason and "skips float16" in result.reason
    assert result.figures["dtypes"]["float16"]["finite"] is False
    assert "float16" not in result.figures["half_vs_fp32_cosine"]
    checks = {"sentence_transformers": {"status": "warn", "reason": result.reason, "figures": result.figures}}
    assert "NaN/inf in the float16" in gate_reason(PROBE_GATES["native-fp16"], checks)
    assert gate_reason(PROBE_GATES["native-bf16"], checks) is None
    assert gate_reason(PROBE_GATES["native-fp32"], checks) is None


def test_nan_in_every_dtype_fails():
    nan = FakeModel(BASE, transform=_nan)
    result = check_sentence_transformers(ctx("fake", device="cuda"),
                                         loader=fake_loader({d: nan for d in ("float32", "float16", "bfloat16")}))
    assert result.status is Status.FAIL
    assert "no dtype gives finite vectors" in result.reason


def test_nan_in_fp32_only_warns_gates_fp32_and_says_half_is_unchecked():
    result = check_sentence_transformers(ctx("fake", device="cuda"),
                                         loader=fake_loader({"float32": FakeModel(BASE, transform=_nan)}))
    assert result.status is Status.WARN
    assert "NaN/inf in the float32" in result.reason and "could not be checked against fp32" in result.reason


@pytest.mark.parametrize("error, status", [
    (RuntimeError("CUDA error: no kernel image is available for execution on the device"), Status.FAIL),
    (RuntimeError("CUBLAS_STATUS_NOT_SUPPORTED when calling cublasGemmEx"), Status.FAIL),
    (RuntimeError("No available kernel. Aborting execution."), Status.FAIL),
    (RuntimeError("Triton compile failed\nptxas fatal   : Value 'sm_121a' is not defined for option 'gpu-name'"),
     Status.FAIL),  # the device word is on the second line
    (OSError("We couldn't connect to 'https://huggingface.co' to load the files"), Status.SKIP),
    (OSError("You are trying to access a gated repo. Make sure to have access (401)"), Status.SKIP),
    (ValueError("Unrecognized model in /models/x. Should have a `model_type` key"), Status.SKIP),
    # a Spark's unified memory held by another model, a busy device, no CUDA runtime: not the GPU's fault
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), Status.SKIP),
    (RuntimeError("CUDA error: CUDA-capable device(s) is/are busy or unavailable"), Status.SKIP),
    (ImportError("libcudart.so.13: cannot open shared object file: No such file or directory"), Status.SKIP),
    (AttributeError("module 'torch.cuda' has no attribute 'foo'"), Status.SKIP),
])
def test_fp32_load_failure_fails_only_for_device_errors(error, status):
    result = check_sentence_transformers(ctx("fake", device="cuda"), loader=fake_loader({"float32": error}))
    assert result.status is status, result.reason
    assert "\n" not in result.reason


def test_low_half_cosine_warns_naming_the_dtype():
    drift = FakeModel(BASE, transform=lambda e: e + 0.5 * torch.randn(e.shape, generator=torch.Generator().manual_seed(1)))
    result = check_sentence_transformers(ctx("fake"), loader=fake_loader({"bfloat16": drift}))
    assert result.status is Status.WARN
    assert "bfloat16" in result.reason and "float16 min" not in result.reason.replace("bfloat16", "")
    assert result.figures["half_vs_fp32_cosine"]["bfloat16"]["min"] < 0.99
    assert result.figures["half_vs_fp32_cosine"]["float16"]["min"] > 0.9999


def test_failing_half_dtype_warns_on_device_but_not_on_cpu():
    loader = fake_loader({"float16": RuntimeError('"addmm_impl_cpu_" not implemented for \'Half\'')})
    on_device = check_sentence_transformers(ctx("fake", device="cuda"), loader=loader)
    assert on_device.status is Status.WARN and "float16 failed" in on_device.reason
    on_cpu = check_sentence_transformers(ctx("fake"), loader=loader)
    assert on_cpu.status is Status.PASS and "float16 not usable on CPU" in on_cpu.reason
    assert on_cpu.figures["dtypes"]["float16"]["loaded"] is False


def test_sdpa_settings_from_the_attention_check_apply_while_encoding():
    seen = []
    model = FakeModel(BASE, on_encode=lambda: seen.append(torch.backends.cuda.flash_sdp_enabled()))
    before = torch.backends.cuda.flash_sdp_enabled()
    shared = {"sdpa_settings": {"enable_flash_sdp": False, "enable_math_sdp": True}}
    result = check_sentence_transformers(ctx("fake", shared=shared), loader=fake_loader({"float32": model}))
    assert seen == [False]
    assert torch.backends.cuda.flash_sdp_enabled() is before
    assert result.figures["sdpa_settings_applied"] == {"enable_flash_sdp": False, "enable_math_sdp": True}


def test_model_facts_tolerates_missing_attributes():
    assert model_facts(object()) == {"embedding_dim": None, "max_seq_length": None, "attn_implementation": None}


def test_cosine_summary():
    assert cosine_summary([1.0, 0.5]) == {"min": 0.5, "mean": 0.75}
