"""`python -m bench attach TICKET.md`: put the verdict into the ticket file itself.

Pure functions over text; `attach_file` is the only one that touches the disk.

What `attach` does to a ticket, and nothing else:

* adds the verdict between two marker lines (START_MARKER ... END_MARKER), appended at the end
  of the ticket (after a blank line) the first time and replaced in place afterwards, so a second
  run with the same inputs changes no byte;
* ticks ("[ ]" -> "[x]") the checklist items whose canonical key (the constants below) is
  measured True; a box is never un-ticked; items no pattern recognises are left alone and listed;
* replaces the value of the first "**Status:** ..." line, keeping its bold markers.

Every other byte stays as it was: line endings (CRLF stays CRLF), trailing whitespace, unicode,
a missing newline at the end of the file (the appended section then starts on a new line).
Checklists and marker lines inside fenced code blocks, and checklists inside the marker section,
are never touched. A symlinked ticket is written through to its target; a ticket changed between
read and write is left alone (AttachError, nothing written).
"""

from __future__ import annotations

import functools
import re
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

START_MARKER = "<!-- td-bench:verdict:start -->"
END_MARKER = "<!-- td-bench:verdict:end -->"
GENERATED_NOTE = (
    "<!-- written by `python -m bench attach`; everything between these markers is replaced on the next run -->"
)

# --- Canonical item keys --------------------------------------------------------------------------
# One key per checklist item of TD-073. `measured` (from bench.report.verdict.measured_items) maps these
# keys to True when the bench measured / answered the item.

# Investigation questions, 1. Performance
SINGLE_TEXT_LATENCY = "single_text_latency"  # "Single Text Latency"
BATCH_LATENCY = "batch_latency"  # "Batch Processing Speed"
THROUGHPUT = "throughput"  # "Throughput (texts/sec)"
MEMORY = "memory"  # "Memory Efficiency"
# 2. Compatibility
SM121_CUDA_SUPPORT = "sm121_cuda_support"  # "DGX Spark (sm_121) CUDA Support"
FLASH_ATTENTION_WORKAROUND = "flash_attention_workaround"  # "Flash Attention Workaround nötig?"
PYTORCH_CU130 = "pytorch_cu130"  # "PyTorch cu130 Kompatibilität"
# 3. Quality
EMBEDDING_CONSISTENCY = "embedding_consistency"  # "Embedding Consistency (Ollama vs Native)"
COSINE_CORRELATION = "cosine_correlation"  # "Cosine Similarity Correlation"
DOWNSTREAM_PERFORMANCE = "downstream_performance"  # "Downstream Task Performance"
# 4. Operations
MODEL_LOADING_TIME = "model_loading_time"  # "Model Loading Time"
MEMORY_MANAGEMENT = "memory_management"  # "Memory Management"
MULTI_GPU = "multi_gpu"  # "Multi-GPU Support"
INTEGRATION_COMPLEXITY = "integration_complexity"  # "Integration Complexity"
# Investigation tasks (numbered "1. [ ] ..." in the seed)
INSTALL_ST_CU130 = "install_st_cu130"  # "Sentence-Transformers mit PyTorch cu130 installieren"
LOAD_BGE_M3 = "load_bge_m3"  # "BGE-M3 Model laden und testen"
CHECK_DGX_COMPAT = "check_dgx_compat"  # "DGX Spark Kompatibilität prüfen"
BENCHMARK_SUITE = "benchmark_suite"  # "Benchmark-Suite erstellen"
OLLAMA_BASELINE = "ollama_baseline"  # "Ollama Baseline messen"
NATIVE_BENCHMARKS = "native_benchmarks"  # "Native Benchmarks"
QUALITY_COMPARISON = "quality_comparison"  # "Quality-Vergleich (Embedding Similarity)"
DOCUMENT_RESULTS = "document_results"  # "Ergebnisse dokumentieren"
# Acceptance criteria
AC_COMPAT_CHECKED = "ac_compat_checked"  # "DGX Spark Kompatibilität geprüft"
AC_BENCHMARKS_DOCUMENTED = "ac_benchmarks_documented"  # "Benchmark-Ergebnisse dokumentiert"
AC_QUALITY_DONE = "ac_quality_done"  # "Quality-Vergleich durchgeführt"
AC_RECOMMENDATION = "ac_recommendation"  # "Empfehlung mit Begründung"
AC_FOLLOW_UP_TD = "ac_follow_up_td"  # "Falls Migration empfohlen: Follow-up TD"

