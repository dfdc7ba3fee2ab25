"""The list of probe checks and the loop that runs them; no check may raise out of it."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from probe.result import CheckResult, Status


@dataclass
class ProbeContext:
    """What checks may read: the run's settings plus values earlier checks shared.

    `shared` lets e.g. the kernel check hand its measured matmul peak to later
    consumers without a second measurement.
    """

    model: str
    ollama_host: str
    ollama_model: str
    device: str | None  # "cuda" when a CUDA device is usable, else None
    quick: bool = False
    shared: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    run: Callable[[ProbeContext], CheckResult]


def run_checks(
    checks: Sequence[Check],
    ctx: ProbeContext,
    on_result: Callable[[CheckResult], None] | None = None,
) -> list[CheckResult]:
    """Run each check; an exception becomes that check's result only: FAIL when its text blames
    the GPU, else SKIP ("not run": a crashed check is no evidence that the GPU is incompatible)."""
    from probe.failures import blames_device

    results = []
    for check in checks:
        started = time.perf_counter()
        try:
            result = check.run(ctx)
        except Exception as err:  # noqa: BLE001 - a check must never stop the probe
            last = traceback.extract_tb(err.__traceback__)[-1]
            raised = f"check raised {type(err).__name__}: {err} (at {last.filename}:{last.lineno})"
            on_device = blames_device(err)
            result = CheckResult(
                name=check.name,
                title=check.title,
                status=Status.FAIL if on_device else Status.SKIP,
                reason=raised if on_device else f"not run: {raised}; please report this probe bug",
            )
        result = replace(result, duration_s=round(time.perf_counter() - started, 3))
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results
