"""Issue 5, bad input: awkward texts are embedded (truncation counted) or rejected naming the
line; bad files (texts, BEIR, results JSON) end in one line naming the file and exit 1 (2 for
usage). Error messages are checked through the real CLI; the embedding behaviour through the
bench loop with a tiny profile."""

from __future__ import annotations

import asyncio
import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from reliability_support import HookReporter, config_for, strict_json, tiny_profile

from bench.cli import main as bench_cli
from bench.measure.runner import run_bench

pytestmark = pytest.mark.slow

FIXTURE_RESULTS = Path(__file__).parent / "fixtures" / "results" / "conditional"
ONE_MB = 1_000_000


def bench_run(tmp_path: Path, *args: str):
    """`python -m bench run` on the smoke profile, native only, as a user would call it."""
    argv = ["run", "--profile", "smoke", "--backend", "native-fp32", "--device", "cpu",
            "--ollama-host", "http://127.0.0.1:9", *args]
    if "--results" not in args:
        argv += ["--results", str(tmp_path / "results")]
    return CliRunner().invoke(bench_cli, argv)


def error_line(outcome) -> str:
    """The one 'Error: ...' line; fails on a traceback or a missing message."""
    assert "Traceback" not in outcome.output, outcome.output
    lines = [line for line in outcome.output.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, outcome.output
    return lines[0]


# ------------------------------------------------------------------ line 1: bad input text

REJECTED_TEXTS = [
    # (file name, bytes, what the one-line error says)
    ("empty.jsonl", b'{"text": "ok"}\n{"text": ""}\n', "empty.jsonl:2: empty text"),
    ("blank.jsonl", b'{"text": "ok"}\n"  \\t "\n', "blank.jsonl:2: empty text"),
    ("blank.json", b'["ok", " "]', "blank.json:item 1: empty text"),
    ("latin1.txt", b"ok\nna\xefve\n", "latin1.txt:2: not valid UTF-8 (byte 0xef at column 3)"),
    ("surrogate.txt", b"ok\n\xed\xa0\x80 lone\n", "surrogate.txt:2: not valid UTF-8 (byte 0xed at column 1)"),
    ("surrogate.jsonl", b'{"text": "ok"}\n{"text": "\\ud800 lone"}\n', "surrogate.jsonl:2: text holds a lone surrogate (U+D800)"),
    ("control.txt", b"ok\n\x00\x07\x1b\n", "control.txt:2: no token to embed in '\\x00\\x07\\x1b'"),
    ("invisible.txt", "\u200b\u200d\nok\n".encode(), "invisible.txt:1: no token to embed in '\\u200b\\u200d'"),
    ("utf16.txt", "ok\n".encode("utf-16"), "utf16.txt: UTF-16 text (byte-order mark); save it as UTF-8."),
    ("nothing.txt", b"", "nothing.txt: no texts (the file is empty or blank)."),
    ("whitespace.txt", b"  \n\t\n\n", "whitespace.txt: no texts (the file is empty or blank)."),
]


@pytest.mark.parametrize("name, data, says", REJECTED_TEXTS, ids=[c[0] for c in REJECTED_TEXTS])
def test_unembeddable_text_is_rejected_naming_the_line(tmp_path, name, data, says):
    texts = tmp_path / name
    texts.write_bytes(data)
    outcome = bench_run(tmp_path, "--texts", str(texts))
    assert outcome.exit_code == 1
    assert says in error_line(outcome)
    assert not (tmp_path / "results" / "bench.json").exists()  # rejected before anything is written


AWKWARD = {
    "plain": "A plain English sentence about embeddings.",
    "control": "Steuer\x00zeichen \x07bell \x1b[31mescape\x1b[0m \x0cform\x0bfeed\x7f del",
    "arabic": "مرحبا بالعالم، هذا نص تجريبي عن التضمين.",
    "hebrew": "שלום עולם, זהו טקסט לדוגמה על וקטורים.",
    "cjk": "你好世界，这是一个测试。日本語のテキストです。한국어 텍스트.",
    "emoji": "Deploy done 🚀✅ family 👩‍👩‍👧‍👦 flag 🇩🇪 skin 👍🏽",
    "bidi": "\u202eright-to-left override\u202c then \u2067isolate\u2069",
    "long": "token " * 3000,  # ~3000 tokens, far beyond max_seq_length 256 and the stand-in's 128
    "megabyte": ("Ein Megabyte Text, 你好, مرحبا. " * 40_000)[:ONE_MB],
}


def test_awkward_texts_are_embedded_and_truncation_is_counted(tmp_path, small_model_path, ollama_standin):
    """Control characters, RTL, CJK, emoji, a text far too long and a 1 MB text: all embedded by
    both sides, every text kept, the cut ones counted per backend, bench.json strict JSON."""
    names = list(AWKWARD)
    lines = []
    for i, name in enumerate(names):
        lines.append(AWKWARD[name])
        if i == 0:
            lines += ["", "   \t "]  # blank and whitespace-only lines: skipped, and counted
    texts = tmp_path / "texts.txt"
    texts.write_text("\r\n".join(lines) + "\n", encoding="utf-8", newline="")
    # One pass per setting: this is about the texts, not about the spread across passes.
    profile = tiny_profile(small_model_path, batch_sizes=(1,), concurrency_levels=(1,), best_setting_passes=0)
    config = config_for(profile, tmp_path, ["ollama", "native-fp32"], ollama_standin.host, texts_file=texts,
                        timeout_s=30.0)  # screening sends the 1 MB text in a list with the others
    reporter = HookReporter()
    started = time.perf_counter()
    state = asyncio.run(run_bench(config, reporter))
    elapsed = time.perf_counter() - started
    assert state.status == "complete"
    assert elapsed < 60, f"a 1 MB text must not stall the run ({elapsed:.0f} s)"

    data = strict_json(tmp_path / "bench.json")  # control characters escaped, nothing non-standard
    user = data["workload"]["sets"][0]
    assert user["texts"] == [AWKWARD[n] for n in names]  # nothing dropped, nothing altered
    assert "2 blank lines skipped" in user["source"]
    assert any("2 blank lines skipped" in note for note in reporter.notes)
    assert user["token_counts"][names.index("megabyte")] > 100_000

    cut = {t["backend"]: t for t in data["truncation"] if t["text_set"] == "user"}
    far_too_long = sorted([names.index("long"), names.index("megabyte")])
    assert cut["native-fp32"]["truncated"] == far_too_long
    assert cut["native-fp32"]["limit"] == 256
    assert max(cut["native-fp32"]["reported_tokens"]) == 256
    assert cut["ollama"]["truncated"] == far_too_long
    assert max(cut["ollama"]["reported_tokens"]) <= 128

    assert data["failures"] == []
    assert all(rec["error"] is None for rec in data["backends"].values())
    for backend in ("ollama", "native-fp32"):
        vectors = np.load(tmp_path / "vectors" / f"{backend}__user.npy")
        assert vectors.shape[0] == len(names) and np.isfinite(vectors).all()
    quality = data["quality"][0]
    assert quality["nonfinite_control"] == [] and quality["nonfinite_treatment"] == []
    short = [c for i, c in enumerate(quality["per_text_cosine"]) if i not in far_too_long]
    assert min(short) > 0.999  # same model behind both: texts neither side cut embed the same


# ------------------------------------------------------------------ line 2: bad input files

def test_missing_unreadable_or_malformed_texts_file(tmp_path, monkeypatch):
    folder = tmp_path / "folder"
    folder.mkdir()
    malformed = tmp_path / "bad.jsonl"
    malformed.write_text('{"text": "ok"}\n{"text": "no end\n', encoding="utf-8")
    no_text = tmp_path / "fields.jsonl"
    no_text.write_text('{"text": "ok"}\n{"body": "x"}\n', encoding="utf-8")
    locked = tmp_path / "locked.txt"
    locked.write_text("ok\n", encoding="utf-8")
    cases = [
        (tmp_path / "missing.txt", "missing.txt: texts file not found."),
        (folder, "folder: is a directory, not a texts file."),
        (malformed, "bad.jsonl:2: malformed JSON (Unterminated string starting at at column 10)."),
        (no_text, 'fields.jsonl:2: JSON object has no "text" field.'),
        (locked, "locked.txt: cannot be read (Permission denied)."),
    ]
    real_read_bytes = Path.read_bytes

    def read_bytes(self):  # the tests run as root, where chmod 000 would not stop a read
        if self == locked:
            raise PermissionError(13, "Permission denied", str(self))
        return real_read_bytes(self)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    for path, says in cases:
        outcome = bench_run(tmp_path, "--texts", str(path))
        assert outcome.exit_code == 1, (path, outcome.output)
        assert says in error_line(outcome), path


def _beir(folder: Path, corpus: str, queries: str, qrels: str | None) -> Path:
    folder.mkdir()
    (folder / "corpus.jsonl").write_text(corpus, encoding="utf-8")
    (folder / "queries.jsonl").write_text(queries, encoding="utf-8")
    if qrels is not None:
        (folder / "qrels").mkdir()
        (folder / "qrels" / "test.tsv").write_text(qrels, encoding="utf-8")
    return folder


def test_bad_beir_folder_names_the_file_and_keeps_earlier_results(tmp_path):
    corpus = '{"_id": "d1", "text": "doc"}\n'
    queries = '{"_id": "q1", "text": "query"}\n'
    header = "query-id\tcorpus-id\tscore\n"
    cases = [
        (tmp_path / "absent", "BEIR folder", "missing"),
        (_beir(tmp_path / "no-qrels", corpus, queries, None), "qrels/test.tsv missing in", "no-qrels"),
        (_beir(tmp_path / "bad-corpus", corpus + '{"_id": "d2", "text": }\n', queries, header + "q1\td1\t1\n"),
         "corpus.jsonl line 2: malformed JSON", ""),
        (_beir(tmp_path / "bad-qrels", corpus, queries, header + "q1\td9\t1\n"),
         "qrels/test.tsv line 2: corpus-id 'd9' not in corpus.jsonl", ""),
    ]
    texts = tmp_path / "texts.txt"
    texts.write_text("one text\n", encoding="utf-8")
    results = tmp_path / "results"
    shutil.copytree(FIXTURE_RESULTS, results)
    before = (results / "bench.json").read_bytes()
    for folder, says, also in cases:
        outcome = bench_run(tmp_path, "--texts", str(texts), "--beir", str(folder), "--results", str(results))
        assert outcome.exit_code == 1, outcome.output
        line = error_line(outcome)
        assert says in line and also in line, line
        assert (results / "bench.json").read_bytes() == before  # bad BEIR data costs no results file


def _damaged_results(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Broken bench.json files, each in its own folder, with what the error must say."""
    good = json.loads((FIXTURE_RESULTS / "bench.json").read_text(encoding="utf-8"))
    text = (FIXTURE_RESULTS / "bench.json").read_text(encoding="utf-8")
    damage = {
        "truncated": (text[: len(text) // 2], "not valid JSON (line"),
        "other-schema": (json.dumps({**good, "schema_version": 99}), "schema version 99, this tool reads version 2"),
        "probe-file": (json.dumps({"kind": "probe", "schema_version": 1}), "not a bench results file"),
        "incomplete": (json.dumps({k: v for k, v in good.items() if k != "measurements"}),
                       "field 'measurements' is missing; the file is incomplete or damaged"),
        "wrong-type": (json.dumps({**good, "backends": []}), "field 'backends' is not a JSON object"),
        "not-utf8": (b"\xff\xfe{}", "not UTF-8 text (byte 0xff at offset 0)"),
        "empty": ("", "not valid JSON (line 1"),
    }
    out = {}
    for name, (content, says) in damage.items():
        folder = tmp_path / name
        folder.mkdir()
        path = folder / "bench.json"
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
        out[name] = (path, says)
    return out


def test_damaged_results_json_for_verdict_resume_and_compare(tmp_path):
    texts = tmp_path / "texts.txt"
    texts.write_text("one text\n", encoding="utf-8")
    runner = CliRunner()
    for name, (path, says) in _damaged_results(tmp_path).items():
        for command in (
            ["verdict", "--results", str(path.parent), "--no-plots"],
            ["compare", str(path), str(FIXTURE_RESULTS / "bench.json")],
        ):
            outcome = runner.invoke(bench_cli, command)
            assert outcome.exit_code == 1, (name, command[0], outcome.output)
            line = error_line(outcome)
            assert str(path) in line and says in line, (name, command[0], line)
        original = path.read_bytes()
        outcome = bench_run(tmp_path, "--texts", str(texts), "--results", str(path.parent), "--resume")
        assert outcome.exit_code == 1, (name, outcome.output)
        line = error_line(outcome)
        assert str(path) in line and says in line, (name, "resume", line)
        assert path.read_bytes() == original  # a refused resume leaves the file as it was


def test_missing_results_and_directories_in_place_of_files(tmp_path):
    runner = CliRunner()
    texts = tmp_path / "texts.txt"
    texts.write_text("one text\n", encoding="utf-8")
    outcome = bench_run(tmp_path, "--texts", str(texts), "--results", str(tmp_path / "nothing-here"), "--resume")
    assert "nothing-here/bench.json: not found; run the bench stage first." in error_line(outcome)
    (tmp_path / "dir" / "bench.json").mkdir(parents=True)
    outcome = runner.invoke(bench_cli, ["verdict", "--results", str(tmp_path / "dir"), "--no-plots"])
    assert outcome.exit_code == 1
    assert "dir/bench.json: is a directory, not a bench results file." in error_line(outcome)
    outcome = runner.invoke(bench_cli, ["compare", str(tmp_path / "dir"), str(FIXTURE_RESULTS / "bench.json")])
    assert outcome.exit_code == 2  # usage: click says the argument is a directory
    assert "is a directory" in outcome.output and "Traceback" not in outcome.output
    outcome = runner.invoke(bench_cli, ["compare", str(tmp_path / "gone.json"), str(FIXTURE_RESULTS / "bench.json")])
    assert "gone.json: not found; run the bench stage first." in error_line(outcome)
    outcome = runner.invoke(bench_cli, ["attach", str(tmp_path / "TD-404.md"), "--results", str(FIXTURE_RESULTS)])
    assert outcome.exit_code == 1 and "TD-404.md: ticket not found" in error_line(outcome)


def test_unwritable_results_folder_is_one_line(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n", encoding="utf-8")
    texts = tmp_path / "texts.txt"
    texts.write_text("one text\n", encoding="utf-8")
    outcome = bench_run(tmp_path, "--texts", str(texts), "--results", str(blocker / "results"))
    assert outcome.exit_code == 1
    line = error_line(outcome)
    assert f"cannot write results to {blocker / 'results'} (Not a directory" in line
    assert "pass --results to a writable folder" in line

    results = tmp_path / "results"
    shutil.copytree(FIXTURE_RESULTS, results)
    (results / "verdict.md").mkdir()  # something in the way of the verdict file
    outcome = CliRunner().invoke(bench_cli, ["verdict", "--results", str(results), "--no-plots"])
    assert outcome.exit_code == 1
    assert f"cannot write the verdict to {results} (Is a directory" in error_line(outcome)
