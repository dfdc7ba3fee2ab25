"""Check: does the installed PyTorch build carry code for this GPU (sm_121 on GB10)?

torch.cuda.get_arch_list() names the targets the wheel ships: `sm_XY` is SASS
(a cubin, runs as is), `compute_XY` is PTX (JIT-compiled by the driver at first
use). A cubin runs on devices of the same major version with an equal or higher
minor (sm_120 runs on sm_121); PTX runs on any device of equal or higher
capability. Arch-specific variants (`sm_90a`, `sm_100a`, `sm_121a`) run only on
exactly that capability; family variants (`sm_100f`, `sm_120f`) run within the
major version like plain cubins do.
"""

from __future__ import annotations

import re
import warnings
from enum import Enum
from typing import Any, NamedTuple

from probe.failures import blames_device
from probe.registry import ProbeContext
from probe.result import CheckResult, Status

NAME = "torch_build"
TITLE = "PyTorch build covers the device"

# What PyTorch's capability warnings say (torch/cuda/__init__.py: _check_capability, _check_cubins,
# _warn_unsupported_code, across releases). On GB10 the cu130 wheels warn although their sm_120
# cubins run on sm_121 (pytorch/pytorch#172629), so a warning is recorded and the check is judged
# by whether a kernel runs, never by the warning.
CAPABILITY_WARNING_MARKERS: tuple[str, ...] = (
    "does not include kernels for this GPU",
    "is not compatible with the current PyTorch installation",
    "Minimum and Maximum cuda capability supported",
    "which is of compute capability",
    "which is of cuda capability",
)
FALSE_WARNING_ISSUE = "pytorch/pytorch#172629"


class ArchCoverage(str, Enum):
    EXACT_CUBIN = "exact cubin"
    SAME_MAJOR_CUBIN = "same-major cubin"
    PTX_JIT = "PTX JIT only"
    NOT_COVERED = "not covered"


class ArchMatch(NamedTuple):
    coverage: ArchCoverage
    arch: str | None  # the arch-list entry that covers the device, None when not covered


_ARCH = re.compile(r"^(sm|compute)_(\d+)([af]?)$")


def parse_arch(entry: str) -> tuple[str, int, int, str] | None:
    """ "sm_121a" -> ("sm", 12, 1, "a"); "compute_90" -> ("compute", 9, 0, ""); else None."""
    match = _ARCH.match(entry.strip().lower())
    if not match or len(match.group(2)) < 2:
        return None
    kind, digits, suffix = match.groups()
    return kind, int(digits[:-1]), int(digits[-1]), suffix


def classify_arch_coverage(arch_list: list[str] | tuple[str, ...], capability: tuple[int, int]) -> ArchMatch:
    """How the arch list covers a device of `capability` (major, minor); best coverage wins."""
    major, minor = capability
    exact: list[tuple[int, str]] = []
    same_major: list[tuple[int, str]] = []
    ptx: list[tuple[tuple[int, int], str]] = []
    for entry in arch_list:
        parsed = parse_arch(entry)
        if parsed is None:
            continue
        kind, a_major, a_minor, suffix = parsed
        if kind == "sm":
            if (a_major, a_minor) == (major, minor):
                exact.append((0 if suffix == "" else 1, entry))
            elif suffix != "a" and a_major == major and a_minor < minor:
                same_major.append((a_minor, entry))
        else:  # PTX
            if suffix == "a":
                runs = (a_major, a_minor) == (major, minor)
            elif suffix == "f":
                runs = a_major == major and a_minor <= minor
            else:
                runs = (a_major, a_minor) <= (major, minor)
            if runs:
                ptx.append(((a_major, a_minor), entry))
    if exact:
        return ArchMatch(ArchCoverage.EXACT_CUBIN, min(exact)[1])
    if same_major:
        return ArchMatch(ArchCoverage.SAME_MAJOR_CUBIN, max(same_major)[1])
    if ptx:
        return ArchMatch(ArchCoverage.PTX_JIT, max(ptx)[1])
    return ArchMatch(ArchCoverage.NOT_COVERED, None)


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return ""


def _capture_torch_warnings(torch: Any, device_index: int) -> tuple[tuple[int, int], list[str]]:
    """Initialise CUDA and read the capability, recording torch's compatibility warnings.

    torch warns only once, at lazy init; if something initialised CUDA earlier the
    warning is gone, so torch's own (private) checks are re-run when present.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.init()
        capability = tuple(int(v) for v in torch.cuda.get_device_capability(device_index))
        for private_check in ("_check_capability", "_check_cubins"):
            fn = getattr(torch.cuda, private_check, None)
            if callable(fn):
                try:
                    fn()
                except Exception:  # noqa: BLE001 - private API; its absence or change is harmless
                    pass
    messages: list[str] = []
    for item in caught:
        text = str(item.message).strip()
        if text and text not in messages:
            messages.append(text)
    return (capability[0], capability[1]), messages


def capability_warnings(messages: list[str]) -> list[str]:
    """The warnings that are PyTorch's device-capability warnings, in order."""
    return [m for m in messages if any(marker in m for marker in CAPABILITY_WARNING_MARKERS)]


def _key_sentence(warning: str) -> str:
    """The warning's telling line ('... does not include kernels for this GPU.'), else its first line."""
    lines = [line.strip() for line in warning.splitlines() if line.strip()]
    key = next((line for line in lines if "does not include kernels" in line or "not compatible" in line),
               lines[0] if lines else "")
    return key.split(". ")[0].rstrip(".") + "."