# Patterns per key, searched case-insensitively in the item text after `normalize_item_text`
# (emphasis markers dropped, "-" and "_" turned into spaces, whitespace collapsed), so
# "Multi-GPU" reads "multi gpu" and "sm_121" reads "sm 121". An item matching the patterns of
# more than one key is ambiguous and counts as unmatched: better unticked than ticked wrongly.
_DONE = r"(durchgeführt|done|completed|performed|erledigt|abgeschlossen)"  # an acceptance criterion's wording
ITEM_PATTERNS: Mapping[str, tuple[str, ...]] = {
    SINGLE_TEXT_LATENCY: (
        r"\bsingle\s*(text|item|request|query|sentence|embedding)s?\s+latenc",
        r"\blatenc\w*\s+(per|for\s+(a|one)|of\s+(a|one))\s+(single\s+)?(text|request|query|embedding)",
        r"\beinzel\w*\s*latenz|\blatenz\s+(pro|je|für)\s+(einen\s+)?(einzel)?text",
    ),
    BATCH_LATENCY: (
        r"\bbatch\w*\s+(processing\s+|verarbeitung\s+)?(speed|latenc\w*|time|geschwindigkeit|dauer|zeit)\b",
        r"\bbatch\s*verarbeitung",
    ),
    THROUGHPUT: (
        r"\bthroughput\b|\bdurchsatz\b",
        r"\b(texts?|embeddings?)\s*(/|per)\s*s(ec(ond)?)?\b",
    ),
    MEMORY: (
        r"\b(memory|vram|speicher)\s*(efficiency|usage|footprint|consumption|effizienz|verbrauch|bedarf)\b",
        r"\bpeak\s+(gpu\s+)?(memory|vram)\b",
    ),
    SM121_CUDA_SUPPORT: (
        r"\bcuda\s+(support|unterstützung)\b",
        r"\bsm\s?121\)?\s+(support|unterstützung)\b",
        r"\b(support|unterstützung)\s+(for|für)\s+(the\s+)?sm\s?121\b",
    ),
    FLASH_ATTENTION_WORKAROUND: (r"\bflash\s*(attention|attn|sdp)",),
    PYTORCH_CU130: (
        r"\b(py)?torch\s+(cu\s?130|cuda\s+13(\.0)?)\s+(kompatib|compat)",
        r"\b(kompatib|compat)\w*\s+(with|mit)\s+(py)?torch\s+(cu\s?130|cuda\s+13)",
    ),
    EMBEDDING_CONSISTENCY: (
        r"\bembedding\s+(consistency|konsistenz)\b",
        r"\b(consistency|konsistenz)\s+(of|der)\s+(the\s+)?embeddings?\b",
    ),
    COSINE_CORRELATION: (
        r"\bcosine\s+(similarity\s+)?(correlation|korrelation)\b",
        r"\b(correlation|korrelation)\s+(of|der)\s+(the\s+)?cosine",
        r"\bkosinus\w*\s*korrelation",
    ),
    DOWNSTREAM_PERFORMANCE: (r"\bdownstream\b",),
    MODEL_LOADING_TIME: (
        r"\bmodel\w*\s*(loading|load|lade)\s*(time|zeit|dauer)\b",
        r"\bladezeit\b|\bload\s+time\b|\btime\s+to\s+load\b",
    ),
    MEMORY_MANAGEMENT: (r"\b(memory|vram|speicher)\s*(management|verwaltung|handling)\b",),
    MULTI_GPU: (r"\bmulti\s*gpu\b|\bmehrere\s+gpus?\b|\bmultiple\s+gpus\b",),
    INTEGRATION_COMPLEXITY: (
        r"\bintegration\w*\s*(complexity|komplexität|aufwand|effort)\b",
        r"\b(complexity|komplexität)\s+(of|der)\s+(the\s+)?integration\b",
    ),
    INSTALL_ST_CU130: (
        r"\b(sentence\s*transformers|pytorch|torch)\b.*\binstall",
        r"\binstall\w*\b.*\b(sentence\s*transformers|pytorch|torch)\b",
    ),
    LOAD_BGE_M3: (
        r"^(?!.*\b(time|zeit|dauer)\b)(?=.*\bbge\s*m3\b).*\b(lad|load|test)",
    ),
    CHECK_DGX_COMPAT: (
        r"\b(dgx|spark|sm\s?121)\b.*\b(kompatib|compat)\w*\s+(prüfen|überprüfen|testen)\b",
        r"^(check|verify|test|prüfe|überprüfe)\w*\s+(the\s+)?(dgx|spark|sm\s?121)\b.*\b(compat|kompat)",
    ),
    BENCHMARK_SUITE: (r"\bbenchmark\s*(suite|harness|script|skript|tool)\b",),
    OLLAMA_BASELINE: (r"\bollama\s*(baseline|referenz)\b|\bbaseline\b.*\bollama\b",),
    NATIVE_BENCHMARKS: (
        r"\bnativ\w*\s+(sentence\s*transformers\s+)?(benchmark|messung|measurement)",
        r"\bbenchmark\w*\s+(the\s+)?nativ",
    ),
    QUALITY_COMPARISON: (
        rf"^(?!.*\b{_DONE}\b).*\b(quality|qualität\w*)\s*(vergleich|comparison)\b",
        r"^compare\s+(the\s+)?(embedding\s+)?quality\b",
    ),
    DOCUMENT_RESULTS: (
        r"\b(ergebnisse|results|findings)\s+dokumentieren\b",
        r"^document\s+(the\s+)?(benchmark\s+)?(results|findings)\b",
    ),
    AC_COMPAT_CHECKED: (
        r"\b(dgx|spark|sm\s?121)\b.*\b(kompatib|compat)\w*\s+(geprüft|checked|verified|tested|confirmed|bestätigt)\b",
    ),
    AC_BENCHMARKS_DOCUMENTED: (r"\b(benchmark\s*)?(ergebnisse|results)\s+(dokumentiert|documented)\b",),
    AC_QUALITY_DONE: (
        rf"\b(quality|qualität\w*)\s*(vergleich|comparison)\b.*\b{_DONE}\b",
    ),
    AC_RECOMMENDATION: (r"\b(empfehlung|recommendation)\b",),
    AC_FOLLOW_UP_TD: (r"\bfollow\s*up\b|\bfolge\s*(td|ticket)\b",),
}

