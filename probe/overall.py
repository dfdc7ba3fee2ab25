"""From check results to the seed ticket's answer: compatible / with workarounds / incompatible."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

from probe.result import CheckResult, Overall, OverallStatus, Status


def derive_overall(
    results: Sequence[CheckResult], critical: Collection[str], target_probed: bool
) -> OverallStatus:
    """The overall status. Without a CUDA device the target was not probed, whatever passed on CPU.

    "incompatible" only when a critical check FAILED on the device (checks fail only for what
    the device cannot do); a critical check that could not run (SKIP, e.g. the model is not
    downloaded) leaves the answer open: "not fully probed".
    """
    workarounds = tuple(w for r in results for w in r.workarounds)
    failed_critical = [r for r in results if r.name in critical and r.status is Status.FAIL]
    failures = "; ".join(f"{r.name}: {r.reason}" for r in failed_critical)
    if not target_probed:
        # A failure on the CPU (e.g. the model is not in the cache) says nothing about sm_121.
        reason = (
            "no CUDA device visible: GPU checks were skipped and CPU-side checks ran on the CPU, "
            "which says nothing about sm_121. Run it on the Spark: docker compose run probe"
        )
        if failures:
            reason += f". Failed on the CPU: {failures}"
        return OverallStatus(Overall.NOT_PROBED, reason, workarounds, target_probed)
    if failed_critical:
        return OverallStatus(Overall.INCOMPATIBLE, failures, workarounds, target_probed)
    not_run = [r for r in results if r.name in critical and r.status is Status.SKIP]
    if not_run:
        reason = "; ".join(f"{r.name}: {r.reason}" for r in not_run)
        return OverallStatus(Overall.INCOMPLETE, f"critical checks did not run: {reason}", workarounds,
                             target_probed)
    issues = [r for r in results if r.status in (Status.WARN, Status.FAIL)]
    if workarounds:
        return OverallStatus(
            Overall.COMPATIBLE_WITH_WORKAROUNDS,
            "native PyTorch runs with these settings: " + "; ".join(workarounds),
            workarounds,
            target_probed,
        )
    reason = "all critical checks passed"
    if issues:
        reason += "; non-blocking: " + ", ".join(f"{r.name} ({r.status.value})" for r in issues)
    return OverallStatus(Overall.COMPATIBLE, reason, workarounds, target_probed)


def merge_bench_settings(results: Sequence[CheckResult]) -> dict[str, Any]:
    """Settings every check asks the bench to apply, in check order (a later check wins)."""
    merged: dict[str, Any] = {}
    for result in results:
        merged.update(result.settings)
    return merged
