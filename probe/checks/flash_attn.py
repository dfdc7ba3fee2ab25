"""Check: if the flash-attn package is installed, does it run on this GPU?

Nothing in the bench needs flash-attn: sentence-transformers loads the model with
transformers' default attention (PyTorch SDPA, matrixed by the attention check) unless
attn_implementation="flash_attention_2" is asked for. But Spark images often carry a
flash-attn build, and on GB10 its kernels answer "FATAL: kernel built for sm80-sm100, but
running on sm121" (Dao-AILab/flash-attention#1969). That message is recognised and
reported as what it is, a WARN naming the issue and the way around it, never a crash.

The smoke: flash_attn_func on one bf16 (batch 1, 128 tokens, 16 heads × 64) input against
PyTorch's math SDPA in fp32 from the same rounded inputs.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from probe.registry import ProbeContext
from probe.result import CheckResult, Status

NAME = "flash_attn"
TITLE = "flash-attn package (optional)"
ISSUE = "Dao-AILab/flash-attention#1969"
KERNEL_ARCH_MISMATCH = re.compile(r"kernel built for (sm\d+(?:-sm\d+)?), but running on (sm\d+)")
TOLERANCE = 3e-2  # bf16 output against an fp32 reference, as the attention check's bf16 bound


@dataclass(frozen=True)
class FlashOutcome:
    state: str  # "ok", "not installed", "error", "wrong"
    detail: str | None = None
    version: str | None = None
    max_abs_err: float | None = None


def _error_text(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {' | '.join(lines[:3])}"[:500] if lines else type(err).__name__


def flash_attn_smoke(device: str) -> FlashOutcome:
    """Import flash-attn and run one small call on `device`; never raises."""
    try:
        import flash_attn  # noqa: PLC0415
        from flash_attn import flash_attn_func  # noqa: PLC0415
    except ModuleNotFoundError as err:
        if err.name == "flash_attn":
            return FlashOutcome("not installed")
        return FlashOutcome("error", _error_text(err))
    except Exception as err:  # noqa: BLE001 - a broken build may fail at import (undefined symbols, arch checks)
        return FlashOutcome("error", _error_text(err))
    version = str(getattr(flash_attn, "__version__", "unknown"))
    try:
        import torch  # noqa: PLC0415
        import torch.nn.functional as F  # noqa: N812, PLC0415

        gen = torch.Generator().manual_seed(0)
        q, k, v = (torch.randn(1, 128, 16, 64, generator=gen).to(device=device, dtype=torch.bfloat16)
                   for _ in range(3))
        out = flash_attn_func(q, k, v)  # (batch, seq, heads, dim)
        ref = F.scaled_dot_product_attention(*(t.float().transpose(1, 2) for t in (q, k, v))).transpose(1, 2)
        error = float((out.float() - ref).abs().max())
    except Exception as err:  # noqa: BLE001 - the sm121 mismatch lands here
        return FlashOutcome("error", _error_text(err), version)
    if not error <= TOLERANCE:  # NaN fails too
        return FlashOutcome("wrong", f"max abs error {error:.3g} > {TOLERANCE:g} vs fp32 SDPA", version, error)
    return FlashOutcome("ok", None, version, error)


def check_flash_attn(ctx: ProbeContext, smoke: Callable[[str], FlashOutcome] = flash_attn_smoke) -> CheckResult:
    """SKIP without a device or without flash-attn; WARN when it cannot run here (recognising sm121); else PASS."""
    if ctx.device is None:
        return CheckResult(NAME, TITLE, Status.SKIP, "no CUDA device: flash-attn not run")
    try:
        outcome = smoke(ctx.device)
    except Exception as err:  # noqa: BLE001 - never raise out of a check
        outcome = FlashOutcome("error", _error_text(err))
    figures: dict[str, Any] = asdict(outcome)
    package = f"flash-attn {outcome.version}" if outcome.version else "flash-attn"
    if outcome.state == "not installed":
        return CheckResult(NAME, TITLE, Status.SKIP, "flash-attn is not installed: nothing to check (the bench uses "
                           "PyTorch SDPA, see the attention check)", figures=figures)
    not_needed = ("not needed: the bench uses PyTorch SDPA (see the attention check); do not request "
                  "attn_implementation='flash_attention_2' on this machine")
    mismatch = KERNEL_ARCH_MISMATCH.search(outcome.detail or "")
    if mismatch:
        built_for, running_on = mismatch.groups()
        figures["recognised"] = {"built_for": built_for, "running_on": running_on, "issue": ISSUE}
        return CheckResult(NAME, TITLE, Status.WARN,
                           f"{package} is installed, but its kernels are built for "
                           f"{built_for} and this GPU is {running_on} ({ISSUE}): it cannot run here; {not_needed}",
                           figures=figures)
    if outcome.state != "ok":
        return CheckResult(NAME, TITLE, Status.WARN, f"{package} {outcome.state}: "
                           f"{outcome.detail}; {not_needed}", figures=figures)
    return CheckResult(NAME, TITLE, Status.PASS, f"{package} ran and matched fp32 SDPA "
                       f"(max abs error {outcome.max_abs_err:.3g} ≤ {TOLERANCE:g})", figures=figures)
