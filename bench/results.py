"""bench.json: plain dataclasses with a schema version. Raw samples first; summaries derived."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.analyse.stats import Sample

# 2: per-text failures (text_failures, Measurement.excluded, QualityRecord.excluded) and
#    repeated passes at the best throughput setting (params "repeat").
BENCH_SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Measurement:
    """One scenario of one backend on one text set, with every raw sample.

    samples: per-call latency in ms (single, batch, concurrency) or per-pass wall
    time in ms (throughput). items/tokens: what one sample covers.
    """

    backend: str
    text_set: str
    scenario: str  # "single" | "batch" | "throughput" | "concurrency"
    params: dict[str, Any]
    samples: tuple[Sample, ...]
    items_per_sample: int
    tokens_per_sample: float | None
    wall_s: float
    overhead_ms: tuple[float, ...] = ()  # caller wall minus backend-internal time, per call
    notes: tuple[str, ...] = ()
    # Indices of the set's texts left out of this measurement: per-text failures of this
    # backend or of a backend measured before it (see TextFailure); the rest were embedded.
    excluded: tuple[int, ...] = ()

    @property
    def key(self) -> str:
        detail = ",".join(f"{k}={v}" for k, v in sorted(self.params.items()))
        return f"{self.backend}|{self.text_set}|{self.scenario}|{detail}"


@dataclass(frozen=True)
class TruncationRecord:
    """Tokens each text had under the model's tokenizer vs what the backend says it consumed."""

    backend: str
    text_set: str
    limit: int | None  # the backend's max tokens, where known
    limit_source: str
    expected_tokens: tuple[int, ...]
    reported_tokens: tuple[int | None, ...]  # None: not reported per text (batch total matched)
    truncated: tuple[int, ...]  # indices of texts the backend cut


@dataclass(frozen=True)
class TextFailure:
    """A text this backend cannot embed: its call failed, alone, twice, with the same error.

    Found by screening each set before timing (bench/measure/screening.py); the scenarios then run
    on the other texts. An infrastructure failure (unreachable, timeout, dropped connection)
    is never one of these: that backend is not measured at all.
    """

    backend: str
    text_set: str
    index: int  # into the set's texts (bench.json workload)
    error: str
    http_status: int | None  # the server's answer, where there was one


@dataclass(frozen=True)
class ScreenRecord:
    """One backend's screening of one text set (bench/measure/screening.py), kept for --resume."""

    backend: str
    text_set: str
    failures: tuple[TextFailure, ...]
    flaky: tuple[int, ...]  # failed alone once, then worked: kept in the set
    calls: int
    texts: int  # texts screened (the whole set)
    batch_errors: tuple[str, ...] = ()  # batches that failed although each of their texts alone worked

    @property
    def failed_indices(self) -> frozenset[int]:
        return frozenset(f.index for f in self.failures)

    @property
    def every_text_failed(self) -> bool:
        return self.texts > 0 and len(self.failures) == self.texts


@dataclass(frozen=True)
class QualityRecord:
    control: str
    treatment: str
    text_set: str
    cosine: dict[str, Any]
    spearman: dict[str, Any]
    neighbours: dict[str, Any]
    nonfinite_control: tuple[int, ...]
    nonfinite_treatment: tuple[int, ...]
    per_text_cosine: tuple[float, ...]  # raw values behind `cosine` (NaN where a vector was not finite)
    excluded: tuple[int, ...] = ()  # texts either side could not embed: left out of every statistic


@dataclass(frozen=True)
class RetrievalRecord:
    backend: str
    dataset: str
    ndcg_at_10: float | None
    recall_at_10: float | None
    queries: int
    per_query: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackendRecord:
    name: str
    description: dict[str, Any]
    load: dict[str, Any] | None
    memory: tuple[dict[str, Any], ...]
    error: str | None  # why this backend could not be (fully) measured


@dataclass(frozen=True)
class Failure:
    backend: str
    text_set: str | None
    scenario: str
    error: str
    # "calls": timed calls of a measurement that failed (its samples count them); "" for anything
    # else (a setting that did not fit, a backend that stopped, a load that failed).
    kind: str = ""