ITEM_KEYS: frozenset[str] = frozenset(ITEM_PATTERNS)

_CHECKBOX = re.compile(
    r"^(?P<lead>[ \t]*(?:[-*+]|\d{1,9}[.)])[ \t]+\[)(?P<mark>[ xX])\](?P<rest>(?:[ \t].*)?)$"
)
_STATUS = re.compile(
    r"^(?P<lead>[ \t]*(?:[-*+][ \t]+)?(?:(?:\*\*|__)Status(?:[ \t]*:[ \t]*(?:\*\*|__)|(?:\*\*|__)[ \t]*:)"
    r"|Status[ \t]*:)[ \t]*)(?P<value>.*?)(?P<trail>[ \t\r]*)$"
)
_FENCE = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_ATX_HEADING = re.compile(r"^(?P<hashes>#{1,6})(?=[ \t]|$)")


class AttachError(Exception):
    """The ticket or verdict cannot be attached safely; the message is one line."""


@dataclass(frozen=True)
class ChecklistItem:
    line: int  # 1-based line number in the ticket
    text: str  # the item's text after the box, stripped
    key: str | None  # canonical key, None when no (or more than one) key matched


@dataclass(frozen=True)
class AttachResult:
    new_text: str
    ticked: tuple[ChecklistItem, ...]  # boxes this run changed from "[ ]" to "[x]"
    unmatched: tuple[ChecklistItem, ...]  # unticked items no key matched; left as they were
    not_found: tuple[str, ...]  # keys measured True that no checklist item of the ticket matched
    previous_status: str | None  # the Status value before; None when the ticket has no Status line
    changed: bool

    @property
    def status_found(self) -> bool:
        return self.previous_status is not None


@dataclass(frozen=True)
class _Line:
    body: str  # without its line ending
    ending: str  # "\n", "\r\n" or "" (last line without newline)


def normalize_item_text(text: str) -> str:
    """Item text as the patterns see it: no emphasis markers, "-"/"_" as spaces, single spaces."""
    text = re.sub(r"[*`]", "", text)
    text = re.sub(r"[-_\u2010-\u2014]", " ", text)
    return re.sub(r"\s+", " ", text).strip()


@functools.cache
def _compiled_patterns() -> tuple[tuple[str, tuple[re.Pattern[str], ...]], ...]:
    return tuple(
        (key, tuple(re.compile(p, re.IGNORECASE) for p in patterns)) for key, patterns in ITEM_PATTERNS.items()
    )


