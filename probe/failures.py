"""Whose fault is a failed GPU call: the device's, or something around it?

One rule for every probe check: only an error that blames the GPU or its kernels is evidence
that the native path is incompatible (a FAIL). Memory other processes hold (a Spark's 128 GB are
shared with the RAG team's LLM), a missing runtime library, a model not downloaded or a bug in
the probe make a check "not run" (SKIP, with the fix), which the overall status reports as "not
fully probed" and the decision as Inconclusive, never as "Close TD".
"""

from __future__ import annotations

# Words in an exception's whole text (any line) that say the device is short of something
# other processes hold or the runtime is missing: "not run", with the fix, never a FAIL.
_RESOURCE_MARKERS = ("out of memory", "busy or unavailable", "libcudart", "libcuda.so", "cannot open shared object",
                     # cuBLAS/cuDNN cannot allocate their workspace or handle: memory again, not kernels
                     # (NOT_INITIALIZED is usually that too; when it is a cuDNN build without this
                     # GPU, "not run" still says so and never calls the GPU incompatible)
                     "alloc_failed", "status_not_initialized")
# ... and that put the failure on the GPU or its kernels: a FAIL ("incompatible").
_DEVICE_MARKERS = ("no kernel image", "cublas_status", "cudnn_status", "device-side assert", "illegal memory access",
                   "illegal instruction", "misaligned address", "unspecified launch failure", "cuda error",
                   "not compatible with the current pytorch installation", "no available kernel",
                   "only supports ampere", "sm_121", "ptxas", "nvrtc")


def failure_cause(err: BaseException | str) -> str:
    """"device" when the whole error text blames the GPU or its kernels, "resource" when the device
    is busy or out of memory (other processes hold it on a Spark's unified memory) or the CUDA
    runtime is missing, else "other" (missing files, hub unreachable, gated repo, a library bug).

    Only "device" is evidence about the GPU: the others make the check "not run", never a FAIL
    that would call the GPU incompatible.
    """
    text = (err if isinstance(err, str) else f"{type(err).__name__}: {err}").lower()
    if any(m in text for m in _RESOURCE_MARKERS) or text.startswith("outofmemoryerror"):
        return "resource"
    if text.startswith("acceleratorerror") or any(m in text for m in _DEVICE_MARKERS):
        return "device"
    return "other"


def blames_device(err: BaseException | str) -> bool:
    return failure_cause(err) == "device"
