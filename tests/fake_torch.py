"""Enough of `torch` for check_torch_build's device path: a GB10 behind a chosen wheel, without a
GPU. Shared by the torch_build, sm_121 pitfall and failure-cause tests."""

from __future__ import annotations

import types
import warnings

# What torch 2.9 prints from _check_cubins for a wheel without a cubin this GPU can run.
NOT_COMPATIBLE = ("\nNVIDIA GB10 with CUDA capability sm_121 is not compatible with the current PyTorch "
                  "installation.\nThe current PyTorch install supports CUDA capabilities sm_80 sm_90.")


class FakeCudaTorch:
    """`warning`: what PyTorch says at CUDA init, from the hook named `warned_by` (torch 2.9's
    `_check_cubins`, 2.13's `_check_capability`); `smoke_error`: what a tiny kernel raises."""

    def __init__(self, arch_list, *, capability=(12, 1), smoke_error=None, warning: str | None = None,
                 warned_by: str = "_check_cubins", version: str = "2.9.0+cu130"):
        import torch as real

        self.__version__ = version
        self.float32 = real.float32
        self.version = types.SimpleNamespace(cuda="13.0")
        self.backends = types.SimpleNamespace(cudnn=types.SimpleNamespace(version=lambda: 91300))

        def warn_at_init():
            if warning is not None:
                warnings.warn(warning, UserWarning, stacklevel=2)

        self.cuda = types.SimpleNamespace(
            get_arch_list=lambda: list(arch_list),
            init=lambda: None,
            current_device=lambda: 0,
            get_device_capability=lambda index=0: capability,
            get_device_name=lambda index=0: "NVIDIA GB10",
            synchronize=lambda: None,
            **{warned_by: warn_at_init},
        )

        def arange(n, device=None, dtype=None):
            if smoke_error is not None:
                raise RuntimeError(smoke_error)
            return real.arange(n, dtype=dtype)

        self.arange = arange
