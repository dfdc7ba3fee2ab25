"""What a run has measured so far (RunState, written as bench.json after every step and read
back by --resume), the vectors kept beside it, and the texts each backend is timed on."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from bench import __version__
from bench.analyse.stats import Sample, summarize
from bench.config import config_differences
from bench.results import (
    BENCH_SCHEMA_VERSION,
    BackendRecord,
    Failure,
    Measurement,
    QualityRecord,
    RetrievalRecord,
    ScreenRecord,
    TextFailure,
    TruncationRecord,
)
from probe.output import (
    ResultsFileError,
    read_results_json,
    to_jsonable,
    write_json_atomic,
)

BENCH_JSON = "bench.json"


VECTORS_DIR = "vectors"


class Reporter:
    """Progress sink. The CLI passes a rich-backed one; tests use this silent default."""

    @contextmanager
    def task(self, description: str, total: int) -> Iterator[Callable[[int], None]]:
        yield lambda n: None

    def note(self, message: str) -> None:
        return None


@dataclasses.dataclass
class RunState:
    """Everything measured so far; `payload()` is what bench.json holds."""

    config: dict[str, Any]
    environment: dict[str, Any]
    workload: dict[str, Any]
    backends: dict[str, BackendRecord] = dataclasses.field(default_factory=dict)
    measurements: list[Measurement] = dataclasses.field(default_factory=list)
    truncation: list[TruncationRecord] = dataclasses.field(default_factory=list)
    quality: list[QualityRecord] = dataclasses.field(default_factory=list)
    retrieval: list[RetrievalRecord] = dataclasses.field(default_factory=list)
    failures: list[Failure] = dataclasses.field(default_factory=list)
    screening: list[ScreenRecord] = dataclasses.field(default_factory=list)
    status: str = "running"
    created_at: str = dataclasses.field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    # Measurements are frozen: serialise and summarise each once, not at every save
    # (the bootstrap in summarize made each save cost O(all samples so far)).
    _measurement_json: dict[str, tuple[Measurement, dict[str, Any]]] = dataclasses.field(
        default_factory=dict, repr=False)

    def done_keys(self) -> set[str]:
        return {m.key for m in self.measurements}

    def payload(self) -> dict[str, Any]:
        return {
            "kind": "bench",
            "schema_version": BENCH_SCHEMA_VERSION,
            "tool_version": __version__,
            "status": self.status,
            "created_at": self.created_at,
            "updated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "config": self.config,
            "environment": self.environment,
            "workload": self.workload,
            "backends": {name: to_jsonable(rec) for name, rec in self.backends.items()},
            "measurements": [self._measurement_payload(m) for m in self.measurements],
            "truncation": to_jsonable(self.truncation),
            "quality": to_jsonable(self.quality),
            "retrieval": to_jsonable(self.retrieval),
            "failures": to_jsonable(self.failures),
            "screening": to_jsonable(self.screening),
        }

    def screen_of(self, backend: str, text_set: str) -> ScreenRecord | None:
        return next((r for r in self.screening if (r.backend, r.text_set) == (backend, text_set)), None)

    def excluded_for(self, backend: str, text_set: str) -> tuple[int, ...]:
        """Texts left out of this backend's measurements on this set (see bench.analyse.figures.excluded_for)."""
        from bench.analyse.figures import excluded_for

        return excluded_for(to_jsonable(self.screening), backend, text_set)

    def _measurement_payload(self, m: Measurement) -> dict[str, Any]:
        cached = self._measurement_json.get(m.key)
        if cached is None or cached[0] is not m:
            cached = (m, {**to_jsonable(m), "key": m.key, "summary": to_jsonable(summarize(m.samples))})
            self._measurement_json[m.key] = cached
        return cached[1]


def save(state: RunState, results_dir: Path) -> Path:
    path = results_dir / BENCH_JSON
    write_json_atomic(path, state.payload())
    return path


def workload_digest(texts_by_set: dict[str, Sequence[str]]) -> str:
    digest = hashlib.sha256()
    for name, texts in sorted(texts_by_set.items()):
        digest.update(name.encode())
        for text in texts:
            digest.update(text.encode("utf-8", "surrogatepass"))
            digest.update(b"\0")
    return digest.hexdigest()[:16]


