"""`python -m probe`: a thin click command around probe.run."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from probe.console import make_console
from probe.result import CheckResult, Overall, Status

STATUS_STYLE = {Status.PASS: "green", Status.WARN: "yellow", Status.FAIL: "red", Status.SKIP: "dim"}
DEFAULT_OLLAMA_HOST = "http://127.0.0.1:11434"


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results"), show_default=True,
              help="Folder for probe.json and probe.md.")
@click.option("--profile", type=click.Choice(["td073", "smoke"]), default="td073", show_default=True,
              help="Which models to check: td073 = BAAI/bge-m3 (Ollama: bge-m3); smoke = the small "
                   "all-MiniLM-L6-v2 shipped on PyPI (Ollama: all-minilm).")
@click.option("--model", help="sentence-transformers model (hub name or local folder); overrides the profile's.")
@click.option("--ollama-host", envvar="OLLAMA_HOST", default=DEFAULT_OLLAMA_HOST, show_default=True,
              help="Ollama server URL (also read from OLLAMA_HOST).")
@click.option("--ollama-model", help="Model name in Ollama; overrides the profile's.")
@click.option("--only", multiple=True, metavar="CHECK",
              help="Run only these checks (repeatable), e.g. --only attention.")
@click.option("--quick", is_flag=True, help="Smaller shapes and fewer repetitions (a faster, rougher probe).")
@click.option("--require-gpu", is_flag=True,
              help="Exit 2 when no CUDA device is visible, instead of 0 with 'target not probed'.")
def main(results_dir: Path, profile: str, model: str | None, ollama_host: str, ollama_model: str | None,
         only: tuple[str, ...], quick: bool, require_gpu: bool) -> None:
    """Check that this GPU, PyTorch build and attention stack can serve BGE-M3 natively.

    Runs each check (environment, GPU/NVML, PyTorch build vs device, kernels, SDPA
    attention backends, Triton, sentence-transformers, Ollama), prints a table and writes
    RESULTS/probe.json and RESULTS/probe.md. Exit code: 0 compatible (with or without
    workarounds, or target not probed), 1 incompatible, 2 usage error.
    """
    from bench.config import PROFILES, ConfigError, resolve_model
    from bench.measure.model_source import ModelUnavailable, ensure_model
    from probe.checks import ALL_CHECKS, CRITICAL_CHECKS
    from probe.facts import collect_facts, detect_cuda_device
    from probe.registry import ProbeContext
    from probe.run import run_probe, write_probe_outputs

    known = {c.name for c in ALL_CHECKS}
    unknown = sorted(set(only) - known)
    if unknown:
        raise click.UsageError(f"unknown check(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    checks = [c for c in ALL_CHECKS if not only or c.name in only]

    console = make_console(stderr=True)
    spec = model or PROFILES[profile].model
    try:
        model = resolve_model(spec)
        if any(c.name == "sentence_transformers" for c in checks):
            # Up front, so a model that is neither cached nor reachable costs one line here and a
            # quick failure of that check, not the hub client's minutes of retries.
            ensure_model(spec, lambda line: console.print(line, markup=False))
    except ConfigError as err:
        raise click.ClickException(str(err)) from None
    except ModelUnavailable as err:
        console.print(f"model: {err}", style="yellow", markup=False, highlight=False)
    ollama_model = ollama_model or PROFILES[profile].ollama_model
    ctx = ProbeContext(model=model, ollama_host=ollama_host, ollama_model=ollama_model,
                       device=detect_cuda_device(), quick=quick)
    console.print(f"[bold]Probe[/] on {ctx.device or 'CPU only (no CUDA device)'}: {len(checks)} checks")

    def show(result: CheckResult) -> None:
        style = STATUS_STYLE[result.status]
        console.print(f"  [{style}]{result.status.value:>4}[/] {result.title}: {result.reason} "
                      f"[dim]({result.duration_s:.1f} s)[/]")

    with console.status("running checks…"):
        report = run_probe(ctx, checks, CRITICAL_CHECKS, collect_facts(), on_result=show)
    try:
        json_path, md_path = write_probe_outputs(report, results_dir)
    except OSError as err:
        raise click.ClickException(f"cannot write results to {results_dir}: {err.strerror}; "
                                   "pass --results to a writable folder") from None

    print_summary(console, report)
    console.print(f"wrote {json_path} and {md_path}")
    if require_gpu and report.overall.status is Overall.NOT_PROBED:
        sys.exit(2)
    sys.exit(report.overall.exit_code)


def print_summary(console, report) -> None:
    from rich.table import Table

    table = Table(title="Probe results", show_lines=False)
    for column in ("check", "status", "reason"):
        table.add_column(column, overflow="fold")
    for r in report.checks:
        table.add_row(r.title, f"[{STATUS_STYLE[r.status]}]{r.status.value}[/]", r.reason)
    console.print(table)
    colour = {"compatible": "green", "incompatible": "red"}.get(report.overall.status.value, "yellow")
    console.print(f"[bold {colour}]Overall: {report.overall.status.value}[/] — {report.overall.reason}")
