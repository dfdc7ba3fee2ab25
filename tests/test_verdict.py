"""The rendered verdict: golden Markdown on fixed results, plots, follow-up draft, attach, CLI errors."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bench.cli import main as bench_cli

FIXTURES = Path(__file__).parent / "fixtures"
RESULTS = FIXTURES / "results"
SEED_TICKET = FIXTURES / "tickets" / "TD-073.md"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def results(tmp_path) -> Path:
    folder = tmp_path / "results"
    shutil.copytree(RESULTS / "conditional", folder)
    return folder


def test_verdict_matches_golden_markdown(results):
    """A template change shows up here as a readable diff; regenerate the golden file on purpose."""
    outcome = CliRunner().invoke(bench_cli, ["verdict", "--results", str(results)])
    assert outcome.exit_code == 0, outcome.output
    assert "Decision: Document workarounds, conditional TD" in outcome.output
    assert (results / "verdict.md").read_text() == (RESULTS / "conditional.verdict.golden.md").read_text()
    assert (results / "TD-follow-up.md").read_text() == (RESULTS / "conditional.follow-up.golden.md").read_text()


def test_plots_are_valid_pngs_linked_from_the_verdict(results):
    import matplotlib.image

    CliRunner().invoke(bench_cli, ["verdict", "--results", str(results)])
    verdict = (results / "verdict.md").read_text()
    for name in ("latency.png", "throughput.png", "cosine.png"):
        data = (results / name).read_bytes()
        assert data.startswith(PNG_MAGIC), name
        height, width, _ = matplotlib.image.imread(results / name).shape
        assert height > 100 and width > 100
        assert f"]({name})" in verdict


def test_follow_up_draft_is_removed_when_no_td_is_recommended(results):
    CliRunner().invoke(bench_cli, ["verdict", "--results", str(results)])
    assert (results / "TD-follow-up.md").exists()
    bench = json.loads((results / "bench.json").read_text())
    bench["status"] = "partial"  # now inconclusive: no TD, and the stale draft must go
    (results / "bench.json").write_text(json.dumps(bench))
    outcome = CliRunner().invoke(bench_cli, ["verdict", "--results", str(results), "--no-plots"])
    assert "Decision: Inconclusive" in outcome.output
    assert "the bench run is partial" in outcome.output
    assert not (results / "TD-follow-up.md").exists()


def test_attach_updates_a_copy_of_the_seed_ticket_once(results, tmp_path):
    ticket = tmp_path / "TD-073.md"
    shutil.copy(SEED_TICKET, ticket)
    runner = CliRunner()
    runner.invoke(bench_cli, ["verdict", "--results", str(results), "--no-plots"])
    first = runner.invoke(bench_cli, ["attach", "--results", str(results), str(ticket)])
    assert first.exit_code == 0, first.output
    text = ticket.read_text()
    assert "**Status:** DONE (Investigation) — verdict: Document workarounds, conditional TD" in text
    assert "- [x] Single Text Latency" in text
    assert "- [ ] Multi-GPU Support" in text  # not measured, stays open
    assert "- [ ] Downstream Task Performance" in text  # no BEIR run
    assert "<!-- td-bench:verdict:start -->" in text
    second = runner.invoke(bench_cli, ["attach", "--results", str(results), str(ticket)])
    assert second.exit_code == 0
    assert ticket.read_text() == text
    assert "unchanged" in second.output


@pytest.mark.parametrize("damage, says", [
    (lambda p: p.unlink(), "not found"),
    (lambda p: p.write_text(p.read_text()[:500]), "not valid JSON"),
    (lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "schema_version": 99})), "schema version 99"),
    (lambda p: p.write_text(json.dumps({"kind": "probe", "schema_version": 1})), "not a bench results file"),
])
def test_broken_results_file_gives_one_line_error_naming_it(results, damage, says):
    damage(results / "bench.json")
    outcome = CliRunner().invoke(bench_cli, ["verdict", "--results", str(results)])
    assert outcome.exit_code == 1
    assert says in outcome.output and "bench.json" in outcome.output
    assert "Traceback" not in outcome.output


def test_one_side_alone_does_not_tick_the_performance_questions():
    from bench.report.checklist import measured_items

    bench = json.loads((RESULTS / "conditional" / "bench.json").read_text())
    probe = json.loads((RESULTS / "conditional" / "probe.json").read_text())
    assert measured_items(probe, bench)["single_text_latency"][0] is True
    bench["backends"]["ollama"]["error"] = "Ollama not reachable at http://127.0.0.1:11434"
    items = measured_items(probe, bench)
    for key in ("single_text_latency", "batch_latency", "throughput", "memory", "embedding_consistency"):
        assert items[key][0] is False, key
    assert "one side only (native-fp16)" in items["throughput"][1]
    assert items["native_benchmarks"][0] is True and items["ollama_baseline"][0] is False


def test_environment_says_when_native_fp32_ran_as_tf32():
    from bench.report.tables import _fp32_matmul_text

    forced = {"forced_tf32": True, "default_precision": "high", "pinned": "asked for, but TF32 is forced"}
    assert _fp32_matmul_text(forced).endswith("fp32 matmul ran as TF32")
    pinned = {"forced_tf32": False, "default_precision": "high", "pinned": "highest"}
    assert _fp32_matmul_text(pinned) == "IEEE fp32, pinned by the bench (process default 'high')"
    assert _fp32_matmul_text(None) is None


def test_readme_excerpt_is_the_golden_verdicts_opening():
    """The README shows the layout from this golden file; a template change must carry it along."""
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    block = readme.split("```markdown\n# TD-073 verdict", 1)[1].split("```", 1)[0]
    excerpt = "# TD-073 verdict" + block
    assert (RESULTS / "conditional.verdict.golden.md").read_text().startswith(excerpt)
    assert excerpt.count("\n- ") >= 3


# ------------------------------------------------------------------ numbers for people

GOLDEN = (RESULTS / "conditional.verdict.golden.md", RESULTS / "conditional.follow-up.golden.md")
SCIENTIFIC = re.compile(r"\d(?:\.\d+)?[eE][+-]?\d")
# Four or more digits in a row that are not part of a word, a decimal fraction, a path, a hash
# or an issue reference (#13572).
UNGROUPED = re.compile(r"(?<![\w.,:/#-])\d{4,}(?![\w])")
NUMBER_CELL = re.compile(r"^-?\d{1,3}(?:,\d{3})*(?:\.\d+)?[%×]?$")
NOT_A_FIGURE = {"not available", ""}
UNIT_IN_HEADER = re.compile(r"\((?:ms|s|MiB|GB|texts|tokens|TFLOP/s)\)|/s$|^TFLOP|TFLOP$|tokens|^MFU")
# Counts and dimensionless figures: the header names what is counted or compared.
UNITLESS_HEADERS = {"n", "failed", "texts", "failed batches", "callers", "requests", "calls", "pairs", "k",
                    "non-finite", "texts with a reported count", "texts cut", "queries", "cosine mean",
                    "cosine min", "cosine p1", "Spearman rho", "top-k agreement", "nDCG@10", "Recall@10",
                    "left out (not embedded)", "text index", "HTTP status", "texts at other lengths"}


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """(header cells, row cells) of every pipe table; escaped pipes stay inside their cell."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append([c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]])
        elif block:
            tables.append((block[0], block[2:]))
            block = []
    return tables


