"""NativeBackend on CPU with the small real model (all-MiniLM-L6-v2, max_seq_length 256)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from bench.backends.base import BackendError, BackendOutOfMemory, BackendSettings
from bench.backends.native import NativeBackend
from bench.backends.native_cold_load import NO_REPORTED_LOAD

pytestmark = pytest.mark.slow  # loads a real (small) model

TEXTS = [
    "Der Import-Job für die Kundendaten bricht mit einem Timeout ab.",
    "The embedding service returns 1024-dimensional vectors.",
    "Réunion d'équipe : la migration est prévue pour jeudi.",
    "検索結果の品質を評価します。",
]


def _run(coro):
    return asyncio.run(coro)


@pytest.fixture(scope="module")
def fp32_backend(small_model_path):
    backend = NativeBackend(BackendSettings(model=small_model_path, device="cpu"), "float32")
    report = _run(backend.load())
    yield backend, report
    _run(backend.unload())


def test_cold_load_is_timed_in_a_fresh_process(fp32_backend):
    backend, report = fp32_backend
    assert backend.name == "native-fp32"
    assert report.cold is True and report.note is None
    assert report.includes.startswith("fresh Python process on cpu: no CUDA context (CPU)")
    parts = report.parts_s
    # The child's figure sits inside the child's life, beside its imports; the in-process reload is separate.
    assert 0 < report.wall_s and 0 < parts["child_imports_s"]
    assert report.wall_s + parts["child_imports_s"] < parts["child_process_s"]
    assert parts["in_process_load_s"] > 0 and "child_cuda_context_s" not in parts
    assert report.reported_load_s is None
    assert report.reported_source == NO_REPORTED_LOAD
    facts = backend.describe()
    assert facts["device"] == "cpu"
    assert facts["dimension"] == 384
    assert facts["max_seq_length"] == 256
    assert facts["loaded_dtype"] == "float32"
    assert facts["attn_implementation"] == "sdpa"
    assert facts["versions"]["torch"] and facts["versions"]["sentence_transformers"]


def test_vectors_equal_model_encode(fp32_backend, small_model):
    backend, _ = fp32_backend
    response = _run(backend.embed(TEXTS))
    expected = small_model.encode(TEXTS, convert_to_numpy=True)
    assert response.vectors.dtype == np.float32
    assert response.vectors.shape == (len(TEXTS), 384)
    np.testing.assert_allclose(response.vectors, expected, atol=1e-5)


def test_prompt_tokens_come_from_prepare_and_unprepared_texts_are_not_counted(fp32_backend):
    backend, _ = fp32_backend
    fresh = ["Ein Text, den prepare() nie gesehen hat.", "never prepared"]
    assert _run(backend.embed(fresh)).prompt_tokens is None  # never tokenised inside embed()
    _run(backend.prepare(fresh, [101, 7]))  # the workload's counts are taken as given
    assert _run(backend.embed(fresh)).prompt_tokens == 101 + 7
    with pytest.raises(BackendError, match="2 texts but 1 token counts"):
        _run(backend.prepare(fresh, [3]))


def test_timed_region_holds_only_the_encode_call(fp32_backend, monkeypatch):
    """Inside embed() (what the bench times) the tokenizer runs only as part of model.encode."""
    backend, _ = fp32_backend
    model = backend.model
    texts = [f"Frischer Text Nummer {i} für die Messung, noch nie gesehen." for i in range(5)]
    _run(backend.prepare(texts, backend.count_tokens(texts)))
    inside_encode = []
    calls_outside_encode = []
    tokenizer_class, real_encode = type(model.tokenizer), model.encode
    real_call = tokenizer_class.__call__

    def spy_call(self, *args, **kwargs):
        if not inside_encode:
            calls_outside_encode.append(args)
        return real_call(self, *args, **kwargs)

    def encode(*args, **kwargs):
        inside_encode.append(True)
        try:
            return real_encode(*args, **kwargs)
        finally:
            inside_encode.pop()

    monkeypatch.setattr(tokenizer_class, "__call__", spy_call)
    monkeypatch.setattr(model, "encode", encode)
    expected = backend.count_tokens(texts)
    calls_outside_encode.clear()
    for text, count in zip(texts, expected):  # single-text calls: each one a first sight for a per-call cache
        assert _run(backend.embed([text])).prompt_tokens == count
    assert calls_outside_encode == []
    backend.count_tokens(texts[:1])  # the spy sees a tokenizer call made outside encode
    assert len(calls_outside_encode) == 1


def test_backend_time_within_wall(fp32_backend):
    backend, _ = fp32_backend
    started = time.perf_counter()
    response = _run(backend.embed(TEXTS * 4))
    wall = time.perf_counter() - started
    assert response.backend_time_s is not None
    assert 0 < response.backend_time_s <= wall


def test_prompt_tokens_capped_at_max_seq_length(fp32_backend):
    backend, _ = fp32_backend
    long_text = "Die Dokumentation beschreibt jeden Schritt der Installation. " * 80
    short = "kurz"
    uncapped = backend.count_tokens([long_text, short])
    assert uncapped[0] > 256
    _run(backend.prepare([long_text, short], uncapped))
    response = _run(backend.embed([long_text, short]))
    assert response.prompt_tokens == 256 + uncapped[1]


def test_empty_batch(fp32_backend):
    backend, _ = fp32_backend
    response = _run(backend.embed([]))
    assert response.vectors.shape == (0, 384)
    assert response.prompt_tokens == 0


def test_memory_on_cpu_is_labelled(fp32_backend):
    backend, _ = fp32_backend
    figures = {f.label: f for f in _run(backend.memory())}
    assert figures["process peak RSS (CPU run)"].bytes > 50 * 2**20
    assert figures["torch peak allocated"].bytes is None
    assert figures["torch peak allocated"].source == "no CUDA device"


def test_oom_becomes_backend_out_of_memory(fp32_backend, monkeypatch):
    import torch

    backend, _ = fp32_backend

    def raise_oom(*args, **kwargs):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(backend._model, "encode", raise_oom)
    with pytest.raises(BackendOutOfMemory):
        _run(backend.embed(TEXTS))

    def raise_runtime_oom(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0)")

    monkeypatch.setattr(backend._model, "encode", raise_runtime_oom)
    with pytest.raises(BackendOutOfMemory):
        _run(backend.embed(TEXTS))

    def raise_other(*args, **kwargs):
        raise ValueError("something else")

    monkeypatch.setattr(backend._model, "encode", raise_other)
    with pytest.raises(BackendError) as info:
        _run(backend.embed(TEXTS))
    assert not isinstance(info.value, BackendOutOfMemory)
    assert "something else" in str(info.value)


def test_a_failed_fresh_process_load_is_reported_warm_with_why(small_model_path, monkeypatch):
    import bench.backends.native_cold_load as cold

    monkeypatch.setattr(cold, "COLD_LOAD_MODULE", "bench.backends.no_such_module")
    backend = NativeBackend(BackendSettings(model=small_model_path, device="cpu"), "float32")
    report = _run(backend.load())
    try:
        assert report.cold is False
        assert report.note.startswith("no fresh-process cold load: the child process failed: ")
        assert "no_such_module" in report.note
        assert report.wall_s == report.parts_s["in_process_load_s"]
        assert report.includes.startswith("in the bench process on cpu")
    finally:
        _run(backend.unload())


def test_a_reload_of_the_same_backend_is_warm_and_starts_no_child(small_model_path, monkeypatch):
    import bench.backends.native as native

    children = []

    def child(*args):
        children.append(args)
        return {"load_s": 0.5, "imports_s": 1.0, "cuda_context_s": None, "process_s": 2.0}

    monkeypatch.setattr(native, "fresh_process_load", child)
    backend = NativeBackend(BackendSettings(model=small_model_path, device="cpu"), "float32")
    first = _run(backend.load())
    _run(backend.unload())
    second = _run(backend.load())
    _run(backend.unload())
    assert (first.cold, first.wall_s, len(children)) == (True, 0.5, 1)
    assert second.cold is False and len(children) == 1
    assert second.note == ("no fresh-process cold load: a reload; the cold figure is this backend's first load; "
                           "the in-process figure is a warm load")


def test_bf16_dtype_honoured(small_model_path, fp32_backend):
    reference, _ = fp32_backend
    backend = NativeBackend(BackendSettings(model=small_model_path, device="cpu", fresh_process_cold_load=False),
                            "bfloat16")
    assert backend.name == "native-bf16"
    _run(backend.load())
    try:
        assert backend.describe()["loaded_dtype"] == "bfloat16"
        response = _run(backend.embed(TEXTS))
        assert response.vectors.dtype == np.float32
        expected = _run(reference.embed(TEXTS)).vectors
        cosines = np.sum(response.vectors * expected, axis=1) / (
            np.linalg.norm(response.vectors, axis=1) * np.linalg.norm(expected, axis=1)
        )
        assert np.all(cosines > 0.98), cosines
    finally:
        _run(backend.unload())


def test_attention_settings_applied_and_restored(small_model_path, monkeypatch):
    import torch

    calls: list[tuple[str, bool]] = []
    monkeypatch.setattr(torch.backends.cuda, "enable_flash_sdp", lambda v: calls.append(("flash", v)))
    monkeypatch.setattr(torch.backends.cuda, "enable_mem_efficient_sdp", lambda v: calls.append(("mem", v)))
    monkeypatch.setattr(torch.backends.cuda, "flash_sdp_enabled", lambda: True)
    monkeypatch.setattr(torch.backends.cuda, "mem_efficient_sdp_enabled", lambda: False)
    settings = BackendSettings(
        model=small_model_path,
        device="cpu",
        fresh_process_cold_load=False,
        attention_settings={"enable_flash_sdp": False, "enable_mem_efficient_sdp": True, "bogus": 1,
                            "TRITON_PTXAS_PATH": "/usr/local/cuda-13.0/bin/ptxas"},
    )
    monkeypatch.delenv("TRITON_PTXAS_PATH", raising=False)  # restored (removed) after the test
    backend = NativeBackend(settings, "fp32")
    _run(backend.load())
    assert calls == [("flash", False), ("mem", True)]
    facts = backend.describe()
    assert facts["sdp_settings_applied"] == {"enable_flash_sdp": False, "enable_mem_efficient_sdp": True}
    assert facts["attention_settings_ignored"] == {"bogus": 1}
    assert facts["triton_ptxas_path"] == "/usr/local/cuda-13.0/bin/ptxas"
    _run(backend.unload())
    assert calls[2:] == [("flash", True), ("mem", False)]


def test_native_fp32_pins_ieee_fp32_where_tf32_is_the_default_and_restores_it(small_model_path):
    """NGC's TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1 makes TF32 the default ("high"): native-fp32 means fp32."""
    import torch

    before = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        backend = NativeBackend(BackendSettings(model=small_model_path, device="cpu"), "float32")
        _run(backend.load())
        during = torch.get_float32_matmul_precision()
        facts = backend.describe()["float32_matmul"]
        _run(backend.unload())
        after = torch.get_float32_matmul_precision()
        half = NativeBackend(BackendSettings(model=small_model_path, device="cpu"), "bfloat16")
        _run(half.load())
        during_half = torch.get_float32_matmul_precision()
        _run(half.unload())
    finally:
        torch.set_float32_matmul_precision(before)
    assert (during, after, during_half) == ("highest", "high", "high")
    assert facts["default_precision"] == "high" and facts["tf32_by_default"] is True
    assert facts["pinned"] == "highest" and facts["forced_tf32"] is False


