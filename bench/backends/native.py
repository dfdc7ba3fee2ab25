"""Native backend: sentence-transformers in this process (the TD-073 "Proposed Alternative").

torch and sentence_transformers are imported inside the methods, never at module import:
configs stay light and the probe can still report when torch itself is broken.

`model.encode` is synchronous, so every call that touches the model runs on one dedicated
worker thread. The GPU is one resource; a single worker mirrors a service that serialises
requests, and it keeps CUDA state (current device, streams) on one thread.
`backend_time_s` is the time of `model.encode` measured on that thread (bracketed by
`torch.cuda.synchronize` on CUDA), so the caller's wall time minus it is the wrapper overhead
(the thread hand-off). Token counts are not made inside embed(): `prepare` takes them before
timing starts, and embed() only looks them up.
"""

from __future__ import annotations

import asyncio
import gc
import os
import resource
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from bench.backends.base import (
    BackendError,
    BackendOutOfMemory,
    BackendSettings,
    EmbedResponse,
    LoadReport,
    MemoryFigure,
)
from bench.backends.native_cold_load import fresh_process_load, load_report

T = TypeVar("T")

# dtype argument -> (short name used in the backend name, torch attribute name)
DTYPES: dict[str, tuple[str, str]] = {
    "float32": ("fp32", "float32"),
    "float16": ("fp16", "float16"),
    "bfloat16": ("bf16", "bfloat16"),
}
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}

WARMUP_TEXT = "Kurzer Text zum Aufwärmen. A short warm-up text."


def is_cuda_oom(err: BaseException) -> bool:
    """True for torch's CUDA out-of-memory error, however this torch version spells it."""
    import torch

    oom_types = tuple(
        t
        for t in (getattr(torch.cuda, "OutOfMemoryError", None), getattr(torch, "OutOfMemoryError", None))
        if isinstance(t, type)
    )
    if oom_types and isinstance(err, oom_types):
        return True
    # "CUDA error: out of memory" and CUBLAS_STATUS_ALLOC_FAILED are memory too (probe/failures.py).
    text = str(err).lower()
    return isinstance(err, RuntimeError) and ("out of memory" in text or "alloc_failed" in text)