def _kernel_smoke(torch: Any, device: str) -> str | None:
    """Run one tiny kernel; None when it ran and was right, else the error's first line."""
    try:
        x = torch.arange(1024, device=device, dtype=torch.float32)
        got = float((x * 2).sum().item())
        torch.cuda.synchronize()
    except Exception as err:  # noqa: BLE001 - "no kernel image is available" lands here
        return f"{type(err).__name__}: {_first_line(str(err))}"
    expected = float(1023 * 1024)  # 2 * sum(0..1023)
    return None if got == expected else f"wrong result {got} (expected {expected})"


def _failed(on_device: bool, reason: str, figures: dict[str, Any]) -> CheckResult:
    """FAIL when the GPU is to blame; otherwise the check could not run (SKIP), which is no
    evidence of incompatibility."""
    return CheckResult(NAME, TITLE, Status.FAIL if on_device else Status.SKIP,
                       reason if on_device else f"not run: {reason}", figures=figures)


def check_torch_build(ctx: ProbeContext) -> CheckResult:
    try:
        import torch  # noqa: PLC0415 - a broken torch must be reported, not crash the import
    except Exception as err:  # noqa: BLE001
        return CheckResult(NAME, TITLE, Status.FAIL, f"torch not importable: {type(err).__name__}: {err}")

    cuda_build = torch.version.cuda
    try:
        cudnn = torch.backends.cudnn.version()
    except Exception:  # noqa: BLE001
        cudnn = None
    try:
        arch_list = list(torch.cuda.get_arch_list())
    except Exception:  # noqa: BLE001
        arch_list = []
    figures: dict[str, Any] = {
        "torch_version": str(torch.__version__),
        "torch_cuda_version": cuda_build,
        "cudnn_version": cudnn,
        "arch_list": arch_list,
        "cpu_build": cuda_build is None,
    }

    if ctx.device is None:
        build = (
            f"torch {torch.__version__} is a CPU build"
            if cuda_build is None
            else f"torch {torch.__version__} is built for CUDA {cuda_build} "
            f"({' '.join(arch_list) or 'no arch list'})"
        )
        return CheckResult(
            NAME, TITLE, Status.SKIP, f"no CUDA device: target not probed ({build})", figures=figures
        )

    try:
        device_index = torch.cuda.current_device()
        capability, torch_warnings = _capture_torch_warnings(torch, device_index)
        device_name = str(torch.cuda.get_device_name(device_index))
    except Exception as err:  # noqa: BLE001
        # A driver too old or memory others hold is for the user to fix, not the GPU's fault.
        return _failed(blames_device(err), f"CUDA initialisation failed: {type(err).__name__}: "
                       f"{_first_line(str(err))}", figures)

    match = classify_arch_coverage(arch_list, capability)
    smoke_error = _kernel_smoke(torch, ctx.device)
    device_sm = f"sm_{capability[0]}{capability[1]}"
    warned = capability_warnings(torch_warnings)
    figures.update(
        {
            "device_name": device_name,
            "device_capability": f"{capability[0]}.{capability[1]}",
            "device_sm": device_sm,
            "coverage": match.coverage.value,
            "covered_by": match.arch,
            "torch_warnings": torch_warnings,
            "capability_warnings": warned,
            "torch_warns_incompatible": bool(warned),
            "kernel_smoke_ok": smoke_error is None,
            "kernel_smoke_error": smoke_error,
        }
    )

    where = f"{device_name} {device_sm} on torch {torch.__version__} (CUDA {cuda_build})"
    quoted = "; ".join(f'"{_key_sentence(w)}"' for w in warned)
    if smoke_error is not None:
        return _failed(
            smoke_error.startswith("wrong result") or blames_device(smoke_error),
            f"a tiny kernel failed on {where}: {smoke_error} (arch coverage: {match.coverage.value})"
            + (f"; torch warned at CUDA init: {quoted}" if warned else ""),
            figures=figures,
        )
    status, reason = _judge_coverage(match, device_sm, arch_list, where)
    if warned:
        # Judged by the kernel that ran, not by the warning: the status above follows the coverage.
        known = f" (known to be wrong for GB10 on cu130 wheels: {FALSE_WARNING_ISSUE})" if capability == (12, 1) else ""
        reason += f"; torch warned at CUDA init {quoted}, yet a kernel ran and matched, so this check goes by that{known}"
    return CheckResult(NAME, TITLE, status, reason, figures=figures)


def _judge_coverage(match: ArchMatch, device_sm: str, arch_list: list[str], where: str) -> tuple[Status, str]:
    """Status and reason once a kernel has run, from how the arch list covers the device."""
    if match.coverage is ArchCoverage.NOT_COVERED:
        # The kernel ran, so something covers the device that the list does not show;
        # the kernels check decides whether the ops a model needs run.
        return Status.WARN, (f"{device_sm} is not covered by the arch list ({' '.join(arch_list) or 'empty'}) of "
                             f"{where}, yet a tiny kernel ran: coverage unexplained, rely on the kernels check")
    if match.coverage is ArchCoverage.PTX_JIT:
        return Status.WARN, (f"{where}: no cubin for {device_sm}, only PTX {match.arch} (JIT-compiled by the driver: "
                             "slow first calls; install a wheel built for sm_120/sm_121, e.g. cu130)")
    how = "exact cubin" if match.coverage is ArchCoverage.EXACT_CUBIN else "same-major cubin"
    return Status.PASS, f"{where}: covered by {how} {match.arch}"