def test_ptxas_setting_from_the_probe_never_overrides_the_users(monkeypatch):
    from bench.backends.native import apply_ptxas_setting

    monkeypatch.delenv("TRITON_PTXAS_PATH", raising=False)
    assert apply_ptxas_setting({}) is None
    assert apply_ptxas_setting({"TRITON_PTXAS_PATH": "/cuda/bin/ptxas"}) == "/cuda/bin/ptxas"
    monkeypatch.setenv("TRITON_PTXAS_PATH", "/mine/ptxas")
    assert apply_ptxas_setting({"TRITON_PTXAS_PATH": "/cuda/bin/ptxas"}) == "/mine/ptxas"


def test_errors_are_backend_errors(small_model_path, tmp_path):
    with pytest.raises(BackendError, match="unknown dtype"):
        NativeBackend(BackendSettings(model=small_model_path), "int8")
    backend = NativeBackend(BackendSettings(model=small_model_path, device="cpu"), "float32")
    with pytest.raises(BackendError, match="not loaded"):
        _run(backend.embed(["x"]))
    missing = NativeBackend(BackendSettings(model=str(tmp_path / "no-such-model"), device="cpu",
                                            fresh_process_cold_load=False), "float32")
    with pytest.raises(BackendError, match="could not load"):
        _run(missing.load())
    _run(missing.unload())


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.mark.gpu
def test_cuda_load_embed_and_memory(small_model_path, small_model):
    if not _cuda_available():
        pytest.skip("no CUDA device")
    backend = NativeBackend(BackendSettings(model=small_model_path, device="cuda"), "float16")
    report = _run(backend.load())
    try:
        assert report.cold and "CUDA context creation" in report.includes
        assert 0 < report.parts_s["child_cuda_context_s"] < report.wall_s
        response = _run(backend.embed(TEXTS))
        expected = small_model.encode(TEXTS, convert_to_numpy=True)
        cosines = np.sum(response.vectors * expected, axis=1) / (
            np.linalg.norm(response.vectors, axis=1) * np.linalg.norm(expected, axis=1)
        )
        assert np.all(cosines > 0.99), cosines
        assert response.backend_time_s is not None and response.backend_time_s > 0
        figures = {f.label: f for f in _run(backend.memory())}
        assert figures["torch peak allocated"].bytes > 0
        assert figures["torch peak reserved"].bytes >= figures["torch peak allocated"].bytes
        assert backend.describe()["device_name"]
    finally:
        _run(backend.unload())


