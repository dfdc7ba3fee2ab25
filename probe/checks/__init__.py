"""The probe's checks, in the order they run. A new check: one module here, one line below."""

from __future__ import annotations

from probe.checks.attention import check_attention
from probe.checks.ceilings import check_ceilings
from probe.checks.environment import check_environment
from probe.checks.flash_attn import check_flash_attn
from probe.checks.gpu import check_gpu
from probe.checks.kernels import check_kernels
from probe.checks.ollama_server import check_ollama
from probe.checks.st_smoke import check_sentence_transformers
from probe.checks.torch_build import check_torch_build
from probe.checks.triton_compile import check_triton
from probe.registry import Check

ALL_CHECKS: tuple[Check, ...] = (
    Check("environment", "Required environment (image settings)", check_environment),
    Check("gpu", "GPU and driver (NVML)", check_gpu),
    Check("torch_build", "PyTorch build covers the device", check_torch_build),
    Check("kernels", "Kernel smoke tests vs float64", check_kernels),
    Check("ceilings", "Roofline ceilings: memory bandwidth (and matmul on a CPU)", check_ceilings),
    Check("attention", "SDPA attention backends on BGE-M3 shapes", check_attention),
    Check("flash_attn", "flash-attn package (optional)", check_flash_attn),
    Check("triton", "Triton / torch.compile", check_triton),
    Check("sentence_transformers", "sentence-transformers model smoke", check_sentence_transformers),
    Check("ollama", "Ollama server and model", check_ollama),
)

# Checks whose failure means native PyTorch cannot serve the model on this machine.
# The others (environment, Triton, Ollama) fail without making the native path impossible.
CRITICAL_CHECKS: frozenset[str] = frozenset(
    {"gpu", "torch_build", "kernels", "attention", "sentence_transformers"}
)
