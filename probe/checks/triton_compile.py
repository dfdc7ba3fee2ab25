"""Check: Triton compiles and runs a tiny kernel on the device; torch.compile works.

Neither is needed by sentence-transformers in eager mode, so a failure here is a
WARN, not a FAIL. Triton on sm_121 is known to fail with the ptxas it bundles when that
is older than CUDA 13.0: "ptxas fatal   : Value 'sm_121a' is not defined for option
'gpu-name'", on a later line of a PTXASError whose first line only says "PTXAS error:
Internal Triton PTX codegen error" (triton-lang/triton#8539). The fix reported there is
TRITON_PTXAS_PATH pointing at CUDA 13's own ptxas, so on that error the check retries
once with the image's ptxas (CUDA_HOME/bin/ptxas, else /usr/local/cuda/bin/ptxas); when
the retry works, TRITON_PTXAS_PATH goes into the settings the bench applies, and the
reason says so. It is not a workaround native PyTorch needs (the eager path never calls
Triton), so it does not turn the probe into "compatible with workarounds".
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from probe.registry import ProbeContext
from probe.result import CheckResult, Status
from probe.view import format_number

NAME = "triton"
TITLE = "Triton / torch.compile"
PTXAS_SETTING = "TRITON_PTXAS_PATH"  # Triton's own variable; the bench applies it from probe.json settings
PTXAS_REJECTS_SM121A = "Value 'sm_121a' is not defined for option 'gpu-name'"
TRITON_PTXAS_ISSUE = "triton-lang/triton#8539"

# Triton reads a kernel's source with inspect, so the kernel lives in a real file,
# written and imported only when the check runs (importing triton is heavy).
_KERNEL_SOURCE = """
import triton
import triton.language as tl