def match_item_key(text: str) -> str | None:
    """The canonical key for a checklist item's text; None when no key or more than one key matches."""
    normalized = normalize_item_text(text)
    keys = [key for key, patterns in _compiled_patterns() if any(p.search(normalized) for p in patterns)]
    return keys[0] if len(keys) == 1 else None


def _split_lines(text: str) -> list[_Line]:
    parts = text.split("\n")
    lines = []
    for i, part in enumerate(parts):
        last = i == len(parts) - 1
        if last and part == "":
            break
        if not last and part.endswith("\r"):
            lines.append(_Line(part[:-1], "\r\n"))
        else:
            lines.append(_Line(part, "" if last else "\n"))
    return lines


def _newline_of(text: str) -> str:
    crlf = text.count("\r\n")
    return "\r\n" if crlf > text.count("\n") - crlf else "\n"


def _is_marker(body: str, marker: str) -> bool:
    return body.strip() == marker


def _outside_lines(lines: list[_Line]) -> tuple[list[bool], tuple[int, int] | None]:
    """Which lines are plain ticket text (not in a code fence, not in the marker section),
    and the (start, end) line indexes of the marker section if there is one.

    Marker lines count only outside code fences: a ticket that quotes the markers in a code
    block keeps its code block, and the live section is found (or added) outside it."""
    plain = [False] * len(lines)
    section: tuple[int, int] | None = None
    fence: str | None = None  # the opening fence while inside a fenced block
    start: int | None = None
    for i, line in enumerate(lines):
        if start is not None:  # inside the marker section: only its end matters
            if _is_marker(line.body, START_MARKER):
                raise AttachError(f"a second {START_MARKER} on line {i + 1}; keep one verdict section")
            if _is_marker(line.body, END_MARKER):
                section, start = (start, i), None
            continue
        match = _FENCE.match(line.body)
        if fence is not None:
            if match and match["fence"][0] == fence[0] and len(match["fence"]) >= len(fence) \
                    and not match["info"].strip():
                fence = None
            continue
        if match and not (match["fence"][0] == "`" and "`" in match["info"]):
            fence = match["fence"]
            continue
        if _is_marker(line.body, START_MARKER):
            if section is not None:
                raise AttachError(f"a second {START_MARKER} on line {i + 1}; keep one verdict section")
            start = i
            continue
        if _is_marker(line.body, END_MARKER):
            raise AttachError(f"{END_MARKER} on line {i + 1} without a {START_MARKER} before it")
        plain[i] = True
    if start is not None:
        raise AttachError(
            f"{START_MARKER} on line {start + 1} has no {END_MARKER}; refusing to guess where it ends"
        )
    return plain, section


def _demote_headings(verdict_lines: list[str]) -> list[str]:
    """Shift ATX headings (outside code fences) so the verdict's top level becomes "##"."""
    levels, in_fence = [], None
    heading_at = []
    for i, line in enumerate(verdict_lines):
        match = _FENCE.match(line)
        if in_fence is None and match:
            in_fence = match["fence"]
        elif in_fence is not None:
            if match and match["fence"][0] == in_fence[0] and len(match["fence"]) >= len(in_fence):
                in_fence = None
        elif heading := _ATX_HEADING.match(line):
            levels.append(len(heading["hashes"]))
            heading_at.append(i)
    if not levels or min(levels) >= 2:
        return verdict_lines
    shift = 2 - min(levels)
    out = list(verdict_lines)
    for i, level in zip(heading_at, levels):
        out[i] = "#" * min(6, level + shift) + out[i][level:]
    return out


def render_section(verdict_markdown: str, newline: str) -> str:
    """The marker section for a verdict, without a newline after the end marker."""
    verdict_lines = verdict_markdown.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while verdict_lines and not verdict_lines[0].strip():
        verdict_lines.pop(0)
    while verdict_lines and not verdict_lines[-1].strip():
        verdict_lines.pop()
    if not verdict_lines:
        raise AttachError("the verdict is empty")
    for line in verdict_lines:
        if _is_marker(line, START_MARKER) or _is_marker(line, END_MARKER):
            raise AttachError("the verdict itself contains a td-bench marker line")
    body = [START_MARKER, GENERATED_NOTE, "", *_demote_headings(verdict_lines), "", END_MARKER]
    return newline.join(body)


def _validate_inputs(measured: Mapping[str, bool], status_line: str | None) -> None:
    unknown = sorted(set(measured) - ITEM_KEYS)
    if unknown:
        raise AttachError(f"unknown item key(s) in measured: {', '.join(unknown)}")
    if status_line is not None and (not status_line.strip() or "\n" in status_line or "\r" in status_line):
        raise AttachError("the status line must be one non-empty line")