def significant_digits(cell: str) -> tuple[int, bool]:
    """(significant digits, has a decimal point) of a number cell such as '1,530', '0.00487', '3.85×'."""
    digits = cell.strip("-%×").replace(",", "")
    if "." in digits:
        return len(digits.replace(".", "").lstrip("0")), True
    return len(digits.lstrip("0")), False


@pytest.mark.parametrize("golden", GOLDEN, ids=lambda p: p.name)
def test_golden_has_no_scientific_notation_anywhere(golden):
    assert SCIENTIFIC.findall(golden.read_text()) == []


@pytest.mark.parametrize("golden", GOLDEN, ids=lambda p: p.name)
def test_every_number_cell_of_every_table_is_written_for_people(golden):
    tables = markdown_tables(golden.read_text())
    assert len(tables) >= 2
    for header, rows in tables:
        for row in rows:
            assert len(row) == len(header), row
            for cell in row:
                assert not SCIENTIFIC.search(cell) and not UNGROUPED.search(cell), (header, cell)
        for i, title in enumerate(header):
            cells = [r[i] for r in rows if r[i] not in NOT_A_FIGURE]
            if not cells or not all(NUMBER_CELL.match(c) for c in cells):
                continue  # a text column
            carries_unit = all(c.endswith(("%", "×")) for c in cells)
            assert carries_unit or UNIT_IN_HEADER.search(title) or title in UNITLESS_HEADERS, title
            decimals = {significant_digits(c)[0] for c in cells if significant_digits(c)[1]}
            assert len(decimals) <= 1, (title, cells)  # one precision per column
            if decimals:
                (column_digits,) = decimals
                for c in cells:
                    n, has_point = significant_digits(c)
                    if not has_point and c != "0":  # 1,530 in a 3-digit column: rounded, never short
                        assert n >= column_digits and len(c.replace(",", "").rstrip("0")) <= column_digits, (
                            title, c)


def test_a_number_written_badly_fails_the_cell_check(tmp_path):
    """The check above can fail: a scientific figure, an ungrouped one and mixed precision are caught."""
    bad = tmp_path / "bad.md"
    for table in ("| backend | p50 (ms) |\n|---|---|\n| a | 1.213e+04 |\n",
                  "| backend | tokens/s |\n|---|---|\n| a | 12130 |\n",
                  "| backend | p50 (ms) |\n|---|---|\n| a | 1.37 |\n| b | 4.717 |\n",
                  "| backend | p50 |\n|---|---|\n| a | 1.37 |\n"):
        bad.write_text(table)
        with pytest.raises(AssertionError):
            test_every_number_cell_of_every_table_is_written_for_people(bad)


def test_a_warm_load_or_memory_without_figures_of_its_own_leaves_those_boxes_open():
    from bench.report.checklist import measured_items

    bench = json.loads((RESULTS / "conditional" / "bench.json").read_text())
    probe = json.loads((RESULTS / "conditional" / "probe.json").read_text())
    items = measured_items(probe, bench)
    assert items["model_loading_time"][0] is True and items["memory"][0] is True
    bench["backends"]["ollama"]["load"].update(cold=False, note="/api/ps still listed bge-m3 30 s after keep_alive 0")
    # Native with only a system-wide delta (unified memory, no allocator figure): not its own.
    bench["backends"]["native-fp16"]["memory"] = [
        {"label": "system memory used delta since before load", "bytes": 3 * 2**30,
         "source": "torch.cuda.mem_get_info ...", "attributable": False}]
    items = measured_items(probe, bench)
    assert items["model_loading_time"] == (False, "load table, cold loads: native-fp16")
    for key in ("memory", "memory_management"):
        assert items[key] == (False, "memory table, figures of their own: ollama"), key
    from bench.report.tables import backend_tables

    tables = backend_tables(bench)
    assert tables["load"].rows[0][2] == "no: /api/ps still listed bge-m3 30 s after keep_alive 0"
    assert tables["memory"].rows[-1][3] == "wider (secondary)"
