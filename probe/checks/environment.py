"""Check: the image's required environment (probe/required_env.py) is in place.

Inside the DGX Spark image every variable is set and points at CUDA 13.0, so this
passes there; outside the image (a laptop, CI) the variables are informational and
a mismatch is a WARN, never a FAIL.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from probe.facts import (
    RunCommand,
    default_run_command,
    nvcc_command,
    parse_nvcc_release,
)
from probe.registry import ProbeContext
from probe.required_env import EXPECTED_NVCC_RELEASE, REQUIRED_ENV
from probe.result import CheckResult, Status

NAME = "environment"
TITLE = "Required environment (image settings)"


def _same(expected: str, actual: str) -> bool:
    if expected.startswith("/"):
        return os.path.normpath(actual.strip()) == os.path.normpath(expected)
    return actual.strip() == expected


def compare_required_env(environ: Mapping[str, str]) -> list[dict[str, Any]]:
    """One row per REQUIRED_ENV var: {name, expected, actual, ok} (actual None = unset)."""
    rows = []
    for var in REQUIRED_ENV:
        actual = environ.get(var.name)
        rows.append(
            {
                "name": var.name,
                "expected": var.expected,
                "actual": actual,
                "ok": actual is not None and _same(var.expected, actual),
            }
        )
    return rows


def check_environment(
    ctx: ProbeContext,
    environ: Mapping[str, str] | None = None,
    run_command: RunCommand = default_run_command,
    is_file: Callable[[str], bool] = os.path.isfile,
    is_dir: Callable[[str], bool] = os.path.isdir,
) -> CheckResult:
    """Expected vs actual for each required var, CUDACXX exists, nvcc says 13.0, CUDA_HOME exists."""
    del ctx  # this check reads the process environment only
    environ = os.environ if environ is None else environ
    rows = compare_required_env(environ)

    cudacxx = environ.get("CUDACXX")
    cudacxx_exists = bool(cudacxx) and is_file(cudacxx)
    cuda_home = environ.get("CUDA_HOME")
    cuda_home_exists = bool(cuda_home) and is_dir(cuda_home)

    nvcc = nvcc_command(environ)
    try:
        outcome = run_command([nvcc, "--version"])
    except Exception as err:  # noqa: BLE001 - a faulty runner is a finding, not a crash
        outcome = None
        runner_error: str | None = f"{type(err).__name__}: {err}"
    else:
        runner_error = None
    if outcome is None:
        nvcc_release, nvcc_error = None, runner_error or f"{nvcc} could not be run (not found or timed out)"
    elif outcome[0] != 0:
        nvcc_release, nvcc_error = None, f"{nvcc} --version exited {outcome[0]}"
    else:
        nvcc_release = parse_nvcc_release(outcome[1])
        nvcc_error = None if nvcc_release else f"{nvcc} --version printed no release"
    nvcc_ok = nvcc_release == EXPECTED_NVCC_RELEASE

    problems = []
    unset = [row["name"] for row in rows if row["actual"] is None]
    different = [row["name"] for row in rows if row["actual"] is not None and not row["ok"]]
    if unset:
        problems.append("unset: " + ", ".join(unset))
    if different:
        problems.append("different from expected: " + ", ".join(different))
    if cudacxx and not cudacxx_exists:
        problems.append(f"CUDACXX {cudacxx} does not exist")
    if cuda_home and not cuda_home_exists:
        problems.append(f"CUDA_HOME {cuda_home} does not exist")
    if not nvcc_ok:
        problems.append(
            f"nvcc release {nvcc_release} (expected {EXPECTED_NVCC_RELEASE})"
            if nvcc_release
            else (nvcc_error or "nvcc release unknown")
        )

    figures = {
        "vars": rows,
        "cudacxx_exists": cudacxx_exists,
        "cuda_home_exists": cuda_home_exists,
        "nvcc": {
            "command": nvcc,
            "release": nvcc_release,
            "expected_release": EXPECTED_NVCC_RELEASE,
            "ok": nvcc_ok,
            "error": nvcc_error,
        },
    }
    if not problems:
        return CheckResult(
            name=NAME,
            title=TITLE,
            status=Status.PASS,
            reason=f"all {len(rows)} required vars match; nvcc release {nvcc_release}",
            figures=figures,
        )
    return CheckResult(
        name=NAME,
        title=TITLE,
        status=Status.WARN,
        reason="; ".join(problems) + " (the image sets these; outside it they are informational)",
        figures=figures,
    )