def attach(
    ticket_text: str,
    verdict_markdown: str,
    measured: Mapping[str, bool],
    status_line: str | None,
) -> AttachResult:
    """The ticket with the verdict section added or replaced, measured items ticked, Status updated."""
    _validate_inputs(measured, status_line)
    lines = _split_lines(ticket_text)
    plain, section = _outside_lines(lines)
    newline = _newline_of(ticket_text)

    bodies = [line.body for line in lines]
    ticked: list[ChecklistItem] = []
    unmatched: list[ChecklistItem] = []
    matched_keys: set[str] = set()
    previous_status: str | None = None
    for i, line in enumerate(lines):
        if not plain[i]:
            continue
        if previous_status is None:
            status = _STATUS.match(line.body)
            if status:
                previous_status = status["value"]
                if status_line is not None:
                    bodies[i] = status["lead"] + status_line + status["trail"]
                continue
        box = _CHECKBOX.match(line.body)
        if not box:
            continue
        item = ChecklistItem(line=i + 1, text=box["rest"].strip(), key=match_item_key(box["rest"]))
        if item.key is None:
            if box["mark"] == " ":
                unmatched.append(item)
            continue
        matched_keys.add(item.key)
        if box["mark"] == " " and bool(measured.get(item.key, False)):
            bodies[i] = box["lead"] + "x]" + box["rest"]
            ticked.append(item)

    section_text = render_section(verdict_markdown, newline)
    if section is not None:
        start, end = section
        head = "".join(bodies[i] + lines[i].ending for i in range(start))
        tail = lines[end].ending + "".join(bodies[i] + lines[i].ending for i in range(end + 1, len(lines)))
        new_text = head + section_text + tail
    else:
        text = "".join(body + line.ending for body, line in zip(bodies, lines))
        if not text:
            separator = ""
        elif not text.endswith("\n"):
            separator = newline + newline
        elif not lines[-1].body.strip():
            separator = ""  # the ticket already ends with a blank line
        else:
            separator = newline
        new_text = text + separator + section_text + newline

    not_found = tuple(sorted(k for k, v in measured.items() if v and k not in matched_keys))
    return AttachResult(
        new_text=new_text,
        ticked=tuple(ticked),
        unmatched=tuple(unmatched),
        not_found=not_found,
        previous_status=previous_status,
        changed=new_text != ticket_text,
    )


def _read(path: Path, what: str) -> str:
    try:
        with open(path, encoding="utf-8", newline="") as handle:  # newline="": keep CRLF as it is
            return handle.read()
    except FileNotFoundError:
        raise AttachError(f"{path}: {what} not found") from None
    except IsADirectoryError:
        raise AttachError(f"{path}: {what} is a directory, not a file") from None
    except UnicodeDecodeError as err:
        raise AttachError(f"{path}: {what} is not UTF-8 text (byte {err.start})") from None
    except OSError as err:
        raise AttachError(f"{path}: {what} cannot be read ({err.strerror})") from None


def attach_file(
    ticket_path: Path,
    verdict_path: Path,
    measured: Mapping[str, bool],
    status_line: str | None,
    *,
    write: bool = True,
) -> AttachResult:
    """Read both files, attach, and write the ticket atomically when it changed (unless write=False).

    A symlinked ticket is written through to its target (the link stays a link). The ticket is
    read again just before writing: if it changed meanwhile (an editor saved it), nothing is
    written and the error says so.
    """
    from probe.output import write_text_atomic

    ticket_text = _read(ticket_path, "ticket")
    verdict_markdown = _read(verdict_path, "verdict")
    try:
        result = attach(ticket_text, verdict_markdown, measured, status_line)
    except AttachError as err:
        source = verdict_path if str(err).startswith("the verdict") else ticket_path
        raise AttachError(f"{source}: {err}") from None
    if write and result.changed:
        target = ticket_path.resolve()  # through symlinks: replace the file, not the link
        if _read(target, "ticket") != ticket_text:
            raise AttachError(f"{ticket_path}: changed since it was read (saved by an editor?); nothing written, "
                              "run attach again")
        try:
            mode = stat.S_IMODE(target.stat().st_mode)
            write_text_atomic(target, result.new_text)
            target.chmod(mode)  # the temp file behind the atomic write is 0600
        except OSError as err:
            raise AttachError(f"{ticket_path}: cannot be written ({err.strerror})") from None
    return result