def apply_attention_settings(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Apply the probe's `enable_*_sdp` switches; return what was applied, kept or ignored.

    Returns {"applied": {key: value}, "previous": {key: value}, "ignored": {key: value}}.
    The switches are the probe's own (probe.checks.attention), so both stages speak one list.
    `attn_implementation` is not a global switch: the backend passes it to the model loader.
    """
    from probe.checks.attention import (
        PYTORCH_DEFAULTS,
        apply_sdpa_settings,
        current_sdpa_settings,
    )
    from probe.checks.triton_compile import PTXAS_SETTING

    applied = {k: bool(v) for k, v in settings.items() if k in PYTORCH_DEFAULTS}
    ignored = {k: v for k, v in settings.items()
               if k not in PYTORCH_DEFAULTS and k not in ("attn_implementation", PTXAS_SETTING)}
    previous = {k: v for k, v in current_sdpa_settings().items() if k in applied}
    apply_sdpa_settings(applied)
    return {"applied": applied, "previous": previous, "ignored": ignored}


def apply_ptxas_setting(settings: dict[str, Any]) -> str | None:
    """The probe's TRITON_PTXAS_PATH (set when Triton's bundled ptxas rejects sm_121a), applied unless the
    environment already names one; returns the path in effect, or None. Triton reads it at compile time."""
    from probe.checks.triton_compile import PTXAS_SETTING

    if settings.get(PTXAS_SETTING) and PTXAS_SETTING not in os.environ:
        os.environ[PTXAS_SETTING] = str(settings[PTXAS_SETTING])
    return os.environ.get(PTXAS_SETTING)


def build_model(settings: BackendSettings, dtype: str, compile_model: bool, device: str) -> Any:
    """SentenceTransformer on `device` in `dtype`, ready to serve: max_seq_length set, compiled
    if asked, one short text encoded and the device synchronised. What every native load times
    (in this process, and in the fresh process of the cold load). The probe's SDPA switches
    must already be applied."""
    import torch
    from sentence_transformers import SentenceTransformer

    model_kwargs: dict[str, Any] = {"dtype": getattr(torch, DTYPES[dtype][1])}
    attn_impl = settings.attention_settings.get("attn_implementation")
    if attn_impl:
        model_kwargs["attn_implementation"] = attn_impl
    model = SentenceTransformer(settings.model, device=device, model_kwargs=model_kwargs)
    if settings.max_seq_length is not None:
        model.max_seq_length = settings.max_seq_length
    if compile_model:
        # dynamic=True: one graph for every sequence length; the warm-up below compiles it.
        model.compile(dynamic=True)
    model.encode([WARMUP_TEXT], batch_size=1, convert_to_numpy=True, show_progress_bar=False)
    if device.startswith("cuda"):
        torch.cuda.synchronize(device)
    return model


class NativeBackend:
    """sentence-transformers on `settings.device` (default: cuda when available, else cpu)."""

    def __init__(self, settings: BackendSettings, dtype: str, compile_model: bool = False) -> None:
        dtype = _DTYPE_ALIASES.get(dtype, dtype)
        if dtype not in DTYPES:
            raise BackendError(f"native backend: unknown dtype {dtype!r}; use one of {', '.join(DTYPES)}.")
        self.settings = settings
        self.dtype = dtype
        self.compile_model = compile_model
        self.name = f"native-{DTYPES[dtype][0]}" + ("-compile" if compile_model else "")
        self._model: Any = None
        self._device: str | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._attention: dict[str, dict[str, Any]] = {"applied": {}, "previous": {}, "ignored": {}}
        self._free_before_load: int | None = None
        self._fp32_matmul: dict[str, Any] | None = None  # the process's fp32 matmul facts at load
        self._ptxas: str | None = None
        self._prompt_prefix = ""
        self._token_counts: dict[str, int] = {}  # filled by prepare(), read by embed()
        self._cold_load_measured = False

    # ------------------------------------------------------------------ plumbing

    async def _run(self, fn: Callable[[], T]) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{self.name}-worker")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    def _require_model(self) -> Any:
        if self._model is None:
            raise BackendError("model not loaded; call load() first.")
        return self._model

    def _is_cuda(self) -> bool:
        return self._device is not None and self._device.startswith("cuda")

    def _sync(self) -> None:
        if self._is_cuda():
            import torch

            torch.cuda.synchronize(self._device)

    @staticmethod
    def _resolve_device(requested: str | None) -> str:
        import torch

        if requested:
            return requested
        return "cuda" if torch.cuda.is_available() else "cpu"

    # ------------------------------------------------------------------ protocol

    async def load(self) -> LoadReport:
        if self._model is not None:
            raise BackendError("already loaded; call unload() first.")
        return await self._run(self._load_sync)

    def _load_sync(self) -> LoadReport:
        import torch
        import transformers

        transformers.utils.logging.disable_progress_bar()  # the bench draws its own progress

        device = self._resolve_device(self.settings.device)
        self._device = device
        if self._is_cuda() and not torch.cuda.is_available():
            raise BackendError(f"device {device!r} requested but torch sees no CUDA device.")
        # Before the child starts, so it inherits the probe's ptxas (Triton reads the environment).
        self._ptxas = apply_ptxas_setting(dict(self.settings.attention_settings))
        # First, in a child process: the cold figure. It exits before this process loads, so
        # the baselines below do not see its memory. Only once: a later load of this backend
        # (the bench loads each backend again to time it) is a reload, and says so.
        if not self.settings.fresh_process_cold_load:
            fresh: dict[str, Any] = {"error": "switched off in the backend settings"}
        elif self._cold_load_measured:
            fresh = {"error": "a reload; the cold figure is this backend's first load"}
        else:
            fresh = fresh_process_load(self.settings, self.dtype, self.compile_model, device)
            self._cold_load_measured = True
        if self._is_cuda():
            torch.cuda.reset_peak_memory_stats(device)
            self._free_before_load = int(torch.cuda.mem_get_info(device)[0])
        self._attention = apply_attention_settings(dict(self.settings.attention_settings))
        self._fp32_matmul = pin_float32_matmul(self.dtype == "float32")

        started = time.perf_counter()
        try:
            model = build_model(self.settings, self.dtype, self.compile_model, device)
        except Exception as err:
            if is_cuda_oom(err):
                self._release_after_oom()
                raise BackendOutOfMemory(f"out of memory while loading on {device}: {err}") from err
            raise BackendError(
                f"could not load {self.settings.model!r} on {device}: {type(err).__name__}: {err}"
            ) from err
        in_process_s = time.perf_counter() - started

        self._model = model
        self._token_counts.clear()
        name = getattr(model, "default_prompt_name", None)
        self._prompt_prefix = (getattr(model, "prompts", None) or {}).get(name, "") if name else ""
        return load_report(fresh, in_process_s, device)

    async def prepare(self, texts: Sequence[str], token_counts: Sequence[int]) -> None:
        """Remember each text's token count so embed() can report prompt_tokens without tokenising.

        The workload's counts come from this model's tokenizer; only a default prompt (which the
        workload does not include) makes this backend count again, here, outside any timer.
        """
        self._require_model()
        texts = list(texts)
        if len(texts) != len(token_counts):
            raise BackendError(f"prepare: {len(texts)} texts but {len(token_counts)} token counts")
        counts = list(token_counts) if not self._prompt_prefix else await self._run(lambda: self._count_sync(texts))
        self._token_counts.update(zip(texts, counts))

    async def embed(self, texts: Sequence[str]) -> EmbedResponse:
        texts = list(texts)
        model = self._require_model()
        if not texts:
            dim = model.get_embedding_dimension() or 0
            return EmbedResponse(vectors=np.empty((0, dim), dtype=np.float32), prompt_tokens=0, backend_time_s=0.0)
        return await self._run(lambda: self._embed_sync(model, texts))

    def _embed_sync(self, model: Any, texts: list[str]) -> EmbedResponse:
        vectors, backend_time_s = self._encode_timed(model, texts)
        return EmbedResponse(vectors=vectors, prompt_tokens=self._prompt_tokens(texts), backend_time_s=backend_time_s)

    def _prompt_tokens(self, texts: list[str]) -> int | None:
        """Prepared counts capped at max_seq_length; None when a text was not prepared (never counted here)."""
        counts = [self._token_counts.get(t) for t in texts]
        if any(n is None for n in counts):
            return None
        cap = self.max_seq_length
        return sum(min(n, cap) if cap else n for n in counts)

    def _encode_timed(self, model: Any, texts: list[str]) -> tuple[np.ndarray, float]:
        try:
            self._sync()
            started = time.perf_counter()
            vectors = model.encode(
                texts,
                batch_size=len(texts),
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
            self._sync()
            elapsed = time.perf_counter() - started
        except Exception as err:
            if is_cuda_oom(err):
                self._release_after_oom()
                raise BackendOutOfMemory(
                    f"out of memory embedding a batch of {len(texts)} on {self._device}"
                ) from err
            raise BackendError(f"encode failed: {type(err).__name__}: {err}") from err
        return np.asarray(vectors, dtype=np.float32), elapsed

    def _release_after_oom(self) -> None:
        import torch

        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    async def unload(self) -> None:
        if self._executor is None:
            return
        await self._run(self._unload_sync)
        self._executor.shutdown(wait=True)
        self._executor = None

    def _unload_sync(self) -> None:
        import torch

        self._model = None
        self._token_counts.clear()
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        from probe.checks.attention import apply_sdpa_settings

        apply_sdpa_settings(self._attention["previous"])
        if self._fp32_matmul and self._fp32_matmul.get("pinned"):
            torch.set_float32_matmul_precision(self._fp32_matmul["default_precision"])

    async def memory(self) -> list[MemoryFigure]:
        return await self._run(self._memory_sync)

    def _memory_sync(self) -> list[MemoryFigure]:
        """The allocator's peaks first (this backend's own, on any CUDA device, unified memory included);
        then a per-process figure from NVML on a discrete GPU, or a labelled device/system-wide delta."""
        figures: list[MemoryFigure] = []
        if self._is_cuda():
            import torch

            allocator = "caching allocator: tensors only, not the CUDA context or library workspaces"
            figures.append(MemoryFigure("torch peak allocated", int(torch.cuda.max_memory_allocated(self._device)),
                                        f"torch.cuda.max_memory_allocated ({allocator})", attributable=True))
            figures.append(MemoryFigure("torch peak reserved", int(torch.cuda.max_memory_reserved(self._device)),
                                        f"torch.cuda.max_memory_reserved ({allocator})", attributable=True))
            figures.append(self._process_gpu_memory())
        else:
            why = "no CUDA device" if self._device is not None else "not loaded yet"
            for label in ("torch peak allocated", "torch peak reserved", "process GPU memory"):
                figures.append(MemoryFigure(label, None, why, attributable=True))
        figures.append(
            MemoryFigure(
                "process peak RSS (CPU run)" if not self._is_cuda() else "process peak RSS (host)",
                peak_rss_bytes(),
                # The high-water mark of the whole bench process: it includes backends run earlier.
                "resource.getrusage(RUSAGE_SELF).ru_maxrss (bench process since start)",
                attributable=False,
            )
        )
        return figures

    def _process_gpu_memory(self) -> MemoryFigure:
        """NVML's figure for this PID on a discrete GPU; else the mem_get_info delta since before load,
        labelled as the wider figure it is (secondary, never attributed to this backend)."""
        import torch

        index, pci = self._nvml_device_ids()
        if self._unified_memory(index):
            # GB10: NVML answers "Not Supported" for memory, and mem_get_info is system memory:
            # page cache from reading the weights and every other process move it.
            label = "system memory used delta since before load (unified memory: all processes and page cache)"
            why_not = "unified memory (integrated GPU): the allocator peaks above are this backend's figures"
        else:
            used, why_not = nvml_process_used_bytes(index, pci)
            if used is not None:
                return MemoryFigure("process GPU memory (NVML, current)", used,
                                    "nvmlDeviceGetComputeRunningProcesses usedGpuMemory for this PID",
                                    attributable=True)
            label = "device used delta since before load (current, all processes on the device)"
            why_not = f"NVML: {why_not}"
        if self._free_before_load is None:
            return MemoryFigure("process GPU memory", None, f"{why_not}; no mem_get_info baseline", attributable=False)
        free_now = int(torch.cuda.mem_get_info(self._device)[0])
        return MemoryFigure(
            label,
            self._free_before_load - free_now,
            f"torch.cuda.mem_get_info free before this backend's load minus free now; secondary ({why_not}); "
            "the baseline is taken after the backends run before it unloaded (Ollama's unload waits until "
            "/api/ps no longer lists the model)",
            attributable=False,
        )

    @staticmethod
    def _unified_memory(index: int) -> bool:
        """True on an integrated GPU sharing system memory (GB10 reports integrated=1). Never raises."""
        import torch

        try:
            return bool(getattr(torch.cuda.get_device_properties(index), "is_integrated", False))
        except Exception:  # noqa: BLE001 - unknown: treat as discrete, NVML decides
            return False

    def _nvml_device_ids(self) -> tuple[int, str | None]:
        """(CUDA index, PCI bus id): NVML numbers devices ignoring CUDA_VISIBLE_DEVICES, PCI ids don't."""
        import torch

        index = torch.device(self._device).index
        index = torch.cuda.current_device() if index is None else index
        try:
            props = torch.cuda.get_device_properties(index)
            pci = f"{props.pci_domain_id:08X}:{props.pci_bus_id:02X}:{props.pci_device_id:02X}.0"
        except Exception:  # noqa: BLE001
            pci = None
        return index, pci

    def describe(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "backend": self.name,
            "kind": "native",
            "model": self.settings.model,
            "dtype": self.dtype,
            "device": self._device or self.settings.device or "auto (cuda if available, else cpu)",
            "max_seq_length": self.max_seq_length,
            "max_tokens": self.max_seq_length,
            "max_tokens_source": "SentenceTransformer.max_seq_length",
            "dimension": None,
            "attn_implementation": None,
            "loaded_dtype": None,
            "sdp_settings_applied": dict(self._attention["applied"]),
            "sdp_settings_previous": dict(self._attention["previous"]),
            "attention_settings_ignored": dict(self._attention["ignored"]),
            "attn_implementation_requested": self.settings.attention_settings.get("attn_implementation"),
            "triton_ptxas_path": self._ptxas,
            "embed_call": "model.encode(texts, batch_size=len(texts), convert_to_numpy=True, "
            "normalize_embeddings=False) on one worker thread",
            "prompt_tokens": "token count from prepare() (the workload's, incl. special tokens), capped at "
            "max_seq_length; None for a text not prepared",
            "load_figure": "cold: a fresh child process (bench.backends.native_cold_load) times CUDA context + "
            "SentenceTransformer(...) + first encode" if self.settings.fresh_process_cold_load else
            "warm: the in-process load (fresh-process cold load switched off)",
            "compiled": "torch.compile(dynamic=True) via SentenceTransformer.compile; compile time is in the load"
            if self.compile_model else None,
            "versions": _versions(),
            "float32_matmul": self._fp32_matmul,
        }
        if self._model is not None:
            facts["dimension"] = self._model.get_embedding_dimension()
            facts["attn_implementation"] = _attn_implementation(self._model)
            facts["loaded_dtype"] = str(self._model.dtype).removeprefix("torch.")
            facts["prompt_prefix"] = self._prompt_prefix
            import torch

            # CPU figures depend on it: on a busy machine two intra-op threads can be far slower than one.
            facts["torch_threads"] = torch.get_num_threads()
            if self._is_cuda():
                facts["device_name"] = torch.cuda.get_device_name(self._device)
                facts["unified_memory"] = self._unified_memory(self._nvml_device_ids()[0])
        return facts

    # ------------------------------------------------------------------ extras

    @property
    def model(self) -> Any:
        """The loaded SentenceTransformer (None before load); `bench perf` runs a bare loop on it."""
        return self._model

    @property
    def max_seq_length(self) -> int | None:
        if self._model is not None:
            return self._model.max_seq_length
        return self.settings.max_seq_length

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Uncapped token counts as the model's tokenizer sees them (special tokens and prompt included).

        Synchronous; runs on the worker thread (the tokenizer must not be used from two threads
        at once), so do not call it from inside a coroutine while an embed() is in flight.
        """
        self._require_model()
        texts = list(texts)
        if self._executor is None:
            return self._count_sync(texts)
        return self._executor.submit(self._count_sync, texts).result()

    def _count_sync(self, texts: list[str]) -> list[int]:
        model = self._require_model()
        texts = [self._prompt_prefix + t for t in texts]
        if not texts:
            return []
        encoded = model.tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]


def _attn_implementation(model: Any) -> str | None:
    try:
        inner = getattr(model[0], "auto_model", None) or model.transformers_model
        return getattr(inner.config, "_attn_implementation", None)
    except Exception:  # noqa: BLE001 - a description must never fail
        return None


def pin_float32_matmul(pin: bool) -> dict[str, Any] | None:
    """The process's fp32 matmul facts (probe/checks/kernels.py), and for native-fp32 IEEE fp32
    pinned: NVIDIA's images make TF32 the default (TORCH_ALLOW_TF32_CUBLAS_OVERRIDE=1), and
    native-fp32 must mean fp32. unload() restores the default found. Never raises."""
    try:
        import torch

        from probe.checks.kernels import float32_matmul_facts

        facts = float32_matmul_facts(torch, os.environ).figures()
        facts["pinned"] = None
        if pin:
            torch.set_float32_matmul_precision("highest")
            facts["pinned"] = "highest" if not facts["forced_tf32"] else "asked for, but TF32 is forced"
        return facts
    except Exception:  # noqa: BLE001 - a description must never fail the load
        return None


def _versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for module in ("torch", "sentence_transformers", "transformers"):
        try:
            versions[module] = __import__(module).__version__
        except Exception:  # noqa: BLE001
            versions[module] = None
    try:
        import torch

        versions["torch_cuda"] = torch.version.cuda
    except Exception:  # noqa: BLE001
        versions["torch_cuda"] = None
    return versions


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def nvml_process_used_bytes(device_index: int, pci_bus_id: str | None = None) -> tuple[int | None, str]:
    """This PID's used GPU memory from NVML, or (None, why not). Never raises."""
    try:
        import pynvml
    except Exception as err:  # noqa: BLE001
        return None, f"pynvml not importable ({type(err).__name__})"
    try:
        pynvml.nvmlInit()
    except Exception as err:  # noqa: BLE001
        return None, f"nvmlInit failed ({type(err).__name__}: {err})"
    try:
        handle = None
        if pci_bus_id:
            try:
                handle = pynvml.nvmlDeviceGetHandleByPciBusId(pci_bus_id)
            except Exception:  # noqa: BLE001 - fall back to the index
                handle = None
        if handle is None:
            handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)
        processes = pynvml.nvmlDeviceGetComputeRunningProcesses(handle)
        pid = os.getpid()
        for proc in processes:
            if proc.pid == pid:
                if proc.usedGpuMemory is None:
                    return None, "usedGpuMemory not available for this PID"
                return int(proc.usedGpuMemory), ""
        return None, f"PID {pid} not in NVML's process list (PID namespace?)"
    except Exception as err:  # noqa: BLE001 - GB10 answers Not Supported for memory queries
        return None, f"{type(err).__name__}: {err}"
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass
