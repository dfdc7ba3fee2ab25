"""The environment the DGX Spark image must carry: one list, read by the probe's
environment check and by the test that checks docker/Dockerfile sets exactly these."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RequiredVar:
    name: str
    expected: str
    why: str


REQUIRED_ENV: tuple[RequiredVar, ...] = (
    RequiredVar(
        "TORCH_CUDA_ARCH_LIST",
        "12.1a",
        "extensions built in the image (e.g. flash-attn) target GB10's sm_121a",
    ),
    RequiredVar(
        "CUDACXX",
        "/usr/local/cuda-13.0/bin/nvcc",
        "CUDA 13.0 is the first toolkit whose nvcc targets sm_121",
    ),
    RequiredVar(
        "CUDA_HOME",
        "/usr/local/cuda-13.0",
        "torch.utils.cpp_extension and Triton find the toolkit here",
    ),
    RequiredVar(
        "TORCH_ALLOW_TF32_CUBLAS_OVERRIDE",
        "0",
        "NVIDIA's PyTorch images set it to 1, which makes TF32 the default fp32 matmul precision "
        "(older torch: whatever allow_tf32 says); 0 keeps fp32 IEEE by default (NVIDIA_TF32_OVERRIDE stays unset)",
    ),
)

EXPECTED_NVCC_RELEASE = "13.0"
