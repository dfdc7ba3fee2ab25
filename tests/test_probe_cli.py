"""`python -m probe` as a user runs it on a machine without a GPU."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from probe.cli import main as probe_cli

pytestmark = pytest.mark.slow


def test_cpu_probe_writes_both_files_and_says_target_not_probed(tmp_path):
    outcome = CliRunner().invoke(probe_cli, ["--profile", "smoke", "--quick", "--results", str(tmp_path),
                                             "--only", "environment", "--only", "gpu", "--only", "attention",
                                             "--only", "sentence_transformers"])
    assert outcome.exit_code == 0, outcome.output
    assert "Overall: target not probed" in outcome.output
    data = json.loads((tmp_path / "probe.json").read_text())
    assert [c["name"] for c in data["checks"]] == ["environment", "gpu", "attention", "sentence_transformers"]
    statuses = {c["name"]: c["status"] for c in data["checks"]}
    assert statuses["gpu"] == "skip"  # no NVML library here
    assert statuses["attention"] == "pass" and statuses["sentence_transformers"] == "pass"  # ran on the CPU
    assert data["overall"]["target_probed"] is False
    markdown = (tmp_path / "probe.md").read_text()
    assert "**Overall: target not probed**" in markdown


def test_require_gpu_turns_not_probed_into_exit_2(tmp_path):
    outcome = CliRunner().invoke(probe_cli, ["--only", "environment", "--require-gpu", "--results", str(tmp_path)])
    assert outcome.exit_code == 2


def test_unknown_check_is_a_usage_error_listing_the_known_ones(tmp_path):
    outcome = CliRunner().invoke(probe_cli, ["--only", "kernals", "--results", str(tmp_path)])
    assert outcome.exit_code == 2
    assert "unknown check(s) kernals" in outcome.output and "kernels" in outcome.output
    assert not (tmp_path / "probe.json").exists()
