"""probe/facts.py: small never-raising fact functions, a faked command runner, redaction."""

from __future__ import annotations

import dataclasses
import json
import sys

import pytest

from probe import facts
from probe.output import to_jsonable

NVCC_13 = """nvcc: NVIDIA (R) Cuda compiler driver
Copyright (c) 2005-2025 NVIDIA Corporation
Built on Wed_Aug_20_01:58:59_PM_PDT_2025
Cuda compilation tools, release 13.0, V13.0.88
Build cuda_13.0.r13.0/compiler.36424714_0
"""


class FakeRunner:
    """Answers `nvcc --version` with canned text and records what was run."""

    def __init__(self, answer):
        self.answer = answer
        self.calls: list[list[str]] = []

    def __call__(self, argv):
        self.calls.append(list(argv))
        if isinstance(self.answer, Exception):
            raise self.answer
        if argv[-1] == "--version":
            return self.answer
        return None  # nvidia-smi and anything else: "not installed"


def test_parse_nvcc_release():
    assert facts.parse_nvcc_release(NVCC_13) == "13.0"
    assert facts.parse_nvcc_release("Cuda compilation tools, release 12.8, V12.8.93") == "12.8"
    assert facts.parse_nvcc_release("command not found") is None
    assert facts.parse_nvcc_release(None) is None


@pytest.mark.parametrize(
    ("answer", "expected"),
    [((0, NVCC_13), "13.0"), ((127, "nvcc: not found"), None), (None, None), (OSError("boom"), None)],
)
def test_nvcc_release_through_a_fake_runner_never_raises(answer, expected):
    runner = FakeRunner(answer)
    assert facts.nvcc_release(runner, "/opt/cuda/bin/nvcc") == expected
    assert runner.calls == [["/opt/cuda/bin/nvcc", "--version"]]


def test_nvcc_command_prefers_cudacxx():
    assert facts.nvcc_command({"CUDACXX": "/usr/local/cuda-13.0/bin/nvcc"}) == "/usr/local/cuda-13.0/bin/nvcc"
    assert facts.nvcc_command({}) == "nvcc"


def test_default_run_command_returns_rc_and_output_or_none():
    assert facts.default_run_command([sys.executable, "-c", "print('hi')"]) == (0, "hi\n")
    rc, _ = facts.default_run_command([sys.executable, "-c", "import sys; sys.exit(3)"])
    assert rc == 3
    assert facts.default_run_command(["/nonexistent/definitely-not-a-command"]) is None
    assert (
        facts.default_run_command([sys.executable, "-c", "import time; time.sleep(5)"], timeout_s=0.2) is None
    )


def test_env_vars_of_interest_redacts_secrets_and_ignores_the_rest():
    environ = {
        "CUDA_HOME": "/usr/local/cuda-13.0",
        "TORCH_CUDA_ARCH_LIST": "12.1a",
        "HF_TOKEN": "hf_abc",
        "OLLAMA_API_KEY": "sk-1",
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
        "HF_HUB_PASSWORD": "pw",
        "TORCH_SECRET_THING": "s",
        "HOME": "/root",
        "AWS_SECRET_ACCESS_KEY": "not of interest at all",
    }
    picked = facts.env_vars_of_interest(environ)
    assert picked == {
        "CUDA_HOME": "/usr/local/cuda-13.0",
        "HF_HUB_PASSWORD": "***",
        "HF_TOKEN": "***",
        "NVIDIA_DRIVER_CAPABILITIES": "compute,utility",
        "OLLAMA_API_KEY": "***",
        "TORCH_CUDA_ARCH_LIST": "12.1a",
        "TORCH_SECRET_THING": "***",
    }


def test_format_cuda_driver_version():
    assert facts.format_cuda_driver_version(13000) == "13.0"
    assert facts.format_cuda_driver_version(12080) == "12.8"
    assert facts.format_cuda_driver_version(0) is None
    assert facts.format_cuda_driver_version(None) is None


def test_parse_meminfo_converts_kb_to_bytes():
    text = (
        "MemTotal:       131072000 kB\nMemAvailable:    65536000 kB\nHugePages_Total:       0\nbogus line\n"
    )
    assert facts.parse_meminfo(text) == {
        "MemTotal": 131072000 * 1024,
        "MemAvailable": 65536000 * 1024,
        "HugePages_Total": 0,
    }
    assert facts.read_meminfo("/nonexistent/meminfo") is None


def test_collect_facts_with_fake_runner_matches_this_python():
    import platform

    import torch

    runner = FakeRunner((0, NVCC_13))
    environ = {"CUDACXX": "/x/nvcc", "HF_TOKEN": "secret-value", "CUDA_HOME": "/x"}
    got = facts.collect_facts(run_command=runner, environ=environ)

    assert got.nvcc_release == "13.0"
    assert ["/x/nvcc", "--version"] in runner.calls
    assert got.env_vars == {"CUDACXX": "/x/nvcc", "CUDA_HOME": "/x", "HF_TOKEN": "***"}
    assert "secret-value" not in json.dumps(to_jsonable(got))
    assert got.python_version == platform.python_version()
    assert got.machine == platform.machine()
    assert got.torch_version == torch.__version__
    assert got.torch_cuda_version == torch.version.cuda
    assert got.torch_is_cpu_build is (torch.version.cuda is None)
    assert got.cuda_available is torch.cuda.is_available()
    assert got.torch_arch_list == tuple(torch.cuda.get_arch_list())
    assert got.sentence_transformers_version is not None
    assert got.ollama_client_version is not None
    if not torch.cuda.is_available():
        assert got.device_name is None and got.device_capability is None and got.device_count == 0


def test_collect_facts_is_frozen_and_serialisable():
    got = facts.collect_facts(run_command=FakeRunner(None), environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        got.torch_version = "x"  # type: ignore[misc]
    assert got.nvcc_release is None
    json.dumps(to_jsonable(got), allow_nan=False)


def test_facts_survive_a_broken_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    got = facts.collect_facts(run_command=FakeRunner(None), environ={})
    assert got.torch_version is None
    assert got.torch_cuda_version is None
    assert got.cuda_available is None
    assert got.torch_is_cpu_build is None
    assert facts.detect_cuda_device() is None


def test_detect_cuda_device_agrees_with_torch():
    import torch

    expected = "cuda" if torch.cuda.is_available() and torch.cuda.device_count() > 0 else None
    assert facts.detect_cuda_device() == expected


def test_package_version_unknown_is_none():
    assert facts.package_version("definitely-not-an-installed-distribution-xyz") is None
    assert facts.package_version("numpy") is not None
