"""Environment facts, torch/utils/collect_env.py style.

Every function here is small, never raises, and returns None when a fact is
unknown; "not available" is a presentation concern. torch and pynvml are
imported inside functions only, so this module imports even when torch is
broken, and the probe can still say so.

The command runner is a parameter (`run_command`) so tests can fake `nvcc`.
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, TypeVar

# (rc, combined stdout+stderr) or None when the command could not be run at all.
RunCommand = Callable[[Sequence[str]], "tuple[int, str] | None"]

COMMAND_TIMEOUT_S = 15.0

# Env vars worth recording: exact names, plus everything under these prefixes.
ENV_VARS_OF_INTEREST = (
    "TORCH_CUDA_ARCH_LIST",
    "CUDACXX",
    "CUDA_HOME",
    "CUDA_PATH",
    "CUDA_VISIBLE_DEVICES",
    "LD_LIBRARY_PATH",
    "OMP_NUM_THREADS",
    "TOKENIZERS_PARALLELISM",
)
ENV_PREFIXES_OF_INTEREST = (
    "CUDA_",
    "CUBLAS_",
    "CUDNN_",
    "NCCL_",
    "NVIDIA_",
    "TORCH_",
    "PYTORCH_",
    "TORCHINDUCTOR_",
    "TRITON_",
    "HF_",
    "TRANSFORMERS_",
    "SENTENCE_TRANSFORMERS_",
    "OLLAMA_",
)
SECRET_MARKERS = ("TOKEN", "KEY", "SECRET", "PASSWORD")
REDACTED = "***"


@dataclass(frozen=True)
class EnvironmentFacts:
    """What this machine and this Python environment are. None = unknown."""

    python_version: str | None
    platform: str | None
    machine: str | None
    torch_version: str | None
    torch_cuda_version: str | None  # torch.version.cuda; None for a CPU build
    cudnn_version: int | None
    torch_arch_list: tuple[str, ...] | None
    cuda_available: bool | None
    device_count: int | None
    device_name: str | None
    device_capability: tuple[int, int] | None
    sentence_transformers_version: str | None
    transformers_version: str | None
    ollama_client_version: str | None
    nvidia_ml_py_version: str | None
    triton_version: str | None
    nvcc_release: str | None
    driver_version: str | None
    cuda_driver_version: str | None  # the CUDA version the driver supports, e.g. "13.0"
    env_vars: dict[str, str] = field(default_factory=dict)  # secrets redacted

    @property
    def torch_is_cpu_build(self) -> bool | None:
        if self.torch_version is None:
            return None
        return self.torch_cuda_version is None


# --- command running -------------------------------------------------------


def default_run_command(argv: Sequence[str], timeout_s: float = COMMAND_TIMEOUT_S) -> tuple[int, str] | None:
    """Run argv; (returncode, stdout+stderr) or None when it cannot be started or times out."""
    try:
        proc = subprocess.run(
            list(argv),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )
    except (OSError, subprocess.SubprocessError, ValueError):
        return None
    return proc.returncode, (proc.stdout or "") + (proc.stderr or "")


# --- plain Python facts ----------------------------------------------------


def python_version() -> str | None:
    try:
        return platform.python_version()
    except Exception:  # noqa: BLE001 - facts never raise
        return None


def platform_name() -> str | None:
    try:
        return platform.platform() or None
    except Exception:  # noqa: BLE001
        return None


def machine_arch() -> str | None:
    try:
        return platform.machine() or None
    except Exception:  # noqa: BLE001
        return None


def package_version(dist_name: str) -> str | None:
    """Installed distribution version via importlib.metadata (no import of the package)."""
    try:
        return metadata.version(dist_name)
    except Exception:  # noqa: BLE001 - PackageNotFoundError and broken metadata alike
        return None


# --- torch facts (torch imported lazily; any failure -> None) --------------


T = TypeVar("T")


def _torch():
    try:
        import torch  # noqa: PLC0415 - deliberately lazy

        return torch
    except Exception:  # noqa: BLE001 - a broken torch is a fact, not a crash
        return None


def _from_torch(read: Callable[[Any], T]) -> T | None:
    """One torch fact: None when torch is missing or the read raises (facts never raise)."""
    torch = _torch()
    if torch is None:
        return None
    try:
        return read(torch)
    except Exception:  # noqa: BLE001
        return None


def torch_version() -> str | None:
    return _from_torch(lambda t: str(t.__version__))


def torch_cuda_version() -> str | None:
    return _from_torch(lambda t: t.version.cuda)


def cudnn_version() -> int | None:
    return _from_torch(lambda t: t.backends.cudnn.version())


def torch_arch_list() -> tuple[str, ...] | None:
    """torch.cuda.get_arch_list(): the SASS (sm_XX) and PTX (compute_XX) targets torch ships."""
    return _from_torch(lambda t: tuple(t.cuda.get_arch_list()))


def cuda_available() -> bool | None:
    return _from_torch(lambda t: bool(t.cuda.is_available()))


def device_count() -> int | None:
    return _from_torch(lambda t: int(t.cuda.device_count()))


def device_name(index: int = 0) -> str | None:
    torch = _torch()
    try:
        if torch is None or not torch.cuda.is_available():
            return None
        # Initialising CUDA may warn that the GPU is not supported; the torch_build
        # check records those warnings itself, so keep them out of facts' output.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return str(torch.cuda.get_device_name(index))
    except Exception:  # noqa: BLE001
        return None


def device_capability(index: int = 0) -> tuple[int, int] | None:
    torch = _torch()
    try:
        if torch is None or not torch.cuda.is_available():
            return None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            major, minor = torch.cuda.get_device_capability(index)
        return int(major), int(minor)
    except Exception:  # noqa: BLE001
        return None


def detect_cuda_device() -> str | None:
    """ "cuda" when torch sees a usable CUDA device, else None. Never raises."""
    torch = _torch()
    try:
        if torch is not None and torch.cuda.is_available() and torch.cuda.device_count() > 0:
            return "cuda"
    except Exception:  # noqa: BLE001
        pass
    return None


# --- toolkit and driver ----------------------------------------------------

_NVCC_RELEASE = re.compile(r"release\s+(\d+\.\d+)")


def parse_nvcc_release(text: str | None) -> str | None:
    """ "13.0" from nvcc --version's "Cuda compilation tools, release 13.0, V13.0.88"."""
    if not text:
        return None
    match = _NVCC_RELEASE.search(text)
    return match.group(1) if match else None


