"""`bench run --model / --ollama-model / --sizes`: parsed, applied to the profile, refused in one line."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest
from click.testing import CliRunner

from bench.cli import main as bench_cli
from bench.config import (
    PROFILES,
    BenchConfig,
    ConfigError,
    override_profile,
    parse_sizes,
)


def test_sizes_parse_any_subset_of_the_sets():
    assert parse_sizes("short=100,long=100,documents=10") == {"short": 100, "long": 100, "documents": 10}
    assert parse_sizes(" documents = 4 ") == {"documents": 4}


@pytest.mark.parametrize("text, says", [
    ("short", "expected SET=N items"),
    ("=5", "expected SET=N items"),
    ("", "expected SET=N items"),
    ("short=5,", "expected SET=N items"),
    ("tiny=5", "unknown text set 'tiny'; known: short, long, documents"),
    ("short=5,short=6", "given twice"),
    ("short=five", "'five' is not a whole number"),
    ("short=1.5", "'1.5' is not a whole number"),
    ("short=0", "needs at least 1 text, got 0"),
    ("long=-3", "needs at least 1 text, got -3"),
])
def test_bad_sizes_say_what_is_wrong(text, says):
    with pytest.raises(ConfigError, match=says.replace("(", r"\(")):
        parse_sizes(text)


def test_overrides_apply_to_the_profile_and_keep_the_rest():
    td073 = PROFILES["td073"]
    changed = override_profile(td073, {"model": "/models/standin", "ollama_model": "bge-m3:567m",
                                       "sizes": {"documents": 10}})
    assert (changed.model, changed.ollama_model) == ("/models/standin", "bge-m3:567m")
    assert changed.set_sizes == {"short": 1000, "long": 1000, "documents": 10}
    assert replace(changed, model=td073.model, ollama_model=td073.ollama_model,
                   set_sizes=td073.set_sizes) == td073
    assert override_profile(td073, {}) == td073


@pytest.mark.parametrize("argv, says", [
    (["--sizes", "short=0"], "Error: --sizes: short: needs at least 1 text, got 0."),
    (["--sizes", "short"], "Error: --sizes: expected SET=N items separated by commas "
                           "(e.g. short=100,long=100,documents=10), got 'short'."),
    (["--sizes", "short=5", "--texts", "corpus.jsonl"],
     "Error: --sizes sizes the generated sets; with --texts the file's texts are the one set. Drop one."),
    (["--openai-url", "http://127.0.0.1:8080/v1?api_key=secret"],
     "Error: --openai-url takes no query string (?...); pass an API key in OPENAI_API_KEY."),
])
def test_bad_options_end_in_one_line_and_exit_2(tmp_path, argv, says):
    outcome = CliRunner().invoke(bench_cli, ["run", "--results", str(tmp_path), *argv])
    assert outcome.exit_code == 2
    assert outcome.output.strip().splitlines() == [says]
    assert not (tmp_path / "bench.json").exists()


def test_resume_refuses_results_of_another_model(tmp_path, small_model_path, monkeypatch):
    """With --model and --ollama-model on the command line, resuming must not mix two models' figures."""
    from fake_backends import FakeBackend, FakeBehaviour

    import bench.measure.runner
    from probe.output import ResultsFileError

    monkeypatch.setitem(bench.measure.runner.BACKENDS, "fake-native", lambda s: FakeBackend("fake-native", FakeBehaviour()))
    profile = replace(PROFILES["smoke"], model=small_model_path, set_sizes={"short": 3, "long": 1, "documents": 1},
                      warmup_calls=0, single_latency_calls=1, batch_latency_repeats=1, batch_sizes=(1,),
                      concurrency_levels=(1,), concurrency_requests=1, token_budgets=())
    config = BenchConfig(profile=profile, backends=("fake-native",), results_dir=tmp_path,
                         ollama_host="http://127.0.0.1:9", timeout_s=5.0)
    asyncio.run(bench.measure.runner.run_bench(config))
    other = replace(config, profile=replace(profile, ollama_model="bge-m3:567m"), resume=True,
                    overrides={"ollama_model": "bge-m3:567m"})
    with pytest.raises(ResultsFileError, match="Ollama model 'all-minilm'; resume needs the same"):
        asyncio.run(bench.measure.runner.run_bench(other))