def test_concurrent_embeds_are_serialised_on_one_worker(fp32_backend, small_model):
    backend, _ = fp32_backend

    async def both():
        return await asyncio.gather(backend.embed(TEXTS[:2]), backend.embed(TEXTS[2:]))

    first, second = _run(both())
    expected = small_model.encode(TEXTS, convert_to_numpy=True)
    np.testing.assert_allclose(np.vstack([first.vectors, second.vectors]), expected, atol=1e-5)


@pytest.fixture
def fake_cuda_device(monkeypatch, small_model_path):
    """A not-loaded backend pointed at a fake CUDA device: allocator peaks, mem_get_info and the
    device properties come from here; NVML answers what `nvml` holds (and records its calls)."""
    import types

    import torch

    import bench.backends.native as native

    state = {"integrated": 1, "nvml": (None, "NVMLError_NotSupported: Not Supported"), "nvml_calls": 0}

    def nvml(index, pci=None):
        state["nvml_calls"] += 1
        return state["nvml"]

    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 700 * 2**20)
    monkeypatch.setattr(torch.cuda, "max_memory_reserved", lambda device=None: 900 * 2**20)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (60 * 2**30, 128 * 2**30))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: types.SimpleNamespace(
        is_integrated=state["integrated"], pci_domain_id=0, pci_bus_id=0xF, pci_device_id=1))
    monkeypatch.setattr(native, "nvml_process_used_bytes", nvml)
    backend = NativeBackend(BackendSettings(model=small_model_path, device="cuda:0"), "float16")
    backend._device = "cuda:0"
    backend._free_before_load = 64 * 2**30  # page cache and other processes moved it by 4 GiB since
    return backend, state


