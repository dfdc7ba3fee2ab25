"""Shared by the reliability tests (issue 5): a tiny profile, a config, strict JSON reading,
and a reporter that injects faults when a given bench step starts."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.config import PROFILES, BenchConfig, Profile
from bench.measure.state import Reporter


def tiny_profile(model: str, **changes: Any) -> Profile:
    """A profile of a few seconds on a CPU: one set of 4 short texts, every scenario once."""
    sizes = dict(
        model=model, ollama_model="bge-m3", set_sizes={"short": 4}, warmup_calls=1, single_latency_calls=2,
        batch_latency_size=2, batch_latency_repeats=1, batch_sizes=(1, 4), concurrency_levels=(2,),
        concurrency_requests=2, quality_pairs=5,
    )
    # Optional sweep passes are off here, where the profile has them.
    optional = {"token_budgets": (), "length_sorted_sweep": False}
    known = {f.name for f in dataclasses.fields(Profile)}
    sizes.update({k: v for k, v in optional.items() if k in known})
    return dataclasses.replace(PROFILES["smoke"], **{**sizes, **changes})


def config_for(profile: Profile, results: Path, backends, host: str = "http://127.0.0.1:9",
               **kw: Any) -> BenchConfig:
    kw.setdefault("timeout_s", 10.0)
    kw.setdefault("fresh_process_cold_load", False)  # seconds per native load; test_bench_run measures it
    return BenchConfig(profile=profile, backends=tuple(backends), results_dir=results, ollama_host=host,
                       device="cpu", **kw)


def _no_constant(name: str) -> Any:
    raise ValueError(f"non-standard JSON constant {name}")


def strict_json(path: Path) -> dict[str, Any]:
    """Parse as strict JSON: NaN/Infinity literals are an error (they must be strings)."""
    return json.loads(path.read_text(encoding="utf-8"), parse_constant=_no_constant)


class HookReporter(Reporter):
    """Calls `on_task(description)` as each bench step starts, and keeps the notes."""

    def __init__(self, on_task: Callable[[str], None] = lambda description: None) -> None:
        self.on_task = on_task
        self.notes: list[str] = []
        self.tasks: list[str] = []

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        self.tasks.append(description)
        self.on_task(description)
        yield lambda n: None

    def note(self, message: str) -> None:
        self.notes.append(message)
