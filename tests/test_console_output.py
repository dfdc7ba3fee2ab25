"""Output that is not a terminal (CI logs, `| tee`, `| cat`) keeps every table column whole."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from rich.table import Table

from probe.cli import print_summary
from probe.console import make_console
from probe.result import CheckResult, Overall, OverallStatus, ProbeReport, Status

REPO = Path(__file__).resolve().parent.parent
LONG_REASON = ("model 'BAAI/bge-m3' could not be loaded on cpu (OSError: We couldn't connect to "
               "'https://huggingface.co' to load the files); pre-download it into the Hugging Face cache")


def test_a_wide_table_prints_whole_when_the_output_is_not_a_terminal(capsys):
    table = Table(title="wide")
    headers = [f"column {i} (measured)" for i in range(10)]
    for header in headers:
        table.add_column(header)
    table.add_row(*["not available"] * 10)
    console = make_console(stderr=True)
    assert not console.is_terminal
    console.print(table)
    err = capsys.readouterr().err
    assert "…" not in err
    assert all(header in err for header in headers)
    assert sum("not available" in line for line in err.splitlines()) == 1  # one row, one line


def test_the_probe_summary_keeps_long_reasons_on_one_line(capsys):
    report = ProbeReport(
        schema_version=1, tool_version="0", created_at="", config={}, facts={},
        checks=(CheckResult("sentence_transformers", "sentence-transformers model smoke", Status.FAIL, LONG_REASON),),
        overall=OverallStatus(Overall.NOT_PROBED, "no CUDA device", (), False), bench_settings={})
    print_summary(make_console(stderr=True), report)
    err = capsys.readouterr().err
    assert "…" not in err
    assert any(LONG_REASON in line for line in err.splitlines())


@pytest.mark.slow
def test_bench_perf_piped_keeps_every_column_whole(tmp_path):
    """`make perf | cat`: the smallest real perf run, its stdout a pipe."""
    done = subprocess.run([sys.executable, "-m", "bench", "perf", "--per-set", "1", "--rounds", "2",
                           "--batch-size", "2", "--results", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "…" not in done.stdout
    header = next(line for line in done.stdout.splitlines() if "path" in line and "tokens" in line)
    for column in ("useful TFLOP", "moved (GB)", "compute (s)", "memory (s)", "bound", "wall (s)", "reached",
                   "TFLOP/s", "peak dtype", "MFU (measured)", "MFU (datasheet)"):
        assert column in header, header
    rows = [line for line in done.stdout.splitlines() if line.startswith("│")]
    # On a CPU the ceilings are measured on the spot, so only the datasheet MFU is not available
    assert len(rows) == 2 and all(row.count("not available") == 1 for row in rows), rows
