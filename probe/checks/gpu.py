"""Check: what NVML says about the GPU(s): name, compute capability, driver, memory.

GB10 (DGX Spark) has unified memory: NVML's memory queries raise
NVMLError_NotSupported there. That is a WARN with a fallback, not a failure:
torch.cuda.mem_get_info and /proc/meminfo give the numbers, and the figures say
which source each number came from.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from probe.facts import format_cuda_driver_version, read_meminfo
from probe.registry import ProbeContext
from probe.result import CheckResult, Status

NAME = "gpu"
TITLE = "GPU and driver (NVML)"

SOURCE_NVML = "nvml"
SOURCE_TORCH = "torch.cuda.mem_get_info"
SOURCE_MEMINFO = "/proc/meminfo"


class _Never(Exception):
    """Stands in for an NVML error class a (fake or old) pynvml lacks."""


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def torch_mem_info() -> dict[str, int] | None:
    """torch.cuda.mem_get_info() on device 0 as {free_bytes, total_bytes}; None without CUDA."""
    try:
        import torch  # noqa: PLC0415

        if not torch.cuda.is_available():
            return None
        free, total = torch.cuda.mem_get_info(0)
        return {"free_bytes": int(free), "total_bytes": int(total)}
    except Exception:  # noqa: BLE001
        return None


def meminfo_memory(path: str = "/proc/meminfo") -> dict[str, int] | None:
    """MemTotal / MemAvailable as {total_bytes, available_bytes}; None if unreadable."""
    values = read_meminfo(path)
    if not values or "MemTotal" not in values:
        return None
    result = {"total_bytes": values["MemTotal"]}
    if "MemAvailable" in values:
        result["available_bytes"] = values["MemAvailable"]
    return result


def _import_pynvml():
    import pynvml  # noqa: PLC0415

    return pynvml


def check_gpu(
    ctx: ProbeContext,
    nvml: Any = None,
    torch_memory: Callable[[], dict[str, int] | None] = torch_mem_info,
    host_memory: Callable[[], dict[str, int] | None] = meminfo_memory,
) -> CheckResult:
    """Query NVML; SKIP without NVML or GPU, WARN when a query is unsupported (with fallbacks)."""
    del ctx  # NVML sees the GPU whatever device torch picked
    if nvml is None:
        try:
            nvml = _import_pynvml()
        except Exception as err:  # noqa: BLE001
            return CheckResult(NAME, TITLE, Status.SKIP, f"nvidia-ml-py not importable ({_first_line(err)})")

    nvml_error = getattr(nvml, "NVMLError", _Never)
    not_supported = getattr(nvml, "NVMLError_NotSupported", _Never)
    library_not_found = getattr(nvml, "NVMLError_LibraryNotFound", _Never)

    try:
        nvml.nvmlInit()
    except library_not_found:
        return CheckResult(
            NAME, TITLE, Status.SKIP, "NVML library not found: no NVIDIA driver on this machine"
        )
    except Exception as err:  # noqa: BLE001 - DriverNotLoaded, NoPermission, ...
        return CheckResult(NAME, TITLE, Status.SKIP, f"NVML could not start ({_first_line(err)})")

    unsupported: list[str] = []
    errors: list[str] = []

    def query(label: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except not_supported:
            unsupported.append(label)
        except nvml_error as err:
            errors.append(f"{label}: {_first_line(err)}")
        except Exception as err:  # noqa: BLE001 - a wrapper bug must not stop the probe
            errors.append(f"{label}: {_first_line(err)}")
        return None

    try:
        count = query("nvmlDeviceGetCount", nvml.nvmlDeviceGetCount)
        driver = query("nvmlSystemGetDriverVersion", nvml.nvmlSystemGetDriverVersion)
        cuda_raw = query("nvmlSystemGetCudaDriverVersion_v2", nvml.nvmlSystemGetCudaDriverVersion_v2)
        if not count:
            return CheckResult(
                NAME,
                TITLE,
                Status.SKIP,
                "NVML reports no GPU"
                if count == 0
                else "NVML device count unknown (" + "; ".join(errors or unsupported) + ")",
                figures={"device_count": count, "driver_version": None if driver is None else _text(driver)},
            )
        devices = []
        for index in range(int(count)):
            handle = query(
                f"nvmlDeviceGetHandleByIndex({index})", lambda i=index: nvml.nvmlDeviceGetHandleByIndex(i)
            )
            if handle is None:
                devices.append(
                    {"index": index, "name": None, "compute_capability": None, "nvml_memory": None}
                )
                continue
            name = query(f"nvmlDeviceGetName({index})", lambda h=handle: nvml.nvmlDeviceGetName(h))
            cc = query(
                f"nvmlDeviceGetCudaComputeCapability({index})",
                lambda h=handle: nvml.nvmlDeviceGetCudaComputeCapability(h),
            )
            mem = query(f"nvmlDeviceGetMemoryInfo({index})", lambda h=handle: nvml.nvmlDeviceGetMemoryInfo(h))
            devices.append(
                {
                    "index": index,
                    "name": None if name is None else _text(name),
                    "compute_capability": None if cc is None else f"{int(cc[0])}.{int(cc[1])}",
                    "nvml_memory": None
                    if mem is None
                    else {
                        "total_bytes": int(mem.total),
                        "free_bytes": int(mem.free),
                        "used_bytes": int(mem.used),
                    },
                }
            )
    finally:
        try:
            nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001
            pass

    first = devices[0]
    memory_missing = first["nvml_memory"] is None
    fallback = {SOURCE_TORCH: torch_memory(), SOURCE_MEMINFO: host_memory()} if memory_missing else {}
    memory = _best_memory(first["nvml_memory"], fallback)

    cuda_driver = None
    if cuda_raw is not None:
        try:
            cuda_driver = format_cuda_driver_version(int(cuda_raw))
        except (TypeError, ValueError):
            cuda_driver = None
    figures: dict[str, Any] = {
        "device_count": int(count),
        "driver_version": None if driver is None else _text(driver),
        "cuda_driver_version": cuda_driver,
        "devices": devices,
        "memory": memory,
        "memory_fallback": fallback,
        "unsupported_queries": unsupported,
        "errors": errors,
    }

    summary = (
        f"{first['name'] or 'unknown GPU'} (compute capability {first['compute_capability'] or 'unknown'}), "
        f"driver {figures['driver_version'] or 'unknown'}, CUDA driver {cuda_driver or 'unknown'}"
    )
    if not unsupported and not errors:
        return CheckResult(NAME, TITLE, Status.PASS, summary, figures=figures)
    notes = []
    if unsupported:
        notes.append("not supported by NVML: " + ", ".join(unsupported))
    if memory_missing:
        sources = sorted({memory.get("total_source"), memory.get("free_source")} - {None})
        notes.append(
            "memory from "
            + (" and ".join(sources) if sources else "no source")
            + (" (unified memory, as on GB10)" if "nvmlDeviceGetMemoryInfo(0)" in unsupported else "")
        )
    if errors:
        notes.append("NVML errors: " + "; ".join(errors))
    return CheckResult(NAME, TITLE, Status.WARN, summary + "; " + "; ".join(notes), figures=figures)


def _best_memory(
    nvml_memory: dict[str, int] | None, fallback: dict[str, dict[str, int] | None]
) -> dict[str, Any]:
    """Total and free bytes from the best source: NVML, then torch, then /proc/meminfo."""
    if nvml_memory is not None:
        return {
            "total_bytes": nvml_memory["total_bytes"],
            "total_source": SOURCE_NVML,
            "free_bytes": nvml_memory["free_bytes"],
            "free_source": SOURCE_NVML,
        }
    memory: dict[str, Any] = {
        "total_bytes": None,
        "total_source": None,
        "free_bytes": None,
        "free_source": None,
    }
    from_torch = fallback.get(SOURCE_TORCH)
    from_host = fallback.get(SOURCE_MEMINFO)
    if from_torch:
        memory.update(
            total_bytes=from_torch["total_bytes"],
            total_source=SOURCE_TORCH,
            free_bytes=from_torch["free_bytes"],
            free_source=SOURCE_TORCH,
        )
    elif from_host:
        memory.update(total_bytes=from_host["total_bytes"], total_source=SOURCE_MEMINFO)
        if "available_bytes" in from_host:
            memory.update(
                free_bytes=from_host["available_bytes"], free_source=SOURCE_MEMINFO + " MemAvailable"
            )
    return memory