def nvcc_release(run_command: RunCommand = default_run_command, nvcc: str = "nvcc") -> str | None:
    try:
        outcome = run_command([nvcc, "--version"])
    except Exception:  # noqa: BLE001 - even a faulty runner must not break facts
        return None
    if outcome is None or outcome[0] != 0:
        return None
    return parse_nvcc_release(outcome[1])


def nvcc_command(environ: Mapping[str, str] | None = None) -> str:
    """The nvcc the image means: $CUDACXX when set, else nvcc on PATH."""
    environ = os.environ if environ is None else environ
    return environ.get("CUDACXX") or "nvcc"


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def format_cuda_driver_version(value: int | None) -> str | None:
    """NVML/cudaDriverGetVersion integer (13000) -> "13.0"."""
    if value is None or value <= 0:
        return None
    return f"{value // 1000}.{(value % 1000) // 10}"


def nvml_driver_versions() -> tuple[str | None, str | None]:
    """(driver version, CUDA driver version) through NVML; (None, None) without NVML."""
    try:
        import pynvml  # noqa: PLC0415
    except Exception:  # noqa: BLE001
        return None, None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - NVMLError_LibraryNotFound on machines without a driver
        return None, None
    try:
        try:
            driver = _text(pynvml.nvmlSystemGetDriverVersion())
        except Exception:  # noqa: BLE001
            driver = None
        try:
            cuda = format_cuda_driver_version(int(pynvml.nvmlSystemGetCudaDriverVersion_v2()))
        except Exception:  # noqa: BLE001
            cuda = None
        return driver, cuda
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass


def nvidia_smi_driver_version(run_command: RunCommand = default_run_command) -> str | None:
    try:
        outcome = run_command(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    except Exception:  # noqa: BLE001
        return None
    if outcome is None or outcome[0] != 0:
        return None
    lines = [line.strip() for line in outcome[1].splitlines() if line.strip()]
    return lines[0] if lines else None


# --- memory (unified memory on GB10: the OS view matters) ------------------


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo text -> {field: bytes} (values are given in kB there)."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if not parts:
            continue
        try:
            number = int(parts[0])
        except ValueError:
            continue
        scale = 1024 if len(parts) > 1 and parts[1].lower() == "kb" else 1
        values[name.strip()] = number * scale
    return values


def read_meminfo(path: str = "/proc/meminfo") -> dict[str, int] | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            values = parse_meminfo(handle.read())
    except OSError:
        return None
    return values or None


# --- env vars --------------------------------------------------------------


def is_secret_name(name: str) -> bool:
    upper = name.upper()
    return any(marker in upper for marker in SECRET_MARKERS)


_URL_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")


def redact_url_credentials(text: str) -> str:
    """"http://user:pass@host:11434" -> "http://***@host:11434": a password in a URL
    (OLLAMA_HOST behind a proxy, say) must not reach probe.json or bench.json."""
    return _URL_CREDENTIALS.sub(REDACTED + "@", text)


def env_vars_of_interest(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The env vars that shape CUDA/torch/HF/Ollama behaviour, secrets replaced by "***"."""
    environ = os.environ if environ is None else environ
    picked: dict[str, str] = {}
    try:
        for name in sorted(environ):
            if name in ENV_VARS_OF_INTEREST or name.startswith(ENV_PREFIXES_OF_INTEREST):
                picked[name] = REDACTED if is_secret_name(name) else redact_url_credentials(str(environ[name]))
    except Exception:  # noqa: BLE001
        return picked
    return picked


# --- all together ----------------------------------------------------------


def collect_facts(
    run_command: RunCommand = default_run_command,
    environ: Mapping[str, str] | None = None,
) -> EnvironmentFacts:
    """Every fact above in one frozen object. Never raises."""
    environ = os.environ if environ is None else environ
    driver, cuda_driver = nvml_driver_versions()
    if driver is None:
        driver = nvidia_smi_driver_version(run_command)
    return EnvironmentFacts(
        python_version=python_version(),
        platform=platform_name(),
        machine=machine_arch(),
        torch_version=torch_version(),
        torch_cuda_version=torch_cuda_version(),
        cudnn_version=cudnn_version(),
        torch_arch_list=torch_arch_list(),
        cuda_available=cuda_available(),
        device_count=device_count(),
        device_name=device_name(),
        device_capability=device_capability(),
        sentence_transformers_version=package_version("sentence-transformers"),
        transformers_version=package_version("transformers"),
        ollama_client_version=package_version("ollama"),
        nvidia_ml_py_version=package_version("nvidia-ml-py"),
        triton_version=package_version("triton"),
        nvcc_release=nvcc_release(run_command, nvcc_command(environ)),
        driver_version=driver,
        cuda_driver_version=cuda_driver,
        env_vars=env_vars_of_interest(environ),
    )
