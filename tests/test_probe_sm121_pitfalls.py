"""The sm_121 pitfalls Spark owners reported, raised by fakes with the exact upstream messages:

- Triton's bundled ptxas rejecting sm_121a (triton-lang/triton#8539), fixed by TRITON_PTXAS_PATH;
- PyTorch's capability warning on GB10 although its kernels run (pytorch/pytorch#172629);
- flash-attn's "kernel built for sm80-sm100, but running on sm121" (Dao-AILab/flash-attention#1969).
"""

from __future__ import annotations

import os
import sys
import types

import pytest
from fake_torch import FakeCudaTorch

from probe.checks import flash_attn, torch_build, triton_compile
from probe.registry import ProbeContext
from probe.result import Status

# triton-lang/triton#8539, as Triton's PTXASError prints it (str(err) starts after the class name)
PTXAS_SM121A = (
    "PTXAS error: Internal Triton PTX codegen error\n"
    "`ptxas` stderr:\n"
    "ptxas fatal   : Value 'sm_121a' is not defined for option 'gpu-name'\n"
    "\n"
    "Repro command: /home/xxxx/miniforge3/envs/pt10/lib/python3.10/site-packages/triton/backends/nvidia/bin/ptxas "
    "-lineinfo -v --gpu-name=sm_121a /tmp/tmpkw7ug6t8.ptx -o /tmp/tmpkw7ug6t8.ptx.o"
)
# pytorch/pytorch#172629: torch 2.13.0+cu130 on GB10, and the older wording from torch 2.9.1
TORCH_213_GB10 = ("Found GPU0 NVIDIA GB10 which is of compute capability (CC) 12.1.\n"
                  "Your installed torch==2.13.0+cu130 does not include kernels for this GPU.")
TORCH_291_GB10 = ("\n    Found GPU0 NVIDIA GB10 which is of cuda capability 12.1.\n"
                  "    Minimum and Maximum cuda capability supported by this version of PyTorch is\n"
                  "    (8.0) - (12.0) \n")
# Dao-AILab/flash-attention#1969
FLASH_SM121 = "FATAL: kernel built for sm80-sm100, but running on sm121"


def _ctx(device):
    return ProbeContext(model="m", ollama_host="http://x", ollama_model="bge-m3", device=device)


# --- Triton --------------------------------------------------------------------------------


class PTXASError(RuntimeError):
    """Stands in for triton.runtime.errors.PTXASError."""


def _fake_triton(monkeypatch, working_ptxas: str | None):
    """A `triton` whose kernel launch fails as #8539 does unless TRITON_PTXAS_PATH names `working_ptxas`."""
    seen: list[str | None] = []

    def launch(x, y, out, n, BLOCK):  # noqa: N803 - the kernel's own argument name
        seen.append(os.environ.get("TRITON_PTXAS_PATH"))
        if working_ptxas is None or os.environ.get("TRITON_PTXAS_PATH") != working_ptxas:
            raise PTXASError(PTXAS_SM121A)
        out.copy_(x + y)

    class Jit:
        def __init__(self, fn):
            self.fn = fn

        def __getitem__(self, grid):
            return launch

    language = types.ModuleType("triton.language")
    language.constexpr = int
    triton = types.ModuleType("triton")
    triton.__version__ = "3.5.0"
    triton.jit = Jit
    triton.cdiv = lambda a, b: -(-a // b)
    triton.language = language
    monkeypatch.setitem(sys.modules, "triton", triton)
    monkeypatch.setitem(sys.modules, "triton.language", language)
    return seen


def _ptxas_in(tmp_path, monkeypatch) -> str:
    """A CUDA_HOME with an executable bin/ptxas, as the image's CUDA 13 toolkit has."""
    ptxas = tmp_path / "cuda-13.0" / "bin" / "ptxas"
    ptxas.parent.mkdir(parents=True)
    ptxas.write_text("#!/bin/sh\n")
    ptxas.chmod(0o755)
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "cuda-13.0"))
    return str(ptxas)


def test_the_ptxas_line_is_kept_although_it_is_not_the_first_line():
    detail = triton_compile.error_detail(PTXASError(PTXAS_SM121A))
    assert detail == ("PTXASError: PTXAS error: Internal Triton PTX codegen error: "
                      "ptxas fatal   : Value 'sm_121a' is not defined for option 'gpu-name'")
    assert triton_compile.error_detail(ValueError("one\ntwo")) == "ValueError: one"