@triton.jit
def add_kernel(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(axis=0)
    offsets = pid * BLOCK + tl.arange(0, BLOCK)
    mask = offsets < n
    x = tl.load(x_ptr + offsets, mask=mask)
    y = tl.load(y_ptr + offsets, mask=mask)
    tl.store(out_ptr + offsets, x + y, mask=mask)
"""


@dataclass(frozen=True)
class SmokeOutcome:
    """ "ok", "unavailable" (dependency missing: skip), "error" (raised) or "mismatch" (wrong answer)."""

    state: str
    detail: str | None = None
    seconds: float | None = None  # first call, compile included

    def figure(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "detail": self.detail,
            "first_call_s": None if self.seconds is None else round(self.seconds, 3),
        }


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__


def error_detail(err: BaseException) -> str:
    """The error's first line, plus ptxas's own line when the first line hides it (Triton's PTXASError)."""
    first = _first_line(err)
    ptxas = next((line.strip() for line in str(err).splitlines() if "ptxas fatal" in line), None)
    return first if ptxas is None or ptxas in first else f"{first}: {ptxas}"


def cuda_ptxas(env: Mapping[str, str] = os.environ) -> str | None:
    """The image's CUDA toolkit ptxas (CUDA_HOME's, else /usr/local/cuda's), if it exists and runs."""
    homes = [env.get("CUDA_HOME"), "/usr/local/cuda"]
    for home in (h for h in homes if h):
        candidate = Path(home) / "bin" / "ptxas"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@contextmanager
def ptxas_override(path: str) -> Iterator[None]:
    """TRITON_PTXAS_PATH set to `path` for the block (Triton reads it at compile time), then restored."""
    before = os.environ.get(PTXAS_SETTING)
    os.environ[PTXAS_SETTING] = path
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PTXAS_SETTING, None)
        else:
            os.environ[PTXAS_SETTING] = before


def triton_vector_add(device: str, n: int = 98_432) -> SmokeOutcome:
    """Compile and run a Triton vector add on `device`; compare with torch."""
    try:
        import torch  # noqa: PLC0415
        import triton  # noqa: PLC0415
    except Exception as err:  # noqa: BLE001
        return SmokeOutcome("unavailable", f"triton not importable ({_first_line(err)})")
    try:
        with tempfile.TemporaryDirectory(prefix="probe_triton_") as folder:
            path = Path(folder) / "probe_triton_add.py"
            path.write_text(_KERNEL_SOURCE, encoding="utf-8")
            spec = importlib.util.spec_from_file_location("probe_triton_add", path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[spec.name] = module  # some Triton versions look the kernel's module up
            spec.loader.exec_module(module)
            gen = torch.Generator().manual_seed(0)
            x = torch.rand(n, generator=gen).to(device)
            y = torch.rand(n, generator=gen).to(device)
            out = torch.empty_like(x)
            started = time.perf_counter()
            module.add_kernel[(triton.cdiv(n, 1024),)](x, y, out, n, BLOCK=1024)
            if str(device).startswith("cuda"):
                torch.cuda.synchronize()
            seconds = time.perf_counter() - started
    except Exception as err:  # noqa: BLE001 - compile errors (ptxas) and launch errors alike
        return SmokeOutcome("error", error_detail(err))
    if not torch.equal(out, x + y):
        max_err = float((out - (x + y)).abs().max())
        return SmokeOutcome("mismatch", f"max abs error {format_number(max_err, 3)} vs torch", seconds)
    return SmokeOutcome("ok", f"triton {triton.__version__}", seconds)


def _compile_target(x: Any) -> Any:
    import torch  # noqa: PLC0415

    return torch.nn.functional.gelu(x) * 2.0 + 1.0


def torch_compile_smoke(device: str, backend: str = "inductor") -> SmokeOutcome:
    """torch.compile a tiny function on `device` and compare with eager."""
    try:
        import torch  # noqa: PLC0415
    except Exception as err:  # noqa: BLE001
        return SmokeOutcome("unavailable", f"torch not importable ({_first_line(err)})")
    try:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(64, 256, generator=gen).to(device)
        compiled = torch.compile(_compile_target, backend=backend, dynamic=False)
        started = time.perf_counter()
        got = compiled(x)
        if str(device).startswith("cuda"):
            torch.cuda.synchronize()
        seconds = time.perf_counter() - started
        expected = _compile_target(x)
    except Exception as err:  # noqa: BLE001
        return SmokeOutcome("error", error_detail(err))
    if not torch.allclose(got, expected, rtol=1e-5, atol=1e-5):
        max_err = float((got - expected).abs().max())
        return SmokeOutcome("mismatch", f"max abs error {format_number(max_err, 3)} vs eager", seconds)
    return SmokeOutcome("ok", f"backend {backend}", seconds)


def _guarded(smoke: Callable[[str], SmokeOutcome], device: str) -> SmokeOutcome:
    try:
        return smoke(device)
    except Exception as err:  # noqa: BLE001 - never raise out of a check
        return SmokeOutcome("error", error_detail(err))


def check_triton(
    ctx: ProbeContext,
    triton_smoke: Callable[[str], SmokeOutcome] = triton_vector_add,
    compile_smoke: Callable[[str], SmokeOutcome] = torch_compile_smoke,
    find_ptxas: Callable[[], str | None] = cuda_ptxas,
) -> CheckResult:
    """SKIP without a device or Triton; WARN on a compile/run error or a wrong result.

    When the bundled ptxas rejects sm_121a, both smokes run again with TRITON_PTXAS_PATH set to
    the image's ptxas; if that works it becomes a setting the bench applies.
    """
    if ctx.device is None:
        return CheckResult(NAME, TITLE, Status.SKIP, "no CUDA device: Triton and torch.compile not run")
    triton = _guarded(triton_smoke, ctx.device)
    if triton.state == "unavailable":
        return CheckResult(
            NAME,
            TITLE,
            Status.SKIP,
            f"{triton.detail}; torch.compile (inductor) needs it too, so it was not run",
            figures={
                "triton": triton.figure(),
                "torch_compile": SmokeOutcome("unavailable", "needs triton").figure(),
            },
        )
    figures: dict[str, Any] = {"triton": triton.figure()}
    settings: dict[str, Any] = {}
    notes: list[str] = []
    if triton.state == "error" and PTXAS_REJECTS_SM121A in (triton.detail or ""):
        ptxas = find_ptxas()
        if ptxas is None:
            notes.append(f"Triton's bundled ptxas rejects sm_121a ({TRITON_PTXAS_ISSUE}) and no CUDA toolkit "
                         f"ptxas was found (CUDA_HOME/bin/ptxas, /usr/local/cuda/bin/ptxas) to retry with")
            compiled = _guarded(compile_smoke, ctx.device)
        else:
            with ptxas_override(ptxas):
                triton = _guarded(triton_smoke, ctx.device)
                compiled = _guarded(compile_smoke, ctx.device)
            figures["ptxas_retry"] = {PTXAS_SETTING: ptxas, "triton": triton.figure()}
            if triton.state == "ok":
                settings[PTXAS_SETTING] = ptxas
                notes.append(f"Triton's bundled ptxas rejects sm_121a ({TRITON_PTXAS_ISSUE}); with "
                             f"{PTXAS_SETTING}={ptxas} (the image's CUDA ptxas, which the bench sets) it works")
            else:
                notes.append(f"Triton's bundled ptxas rejects sm_121a ({TRITON_PTXAS_ISSUE}) and a retry with "
                             f"{PTXAS_SETTING}={ptxas} did not help")
    else:
        compiled = _guarded(compile_smoke, ctx.device)
    figures["torch_compile"] = compiled.figure()

    problems = []
    if triton.state != "ok":
        problems.append(f"Triton vector add {triton.state}: {triton.detail}")
    if compiled.state != "ok":
        problems.append(f"torch.compile {compiled.state}: {compiled.detail}")
    if problems:
        return CheckResult(
            NAME,
            TITLE,
            Status.WARN,
            "; ".join(notes + problems) + " (not needed by sentence-transformers in eager mode)",
            figures=figures,
            settings=settings,
        )
    return CheckResult(
        NAME,
        TITLE,
        Status.PASS,
        "; ".join(notes + [f"Triton vector add and torch.compile ran and matched ({triton.detail}; "
                           f"first calls {triton.seconds:.2f} s and {compiled.seconds:.2f} s incl. compile)"]),
        figures=figures,
        settings=settings,
    )
