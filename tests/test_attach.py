"""bench.report.attach: verdict section, ticked boxes and Status line in the ticket, every other byte kept."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from bench.report.attach import (
    END_MARKER,
    ITEM_KEYS,
    ITEM_PATTERNS,
    START_MARKER,
    AttachError,
    attach,
    attach_file,
    match_item_key,
)

TICKETS = Path(__file__).parent / "fixtures" / "tickets"
SEED = TICKETS / "TD-073.md"  # a copy of shared/seed/TD-073.md
ENGLISH = TICKETS / "TD-073-english.md"

VERDICT = """# TD-073 verdict

**Keep Ollama (simpler architecture)**

| Backend | p50 ms |
|---------|--------|
| ollama  | 12.0   |

Still open:
- [ ] Multi-GPU Support
"""
STATUS = "DONE (Investigation) — verdict: Keep Ollama (simpler architecture)"

# What a run that measured everything but multi-GPU, downstream tasks and a follow-up TD reports.
MEASURED = {key: True for key in ITEM_KEYS} | {
    "multi_gpu": False,
    "downstream_performance": False,
    "ac_follow_up_td": False,
}
# The seed's 27 items minus those three.
EXPECTED_TICKED_SEED = 24


def read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as handle:
        return handle.read()


def lines_of(text: str) -> list[str]:
    return text.split("\n")


def test_seed_copy_is_the_seed():
    shared = Path(__file__).resolve().parents[2] / "shared" / "seed" / "TD-073.md"
    if not shared.exists():
        pytest.skip("shared/ is not beside the checkout")
    assert SEED.read_bytes() == shared.read_bytes()


def test_every_seed_item_has_its_own_key():
    items = re.findall(r"^(?:[-*+]|\d+\.) \[ \] (.*)$", read(SEED), re.MULTILINE)
    keys = [match_item_key(text) for text in items]
    assert None not in keys
    assert sorted(keys) == sorted(ITEM_KEYS)  # 27 items, 27 distinct keys
    assert set(ITEM_PATTERNS) == ITEM_KEYS


def test_ticks_exactly_the_measured_boxes():
    ticket = read(SEED)
    result = attach(ticket, VERDICT, MEASURED, STATUS)

    assert len(result.ticked) == EXPECTED_TICKED_SEED
    assert {item.key for item in result.ticked} == {k for k, v in MEASURED.items() if v}
    outside = result.new_text.split(START_MARKER)[0]
    assert outside.count("[x]") == EXPECTED_TICKED_SEED
    assert outside.count("[ ]") == 27 - EXPECTED_TICKED_SEED
    for text in ("- [ ] Multi-GPU Support", "- [ ] Downstream Task Performance",
                 "- [ ] Falls Migration empfohlen: Follow-up TD",
                 "1. [x] Sentence-Transformers mit PyTorch cu130 installieren",
                 "- [x] Flash Attention Workaround nötig?", "- [x] DGX Spark Kompatibilität geprüft"):
        assert text in outside.split("\n"), text
    assert result.unmatched == ()
    assert result.not_found == ()
    assert result.changed


def test_only_measured_true_keys_count():
    result = attach(read(SEED), VERDICT, {"throughput": True, "memory": False}, None)
    assert [item.text for item in result.ticked] == ["Throughput (texts/sec)"]
    assert "- [ ] Memory Efficiency" in result.new_text


def test_status_line_value_replaced_bold_kept():
    result = attach(read(SEED), VERDICT, MEASURED, STATUS)
    assert lines_of(result.new_text)[2] == f"**Status:** {STATUS}"
    assert result.previous_status == "OPEN (Investigation)"


def test_status_left_alone_without_status_line_argument():
    result = attach(read(SEED), VERDICT, MEASURED, None)
    assert lines_of(result.new_text)[2] == "**Status:** OPEN (Investigation)"
    assert result.status_found


def test_no_status_line_is_reported_not_added():
    ticket = read(SEED).replace("**Status:** OPEN (Investigation)\n", "")
    result = attach(ticket, VERDICT, MEASURED, STATUS)
    assert not result.status_found
    assert "Status" not in result.new_text.split(START_MARKER)[0]


def test_second_run_is_byte_identical():
    first = attach(read(SEED), VERDICT, MEASURED, STATUS)
    second = attach(first.new_text, VERDICT, MEASURED, STATUS)
    assert second.new_text == first.new_text
    assert not second.changed
    assert second.ticked == ()


def test_every_other_line_is_untouched():
    original = read(SEED)
    result = attach(original, VERDICT, MEASURED, STATUS)
    old, new = lines_of(original), lines_of(result.new_text)
    ticked_lines = {item.line - 1 for item in result.ticked}
    status_index = 2

    # The original ended with "\n": its last (empty) split element is where the blank line starts.
    assert old[-1] == ""
    for i, old_line in enumerate(old[:-1]):
        if i in ticked_lines:
            assert new[i] == old_line.replace("[ ]", "[x]", 1), i
        elif i == status_index:
            assert new[i] == f"**Status:** {STATUS}"
        else:
            assert new[i] == old_line, i
    appended = new[len(old) - 1:]
    assert appended[0] == ""  # the blank line before the section
    assert appended[1] == START_MARKER
    assert appended[-2] == END_MARKER and appended[-1] == ""
    assert "## TD-073 verdict" in appended  # the verdict's title becomes a section of the ticket


def test_crlf_ticket_stays_crlf():
    lf = read(SEED)
    crlf = lf.replace("\n", "\r\n")
    result = attach(crlf, VERDICT, MEASURED, STATUS)
    assert "\n" not in result.new_text.replace("\r\n", "")
    assert result.new_text == attach(lf, VERDICT, MEASURED, STATUS).new_text.replace("\n", "\r\n")
    assert attach(result.new_text, VERDICT, MEASURED, STATUS).new_text == result.new_text


def test_crlf_verdict_into_lf_ticket_is_lf():
    result = attach(read(SEED), VERDICT.replace("\n", "\r\n"), MEASURED, STATUS)
    assert "\r" not in result.new_text


def test_missing_final_newline_kept_before_the_section():
    original = read(SEED).rstrip("\n")
    result = attach(original, VERDICT, MEASURED, None)
    untouched = attach(original, VERDICT, {}, None).new_text
    assert untouched.startswith(original + "\n\n" + START_MARKER)
    assert result.new_text.endswith(END_MARKER + "\n")
    assert attach(result.new_text, VERDICT, MEASURED, None).new_text == result.new_text


def test_ticket_ending_in_a_blank_line_gets_no_second_one():
    original = read(SEED) + "\n"
    result = attach(original, VERDICT, {}, None)
    assert result.new_text.startswith(original + START_MARKER)


def test_section_replaced_in_place_with_a_new_verdict():
    first = attach(read(SEED), VERDICT, MEASURED, STATUS).new_text
    head, rest = first.split(START_MARKER)
    moved = head + START_MARKER + rest + "\n## Notes added later\n\nkeep me\n"
    second = attach(moved, "# Verdict\n\nMigrate to native\n", MEASURED, STATUS)
    assert second.new_text.startswith(head + START_MARKER)
    assert second.new_text.endswith(END_MARKER + "\n\n## Notes added later\n\nkeep me\n")
    assert "Migrate to native" in second.new_text
    assert "Keep Ollama (simpler architecture)**" not in second.new_text
    assert second.new_text.count(START_MARKER) == 1


def test_checklist_in_the_verdict_section_is_not_ticked_or_counted():
    result = attach(read(SEED), VERDICT, {"multi_gpu": True}, None)
    assert [item.key for item in result.ticked] == ["multi_gpu"]
    section = result.new_text.split(START_MARKER)[1]
    assert "- [ ] Multi-GPU Support" in section  # the verdict's own list, as written
    again = attach(result.new_text, VERDICT, {"multi_gpu": True}, None)
    assert again.ticked == () and not again.changed


def test_english_variant_unmatched_listed_and_not_corrupted():
    original = read(ENGLISH)
    result = attach(original, VERDICT, {key: True for key in ITEM_KEYS}, "Done")

    assert [item.text for item in result.unmatched] == [
        "Tokenizer parity between both stacks",
        "Throughput and memory usage in one chart",  # two keys match: ambiguous, left alone
        "Security review of the model download",
    ]
    assert len(result.ticked) == 14
    assert "batch_latency" in result.not_found
    old, new = lines_of(original), lines_of(result.new_text)
    ticked_lines = {item.line - 1 for item in result.ticked}
    for i, old_line in enumerate(old[:-1]):
        if i in ticked_lines:
            assert new[i] == old_line.replace("[ ]", "[x]", 1)
        elif i == 2:
            assert new[i] == "* **Status**: Done   "  # other bold style, trailing spaces kept
        else:
            assert new[i] == old_line
    assert "2) [x] Load and test BGE-M3" in new
    assert "* [x] Cold start behaviour after a container restart" in new
    assert "* [ ] Throughput (this box is an example inside a code block)" in new


@pytest.mark.parametrize("fence", ["```", "~~~", "````"])
def test_checklist_inside_a_code_fence_is_not_ticked(fence):
    ticket = f"# T\n\n{fence}markdown\n- [ ] Throughput\n```not a closer\n{fence}\n- [ ] Throughput\n"
    result = attach(ticket, VERDICT, {"throughput": True}, None)
    assert [item.line for item in result.ticked] == [7]
    assert result.new_text.startswith(
        f"# T\n\n{fence}markdown\n- [ ] Throughput\n```not a closer\n{fence}\n- [x] Throughput\n"
    )


def test_already_ticked_box_stays_ticked_when_not_measured():
    ticket = read(SEED).replace("- [ ] Throughput (texts/sec)", "- [X] Throughput (texts/sec)")
    result = attach(ticket, VERDICT, {"throughput": False}, None)
    assert "- [X] Throughput (texts/sec)" in result.new_text
    assert result.ticked == ()
    assert all(item.key != "throughput" for item in result.unmatched)


def test_unknown_measured_key_fails():
    with pytest.raises(AttachError, match="thruput"):
        attach(read(SEED), VERDICT, {"thruput": True}, None)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("Batch latency (100 texts)", "batch_latency"),
        ("Memory efficiency / peak VRAM", "memory"),
        ("PyTorch cu130 compatibility", "pytorch_cu130"),
        ("Embedding consistency between Ollama and native", "embedding_consistency"),
        ("Cosine similarity correlation (Spearman)", "cosine_correlation"),
        ("Model load time", "model_loading_time"),
        ("Memory management under load", "memory_management"),
        ("Multiple GPUs", "multi_gpu"),
        ("Integration effort", "integration_complexity"),
        ("Write the benchmark suite", "benchmark_suite"),
        ("Run native benchmarks", "native_benchmarks"),
        ("Quality comparison (embedding similarity)", "quality_comparison"),
        ("Document the results", "document_results"),
        ("**Ollama Baseline** messen", "ollama_baseline"),
        ("Something else entirely", None),
    ],
)
def test_english_and_formatted_equivalents(text, key):
    assert match_item_key(text) == key


# --- attach_file ------------------------------------------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8"))
    return path


def test_attach_file_writes_and_is_idempotent(tmp_path):
    ticket = write(tmp_path / "TD-073.md", read(SEED).replace("\n", "\r\n"))
    ticket.chmod(0o644)
    verdict = write(tmp_path / "verdict.md", VERDICT)
    first = attach_file(ticket, verdict, MEASURED, STATUS)
    assert ticket.stat().st_mode & 0o777 == 0o644
    written = ticket.read_bytes()
    assert written == first.new_text.encode("utf-8")
    assert b"\r\n" in written and b"\n" not in written.replace(b"\r\n", b"")
    second = attach_file(ticket, verdict, MEASURED, STATUS)
    assert not second.changed
    assert ticket.read_bytes() == written


def test_attach_file_dry_run_writes_nothing(tmp_path):
    ticket = write(tmp_path / "TD-073.md", read(SEED))
    verdict = write(tmp_path / "verdict.md", VERDICT)
    result = attach_file(ticket, verdict, MEASURED, STATUS, write=False)
    assert result.changed
    assert ticket.read_bytes() == SEED.read_bytes()


def test_missing_ticket_or_verdict_named(tmp_path):
    verdict = write(tmp_path / "verdict.md", VERDICT)
    with pytest.raises(AttachError, match=r"nope\.md: ticket not found"):
        attach_file(tmp_path / "nope.md", verdict, MEASURED, STATUS)
    ticket = write(tmp_path / "TD-073.md", read(SEED))
    with pytest.raises(AttachError, match=r"missing\.md: verdict not found"):
        attach_file(ticket, tmp_path / "missing.md", MEASURED, STATUS)
    with pytest.raises(AttachError, match="is a directory"):
        attach_file(tmp_path, verdict, MEASURED, STATUS)


def test_empty_verdict_refused(tmp_path):
    ticket = write(tmp_path / "TD-073.md", read(SEED))
    verdict = write(tmp_path / "verdict.md", "\n\n")
    with pytest.raises(AttachError, match=r"verdict\.md: the verdict is empty"):
        attach_file(ticket, verdict, MEASURED, STATUS)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (f"\n{START_MARKER}\nhalf a verdict\n", "has no"),
        (f"\nhalf a verdict\n{END_MARKER}\n", "without a"),
        (f"\n{START_MARKER}\na\n{END_MARKER}\n{START_MARKER}\nb\n{END_MARKER}\n", "a second"),
    ],
)
def test_broken_markers_refused_and_ticket_untouched(tmp_path, broken, message):
    original = read(SEED) + broken
    ticket = write(tmp_path / "TD-073.md", original)
    verdict = write(tmp_path / "verdict.md", VERDICT)
    with pytest.raises(AttachError, match=message) as info:
        attach_file(ticket, verdict, MEASURED, STATUS)
    assert str(info.value).startswith(f"{ticket}: ")
    assert "\n" not in str(info.value)
    assert read(ticket) == original


@pytest.mark.parametrize("fence", ["```", "~~~~", "```markdown"])
def test_markers_quoted_in_a_code_fence_stay_there_and_the_section_goes_outside(fence):
    closing = fence.rstrip("markdown")
    quoted = f"How attach marks its section:\n\n{fence}\n{START_MARKER}\n(the verdict)\n{END_MARKER}\n{closing}\n"
    ticket = read(SEED) + "\n" + quoted
    result = attach(ticket, VERDICT, MEASURED, STATUS)
    assert quoted in result.new_text  # the code block, markers included, byte for byte
    section = result.new_text[result.new_text.index(quoted) + len(quoted):]
    assert section.lstrip("\n").startswith(START_MARKER) and "Keep Ollama" in section
    assert result.new_text.count(START_MARKER) == 2
    again = attach(result.new_text, VERDICT.replace("12.0", "13.0"), MEASURED, STATUS)
    assert quoted in again.new_text and "13.0" in again.new_text and again.new_text.count(START_MARKER) == 2


def test_a_symlinked_ticket_is_written_through_to_its_target(tmp_path):
    (tmp_path / "tickets").mkdir()
    target = write(tmp_path / "tickets" / "TD-073.md", read(SEED))
    link = tmp_path / "TD-073.md"
    link.symlink_to(target)
    verdict = write(tmp_path / "verdict.md", VERDICT)
    result = attach_file(link, verdict, MEASURED, STATUS)
    assert link.is_symlink() and link.resolve() == target.resolve()
    assert read(target) == result.new_text and START_MARKER in read(target)
    assert sorted(p.name for p in target.parent.iterdir()) == ["TD-073.md"]  # no temp file left behind


def test_a_ticket_changed_between_read_and_write_is_refused_and_kept(tmp_path, monkeypatch):
    import bench.report.attach

    ticket = write(tmp_path / "TD-073.md", read(SEED))
    verdict = write(tmp_path / "verdict.md", VERDICT)
    edited = read(SEED) + "\nA comment saved in an editor while attach ran.\n"
    real_attach = bench.report.attach.attach

    def attach_while_someone_saves(*args, **kwargs):
        result = real_attach(*args, **kwargs)
        write(ticket, edited)
        return result

    monkeypatch.setattr(bench.report.attach, "attach", attach_while_someone_saves)
    with pytest.raises(AttachError) as info:
        attach_file(ticket, verdict, MEASURED, STATUS)
    assert str(info.value) == (f"{ticket}: changed since it was read (saved by an editor?); nothing written, "
                               "run attach again")
    assert read(ticket) == edited
