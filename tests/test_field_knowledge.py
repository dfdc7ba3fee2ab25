"""Field knowledge (issue 10): upstream reports matched against what bench.json shows, and the
README's troubleshooting rows held to the same data file."""

from __future__ import annotations

from pathlib import Path

import pytest


def test_field_knowledge_rows_are_the_readmes_troubleshooting_rows():
    from bench.analyse.field_knowledge import known_issues

    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    for issue in known_issues():
        assert issue.readme_row() in readme, issue.id


def _bench_with(failures=(), truncation=(), version="0.31.0", longest=100):
    return {
        "backends": {"ollama": {"description": {"kind": "ollama", "server_version": version}},
                     "native-fp32": {"description": {"kind": "native"}}},
        "screening": [{"backend": "ollama", "text_set": "short", "flaky": [], "calls": 3,
                       "failures": [{"backend": "ollama", "text_set": "short", "index": i, "error": e,
                                     "http_status": 500} for i, e in failures]}],
        "failures": [], "truncation": list(truncation),
        "workload": {"sets": [{"name": "short", "token_counts": [50, longest]}]},
    }


@pytest.mark.parametrize("bench, ids", [
    (_bench_with([(3, "Ollama at X answered HTTP 500: embedding contains NaN or Inf values")]), ["nan-vectors"]),
    (_bench_with([(3, "Ollama at X answered HTTP 500: failed to encode response: json: unsupported value: NaN")]),
     ["nan-vectors"]),
    (_bench_with([(1, "answered HTTP 500: the input length exceeds the context length")]), ["legacy-context"]),
    (_bench_with([(1, "input (9000 tokens) is too large to process. increase the physical batch size")]),
     ["physical-batch"]),
    (_bench_with(truncation=[{"backend": "ollama", "text_set": "short", "expected_tokens": [50, 3000],
                              "reported_tokens": [50, 2048], "truncated": [1]}]), ["cut-at-num-batch"]),
    (_bench_with(version="0.12.9", longest=2000), ["split-batches-before-0.13.3"]),
    (_bench_with(version="0.12.9", longest=400), []),  # nothing past 512 tokens: the old bug cannot show
    (_bench_with(version="0.13.3", longest=2000), []),
    (_bench_with(version="0.0.0", longest=2000), []),  # a source build without a version: unknown
    (_bench_with(), []),
])
def test_field_knowledge_matches_what_bench_json_shows(bench, ids):
    from bench.analyse.field_knowledge import matches

    found = matches(bench)
    assert [m.issue.id for m in found] == ids
    assert all(m.ollama_version == bench["backends"]["ollama"]["description"]["server_version"] for m in found)