def restore_state(results_dir: Path, config_payload: dict[str, Any], digest: str) -> RunState:
    """Load a partial bench.json for --resume; refuse one from another config or workload."""
    data = read_results_json(results_dir / BENCH_JSON, "bench", BENCH_SCHEMA_VERSION)
    if data["workload"].get("digest") != digest:
        raise ResultsFileError(
            f"{results_dir / BENCH_JSON}: measured on other texts than this run's; "
            "resume needs the same profile, --texts and seed (or start over without --resume)."
        )
    if data["config"].get("profile", {}).get("name") != config_payload["profile"]["name"]:
        raise ResultsFileError(f"{results_dir / BENCH_JSON}: was run with another profile; resume needs the same one.")
    models = (data["config"].get("resolved_model"), data["config"].get("profile", {}).get("ollama_model"))
    if models != (config_payload["resolved_model"], config_payload["profile"]["ollama_model"]):
        raise ResultsFileError(f"{results_dir / BENCH_JSON}: was run with native model {models[0]!r} and Ollama "
                               f"model {models[1]!r}; resume needs the same --model and --ollama-model.")
    # Compared as JSON, as it was stored (tuples are lists there, paths strings).
    differences = config_differences(data["config"], json.loads(json.dumps(to_jsonable(config_payload))))
    if differences:
        shown = "; ".join(differences[:3]) + (f"; and {len(differences) - 3} more" if len(differences) > 3 else "")
        raise ResultsFileError(
            f"{results_dir / BENCH_JSON}: was run with other settings ({shown}); --resume continues only the "
            "same run: use the same options, or start over without --resume."
        )
    state = RunState(config=config_payload, environment=data["environment"], workload=data["workload"],
                     created_at=data["created_at"])
    for m in data["measurements"]:
        fields = {f.name for f in dataclasses.fields(Measurement)}
        kwargs = {k: v for k, v in m.items() if k in fields}
        kwargs["samples"] = tuple(Sample(**s) for s in m["samples"])
        kwargs["overhead_ms"] = tuple(m.get("overhead_ms", ()))
        kwargs["notes"] = tuple(m.get("notes", ()))
        kwargs["excluded"] = tuple(m.get("excluded", ()))
        state.measurements.append(Measurement(**kwargs))
    for name, rec in data["backends"].items():
        state.backends[name] = BackendRecord(name=name, description=rec["description"], load=rec["load"],
                                             memory=tuple(rec["memory"]), error=rec["error"])
    state.failures.extend(Failure(**f) for f in data["failures"])
    state.screening.extend(
        ScreenRecord(r["backend"], r["text_set"], tuple(TextFailure(**f) for f in r["failures"]),
                     tuple(r["flaky"]), r["calls"], r["texts"], tuple(r.get("batch_errors", ())))
        for r in data["screening"]
    )
    state.truncation.extend(
        TruncationRecord(**{**t, **{k: tuple(t[k]) for k in ("expected_tokens", "reported_tokens", "truncated")}})
        for t in data["truncation"]
    )
    state.retrieval.extend(RetrievalRecord(**r) for r in data["retrieval"])
    return state


def vectors_path(results_dir: Path, backend: str, text_set: str) -> Path:
    return results_dir / VECTORS_DIR / f"{backend}__{text_set}.npy"


def save_vectors(results_dir: Path, backend: str, text_set: str, vectors: np.ndarray) -> None:
    path = vectors_path(results_dir, backend, text_set)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npy")
    try:
        np.save(tmp, vectors)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def load_vectors(results_dir: Path, backend: str, text_set: str) -> np.ndarray | None:
    path = vectors_path(results_dir, backend, text_set)
    return np.load(path) if path.exists() else None


@dataclasses.dataclass(frozen=True)
class WorkingSet:
    """The texts of one set a backend is timed on: all but `excluded` (texts some backend could
    not embed, see bench.analyse.figures.excluded_for), in set order."""

    name: str
    indices: tuple[int, ...]  # into the whole set
    texts: list[str]
    tokens: list[int]
    set_tokens: tuple[int, ...]  # the whole set's token counts (for per-text records)
    excluded: tuple[int, ...]

    def mark(self, measurement: Measurement) -> Measurement:
        return dataclasses.replace(measurement, excluded=self.excluded)

    def full_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Working-set vectors placed at their set positions; NaN rows where a text was left out."""
        full = np.full((len(self.set_tokens), vectors.shape[1]), np.nan, dtype=vectors.dtype)
        full[list(self.indices)] = vectors
        return full

    def full_counts(self, reported: Sequence[int | None]) -> list[int | None]:
        counts: list[int | None] = [None] * len(self.set_tokens)
        for i, n in zip(self.indices, reported):
            counts[i] = n
        return counts


def format_params(params: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in params.items())
