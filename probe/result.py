"""The typed result every probe check returns, and the report they add up to.

Plain frozen dataclasses: no Markdown here (that lives in templates/), no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

PROBE_SCHEMA_VERSION = 1


class Status(str, Enum):
    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: a status, a one-line reason and what it measured.

    `settings` are runtime settings the bench must apply because of this check
    (e.g. {"enable_flash_sdp": False}); `workarounds` name them for people.
    """

    name: str
    title: str
    status: Status
    reason: str
    figures: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    workarounds: tuple[str, ...] = ()
    duration_s: float | None = None


class Overall(str, Enum):
    """The seed ticket's wording for the probe's answer."""

    COMPATIBLE = "compatible"
    COMPATIBLE_WITH_WORKAROUNDS = "compatible with workarounds"
    INCOMPATIBLE = "incompatible"
    NOT_PROBED = "target not probed"
    # On the GPU, but a critical check could not run for a reason that is not the GPU
    # (e.g. the model is not downloaded): no answer either way.
    INCOMPLETE = "not fully probed"


@dataclass(frozen=True)
class OverallStatus:
    status: Overall
    reason: str
    workarounds: tuple[str, ...]
    target_probed: bool

    @property
    def exit_code(self) -> int:
        return 1 if self.status is Overall.INCOMPATIBLE else 0


@dataclass(frozen=True)
class ProbeReport:
    schema_version: int
    tool_version: str
    created_at: str
    config: dict[str, Any]
    facts: dict[str, Any]
    checks: tuple[CheckResult, ...]
    overall: OverallStatus
    bench_settings: dict[str, Any]
    kind: str = "probe"