def test_triton_retries_with_the_images_ptxas_and_hands_it_to_the_bench(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_PTXAS_PATH", raising=False)
    ptxas = _ptxas_in(tmp_path, monkeypatch)
    seen = _fake_triton(monkeypatch, working_ptxas=ptxas)
    compile_env = []

    def compile_smoke(device):
        compile_env.append(os.environ.get("TRITON_PTXAS_PATH"))
        return triton_compile.SmokeOutcome("ok", "backend inductor", 1.0)

    result = triton_compile.check_triton(_ctx("cpu"), compile_smoke=compile_smoke)
    assert seen == [None, ptxas]  # failed with the bundled ptxas, then ran with the image's
    assert compile_env == [ptxas]  # inductor compiles through Triton: it gets the same ptxas
    assert result.status is Status.PASS, result.reason
    assert result.settings == {"TRITON_PTXAS_PATH": ptxas}
    assert result.workarounds == ()  # eager sentence-transformers never needs it
    assert "rejects sm_121a (triton-lang/triton#8539)" in result.reason
    assert f"TRITON_PTXAS_PATH={ptxas}" in result.reason and "which the bench sets" in result.reason
    assert "Value 'sm_121a' is not defined" in result.figures["triton"]["detail"]
    assert result.figures["ptxas_retry"]["triton"]["state"] == "ok"
    assert "TRITON_PTXAS_PATH" not in os.environ  # the probe itself leaves the environment as it found it


def test_triton_retry_that_does_not_help_is_a_warn_without_settings(tmp_path, monkeypatch):
    monkeypatch.delenv("TRITON_PTXAS_PATH", raising=False)
    _ptxas_in(tmp_path, monkeypatch)
    _fake_triton(monkeypatch, working_ptxas=None)
    result = triton_compile.check_triton(
        _ctx("cpu"), compile_smoke=lambda d: triton_compile.SmokeOutcome("ok", "backend inductor", 1.0))
    assert result.status is Status.WARN and result.settings == {}
    assert "did not help" in result.reason and "Value 'sm_121a' is not defined" in result.reason


def test_triton_without_a_toolkit_ptxas_says_so(monkeypatch):
    _fake_triton(monkeypatch, working_ptxas="/nowhere/ptxas")
    result = triton_compile.check_triton(
        _ctx("cpu"), compile_smoke=lambda d: triton_compile.SmokeOutcome("ok", "backend inductor", 1.0),
        find_ptxas=lambda: None)
    assert result.status is Status.WARN and result.settings == {}
    assert "no CUDA toolkit ptxas was found" in result.reason
    assert "ptxas_retry" not in result.figures


def test_cuda_ptxas_needs_an_executable_file(tmp_path):
    assert triton_compile.cuda_ptxas({"CUDA_HOME": str(tmp_path / "missing")}) in (None, "/usr/local/cuda/bin/ptxas")
    plain = tmp_path / "bin" / "ptxas"
    plain.parent.mkdir()
    plain.write_text("not executable")
    plain.chmod(0o644)
    assert triton_compile.cuda_ptxas({"CUDA_HOME": str(tmp_path)}) != str(plain)
    plain.chmod(0o755)
    assert triton_compile.cuda_ptxas({"CUDA_HOME": str(tmp_path)}) == str(plain)


def test_ptxas_override_restores_a_users_setting(monkeypatch):
    monkeypatch.setenv("TRITON_PTXAS_PATH", "/mine/ptxas")
    with triton_compile.ptxas_override("/cuda/bin/ptxas"):
        assert os.environ["TRITON_PTXAS_PATH"] == "/cuda/bin/ptxas"
    assert os.environ["TRITON_PTXAS_PATH"] == "/mine/ptxas"


# --- PyTorch's capability warning ------------------------------------------------------------


def torch_213_on_gb10(warning: str, smoke_error: str | None = None, capability=(12, 1)) -> FakeCudaTorch:
    """GB10 behind a cu130 torch 2.13 wheel, warning at CUDA init."""
    return FakeCudaTorch(["sm_80", "sm_90", "sm_100", "sm_110", "sm_120"], capability=capability,
                         smoke_error=smoke_error, warning=warning, warned_by="_check_capability",
                         version="2.13.0+cu130")


@pytest.mark.parametrize(("warning", "quoted"), [
    (TORCH_213_GB10, '"Your installed torch==2.13.0+cu130 does not include kernels for this GPU."'),
    (TORCH_291_GB10, '"Found GPU0 NVIDIA GB10 which is of cuda capability 12.1."'),
])
def test_torch_capability_warning_is_recorded_and_judged_by_the_kernel_that_ran(monkeypatch, warning, quoted):
    monkeypatch.setitem(sys.modules, "torch", torch_213_on_gb10(warning))
    result = torch_build.check_torch_build(_ctx("cuda"))
    assert result.status is Status.PASS, result.reason  # sm_120 cubin runs on sm_121, and it did
    assert result.figures["capability_warnings"] == [warning.strip()]
    assert result.figures["torch_warns_incompatible"] is True and result.figures["kernel_smoke_ok"] is True
    assert f"torch warned at CUDA init {quoted}, yet a kernel ran and matched, so this check goes by that" in result.reason
    assert "pytorch/pytorch#172629" in result.reason


def test_torch_capability_warning_with_a_failing_kernel_is_a_fail_that_quotes_it(monkeypatch):
    error = "CUDA error: no kernel image is available for execution on the device"
    monkeypatch.setitem(sys.modules, "torch", torch_213_on_gb10(TORCH_213_GB10, smoke_error=error))
    result = torch_build.check_torch_build(_ctx("cuda"))
    assert result.status is Status.FAIL
    assert "no kernel image is available" in result.reason
    assert "torch warned at CUDA init" in result.reason and "pytorch/pytorch#172629" not in result.reason


def test_the_gb10_issue_is_cited_only_on_sm_121(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", torch_213_on_gb10(TORCH_213_GB10, capability=(12, 0)))
    result = torch_build.check_torch_build(_ctx("cuda"))
    assert "torch warned at CUDA init" in result.reason and "pytorch/pytorch#172629" not in result.reason


def test_other_warnings_are_kept_but_are_not_capability_warnings():
    messages = ["TypedStorage is deprecated", TORCH_213_GB10,
                "NVIDIA GB10 with CUDA capability sm_121 is not compatible with the current PyTorch installation."]
    assert torch_build.capability_warnings(messages) == messages[1:]


# --- flash-attn --------------------------------------------------------------------------------


def _fake_flash_attn(monkeypatch, func):
    module = types.ModuleType("flash_attn")
    module.__version__ = "2.8.3"
    module.flash_attn_func = func
    monkeypatch.setitem(sys.modules, "flash_attn", module)


def test_flash_attn_sm121_mismatch_is_recognised_not_a_crash(monkeypatch):
    def fails(q, k, v):
        raise RuntimeError(FLASH_SM121)

    _fake_flash_attn(monkeypatch, fails)
    result = flash_attn.check_flash_attn(_ctx("cpu"))
    assert result.status is Status.WARN
    assert result.figures["recognised"] == {"built_for": "sm80-sm100", "running_on": "sm121",
                                            "issue": "Dao-AILab/flash-attention#1969"}
    assert result.reason.startswith("flash-attn 2.8.3 is installed, but its kernels are built for sm80-sm100 "
                                    "and this GPU is sm121 (Dao-AILab/flash-attention#1969)")
    assert "attn_implementation='flash_attention_2'" in result.reason


def test_flash_attn_that_runs_and_matches_passes(monkeypatch):
    import torch.nn.functional as F

    def sdpa(q, k, v):
        return F.scaled_dot_product_attention(*(t.transpose(1, 2) for t in (q, k, v))).transpose(1, 2)

    _fake_flash_attn(monkeypatch, sdpa)
    result = flash_attn.check_flash_attn(_ctx("cpu"))
    assert result.status is Status.PASS, result.reason
    assert result.figures["max_abs_err"] <= flash_attn.TOLERANCE


def test_flash_attn_wrong_or_other_errors_are_warns(monkeypatch):
    _fake_flash_attn(monkeypatch, lambda q, k, v: q * 0 + 1)
    wrong = flash_attn.check_flash_attn(_ctx("cpu"))
    assert wrong.status is Status.WARN and "wrong" in wrong.reason and "recognised" not in wrong.figures

    def other(q, k, v):
        raise RuntimeError("FlashAttention only supports Ampere GPUs or newer.")

    _fake_flash_attn(monkeypatch, other)
    failed = flash_attn.check_flash_attn(_ctx("cpu"))
    assert failed.status is Status.WARN and "Ampere" in failed.reason


def test_flash_attn_not_installed_or_no_device_skips(monkeypatch):
    monkeypatch.setitem(sys.modules, "flash_attn", None)  # import raises ModuleNotFoundError
    assert flash_attn.check_flash_attn(_ctx("cuda")).status is Status.SKIP
    assert flash_attn.check_flash_attn(_ctx(None)).status is Status.SKIP


def test_flash_attn_import_that_fails_with_the_sm121_message_is_recognised(monkeypatch):
    class Failing(types.ModuleType):
        def __getattr__(self, name):
            raise ImportError(FLASH_SM121)

    monkeypatch.setitem(sys.modules, "flash_attn", Failing("flash_attn"))
    result = flash_attn.check_flash_attn(_ctx("cuda"))
    assert result.status is Status.WARN and result.figures["recognised"]["running_on"] == "sm121"
    assert result.reason.startswith("flash-attn is installed, but its kernels are built for sm80-sm100")