def test_unified_memory_figures_come_from_the_allocator(fake_cuda_device):
    backend, state = fake_cuda_device
    figures = backend._memory_sync()
    own = [f for f in figures if f.attributable]
    assert [(f.label, f.bytes) for f in own] == [("torch peak allocated", 700 * 2**20),
                                                 ("torch peak reserved", 900 * 2**20)]
    assert own[0].source.startswith("torch.cuda.max_memory_allocated")
    delta = next(f for f in figures if "delta" in f.label)
    assert delta.attributable is False and delta.bytes == 4 * 2**30
    assert delta.label.startswith("system memory used delta since before load (unified memory")
    assert "secondary" in delta.source and "/api/ps" in delta.source
    assert state["nvml_calls"] == 0  # GB10's NVML has no memory figures to ask for


def test_discrete_gpu_uses_nvml_per_process_and_labels_a_fallback_delta(fake_cuda_device):
    backend, state = fake_cuda_device
    state["integrated"] = 0
    state["nvml"] = (1200 * 2**20, "")
    nvml_figure = next(f for f in backend._memory_sync() if "NVML" in f.label)
    assert nvml_figure.bytes == 1200 * 2**20 and nvml_figure.attributable is True
    state["nvml"] = (None, "PID 7 not in NVML's process list (PID namespace?)")
    delta = next(f for f in backend._memory_sync() if "delta" in f.label)
    assert delta.label.startswith("device used delta") and delta.attributable is False
    assert "PID namespace" in delta.source
